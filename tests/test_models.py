"""Every registered model builds, trains one step, saves to .keras and reloads identically."""

import numpy as np
import pytest

from skin_core.layers import SoftAttention
from skin_core.models import build_model
from skin_core.patient import META_DIM
from skin_core.registry import REGISTRY

# Small inputs keep CI fast; InceptionResNetV2 and NASNet need a little more room for their strides.
SIZES = {"InceptionResNetV2": 96, "NASNetMobile": 96}


@pytest.mark.parametrize("name", list(REGISTRY))
def test_build_train_save_reload(name, tmp_path):
    import keras

    from skin_core.losses import WeightedCategoricalCrossentropy

    model = build_model(name, image_size=SIZES.get(name, 64), meta_units=16)
    # Eager execution: one step of a 780-layer network is far quicker than tracing a graph for it.
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=0.1), loss=WeightedCategoricalCrossentropy([1.0] * 7),
                  run_eagerly=True)
    rng = np.random.default_rng(0)
    size = model.inputs[0].shape[1]
    x = rng.uniform(0, 255, (2, size, size, 3)).astype("float32")
    meta = np.zeros((2, META_DIM), "float32")
    y = np.eye(7, dtype="float32")[[0, 4]]
    before = [w.copy() for w in model.get_layer("probabilities").get_weights()]
    loss = model.train_on_batch({"image": x, "metadata": meta}, y)
    assert np.isfinite(loss)
    after = model.get_layer("probabilities").get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(before, after)), "one step must change the weights"

    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, compile=False)
    expected = np.asarray(model([x, meta], training=False))
    np.testing.assert_allclose(np.asarray(reloaded([x, meta], training=False)), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(expected.sum(axis=1), 1.0, rtol=1e-5)
    # The interface the app relies on.
    assert reloaded.get_layer("features") is not None
    assert len(reloaded.get_layer("attention").output) == 2


def test_soft_attention_maps_and_config():
    import keras

    layer = SoftAttention(heads=4, gamma_init=0.5)
    t = np.random.default_rng(1).normal(size=(2, 5, 6, 8)).astype("float32")
    out, alpha = layer(t)
    # Each of the 4 heads is a distribution over the 5 x 6 positions, so alpha sums to 4.
    np.testing.assert_allclose(np.asarray(alpha).sum(axis=(1, 2)), 4.0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(out), 0.5 * np.asarray(alpha)[..., None] * t, rtol=1e-5, atol=1e-6)
    clone = SoftAttention.from_config(layer.get_config())
    assert (clone.heads, clone.gamma_init) == (4, 0.5)
    assert tuple(layer.kernel.shape) == (3, 3, 8, 1, 4)  # a 3-D kernel spanning all channels
    assert keras.saving.get_registered_name(SoftAttention) == "skin_core>SoftAttention"


def test_soft_attention_equals_a_3d_convolution():
    """The 2-D evaluation is the 3-D convolution with depth kernel = depth stride = channels."""
    import tensorflow as tf

    layer = SoftAttention(heads=3)
    t = np.random.default_rng(2).normal(size=(1, 4, 4, 5)).astype("float32")
    _, alpha = layer(t)
    conv3d = tf.nn.conv3d(t[..., None], layer.kernel, strides=[1, 1, 1, 5, 1], padding="SAME")[..., 0, :]
    logits = tf.nn.relu(conv3d + layer.bias).numpy().reshape(1, 16, 3)
    maps = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(alpha).reshape(1, 16), maps.sum(axis=-1), rtol=1e-5)


def test_local_weights_file_needs_its_input_scaling(tmp_path):
    # The shared MobileNetV2 file is a torchvision conversion: the registry's default ("tf") would train
    # on wrongly scaled inputs without an error, so a local file must come with its scaling.
    with pytest.raises(ValueError, match="does not say how its inputs were scaled"):
        build_model("MobileNetV2", 96, init=str(tmp_path / "backbone.weights.h5"), meta_units=8)


def test_local_weights_file_initialises_the_backbone():
    from conftest import MOBILENET_V2_WEIGHTS

    if not MOBILENET_V2_WEIGHTS.is_file():
        pytest.skip("shared MobileNetV2 weights not present")
    import keras

    model = build_model("MobileNetV2", 96, init=str(MOBILENET_V2_WEIGHTS), preprocessing="torch", meta_units=8)
    reference = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(96, 96, 3))
    reference.load_weights(MOBILENET_V2_WEIGHTS)
    np.testing.assert_array_equal(model.get_layer("Conv1").get_weights()[0], reference.get_layer("Conv1").get_weights()[0])


def test_zero_classifier_starts_from_equal_probabilities():
    from skin_core.models import zero_classifier

    model = build_model("MobileNetV3Small", 64, meta_units=8, heads=2)
    x = [np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype("float32"),
         np.random.default_rng(1).uniform(0, 1, (3, META_DIM)).astype("float32")]
    assert np.ptp(np.asarray(model.predict(x, verbose=0))) > 1e-3  # a Glorot kernel: unequal guesses
    zero_classifier(model)
    np.testing.assert_allclose(np.asarray(model.predict(x, verbose=0)), 1 / 7, rtol=1e-6)


def test_train_refuses_zero_head_with_a_warm_start(tmp_path):
    from skin_core.training import TrainConfig, train

    with pytest.raises(ValueError, match="zero_head has no effect"):
        train(TrainConfig("MobileNetV3Small", str(tmp_path), str(tmp_path / "out"), zero_head=True,
                          warm_start="weights/mobilenetv2-192"))
