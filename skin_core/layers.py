"""Custom Keras layers. Each is registered, so a saved ``.keras`` file reloads with plain
``keras.saving.load_model`` once ``skin_core`` is imported."""

from __future__ import annotations

import keras
from keras import ops

from .images import VIEWS

PACKAGE = "skin_core"

# Per-channel statistics for the three ImageNet input conventions.
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
PREPROCESSING_MODES = ("tf", "torch", "caffe", "none")


@keras.saving.register_keras_serializable(package=PACKAGE)
class Preprocess(keras.layers.Layer):
    """Scales an RGB image in 0..255 the way the backbone's weights expect.

    Living inside the model, the scaling is saved with it, so the served path, Grad-CAM and
    training can never disagree about it.
    - ``tf``: x / 127.5 - 1 (Keras MobileNet, Inception, NASNet weights)
    - ``torch``: x / 255, minus ImageNet mean, over ImageNet std (torchvision and DenseNet weights)
    - ``caffe``: RGB to BGR, minus ImageNet mean (ResNet, VGG weights)
    - ``none``: unchanged
    """

    def __init__(self, mode: str = "tf", **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise ValueError(f"Unknown preprocessing mode {mode!r}; expected one of {PREPROCESSING_MODES}")
        self.mode = mode

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            return (x / 255.0 - ops.array(_TORCH_MEAN, dtype=x.dtype)) / ops.array(_TORCH_STD, dtype=x.dtype)
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) - ops.array(_CAFFE_MEAN_BGR, dtype=x.dtype)
        return x

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ShadesOfGray(keras.layers.Layer):
    """Colour constancy (Finlayson & Trezzi 2004) at the model's input: each image divided by its own
    illuminant estimate, the Minkowski p-norm mean of each channel, so another dermoscope's white
    balance or a colour cast reaches the network as the same neutral image.

    The gains are scaled so that a grey illuminant leaves the image unchanged (overall brightness is
    kept), and the result is clipped to 0..255. Used by the ISIC 2018 and 2019 winning entries (p = 6).
    Inside the model, so training, serving, Grad-CAM and evaluation all see the same normalised image.
    """

    def __init__(self, power: float = 6.0, **kwargs):
        super().__init__(**kwargs)
        self.power = float(power)

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        scaled = ops.clip(x / 255.0, 0.0, 1.0)
        illuminant = ops.power(ops.mean(ops.power(scaled, self.power), axis=(1, 2), keepdims=True), 1.0 / self.power)
        illuminant = ops.maximum(illuminant, 1e-3)
        gains = ops.mean(illuminant, axis=-1, keepdims=True) / illuminant
        return ops.clip(x * gains, 0.0, 255.0)

    def get_config(self):
        return {**super().get_config(), "power": self.power}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SoftAttention(keras.layers.Layer):
    """Soft attention (Datta et al. 2021; Nguyen et al. 2022).

    From a feature map t (h x w x d), a 3-D convolution whose kernel spans 3 x 3 positions and all
    d channels (depth stride d, so one output depth) gives ``heads`` maps; each map is made a
    distribution over the h x w positions by a softmax; the maps are summed into alpha, and the
    output is ``gamma * alpha * t`` with a learnable scalar gamma.

    Returns ``[output, alpha]``: alpha (batch, h, w) is the attention map the app draws.
    The 3-D kernel is stored as such and applied as the equivalent 2-D convolution, which is the
    same arithmetic and much faster on a CPU.
    """

    def __init__(self, heads: int = 16, gamma_init: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.heads = int(heads)
        self.gamma_init = float(gamma_init)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        # 3-D kernel over (h, w, channel) with 1 input and `heads` output feature planes.
        self.kernel = self.add_weight(
            name="kernel_conv3d", shape=(3, 3, channels, 1, self.heads), initializer="he_uniform"
        )
        self.bias = self.add_weight(name="bias_conv3d", shape=(self.heads,), initializer="zeros")
        self.gamma = self.add_weight(
            name="gamma", shape=(), initializer=keras.initializers.Constant(self.gamma_init)
        )

    def call(self, t):
        channels = self.kernel.shape[2]
        kernel_2d = ops.reshape(self.kernel, (3, 3, channels, self.heads))
        logits = ops.relu(ops.conv(t, kernel_2d, padding="same") + self.bias)  # (b, h, w, heads)
        shape = ops.shape(logits)
        flat = ops.reshape(logits, (shape[0], shape[1] * shape[2], self.heads))
        maps = ops.softmax(flat, axis=1)  # each head sums to 1 over the h*w positions
        alpha = ops.reshape(ops.sum(maps, axis=-1), (shape[0], shape[1], shape[2]))
        return [self.gamma * ops.expand_dims(alpha, -1) * t, alpha]

    def compute_output_shape(self, input_shape):
        return [tuple(input_shape), tuple(input_shape[:-1])]

    def get_config(self):
        return {**super().get_config(), "heads": self.heads, "gamma_init": self.gamma_init}


@keras.saving.register_keras_serializable(package=PACKAGE)
class AttentionResidual(keras.layers.Layer):
    """The attention-residual merge of ARL-CNN (Zhang et al., IEEE TMI 2019).

    Given the block input x and its residual branch F(x): y = x + F(x) + alpha * A(F(x)) * x, where
    A is a softmax over the spatial positions of each channel and alpha a learnable scalar that
    starts at 0 (so training begins from a plain residual block). Returns ``[y, map]`` with the
    channel-mean attention map (batch, h, w) for display.
    """

    def __init__(self, alpha_init: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha_init = float(alpha_init)

    def build(self, input_shape):
        self.alpha = self.add_weight(
            name="alpha", shape=(), initializer=keras.initializers.Constant(self.alpha_init)
        )

    def call(self, inputs):
        x, fx = inputs
        shape = ops.shape(fx)
        flat = ops.reshape(fx, (shape[0], shape[1] * shape[2], shape[3]))
        attention = ops.reshape(ops.softmax(flat, axis=1), shape)
        y = x + fx + self.alpha * attention * x
        return [y, ops.mean(attention, axis=-1)]

    def compute_output_shape(self, input_shape):
        x_shape = tuple(input_shape[0])
        return [x_shape, x_shape[:-1]]

    def get_config(self):
        return {**super().get_config(), "alpha_init": self.alpha_init}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CalibratedMean(keras.layers.Layer):
    """The mean of several softmax outputs, each first softened by its own temperature.

    An ensemble's members are calibrated apart (each bundle's temperature, fitted on validation), so their
    probabilities are averaged as each member would serve them: softmax(log(clip(p, 1e-12, 1)) / T_i), the
    maths of ``evaluation.apply_temperature``.
    """

    def __init__(self, temperatures, **kwargs):
        super().__init__(**kwargs)
        self.temperatures = [float(t) for t in temperatures]

    def call(self, probabilities):
        calibrated = [ops.softmax(ops.log(ops.clip(p, 1e-12, 1.0)) / t, axis=-1)
                      for p, t in zip(probabilities, self.temperatures)]
        return ops.mean(ops.stack(calibrated, axis=0), axis=0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "temperatures": self.temperatures}


@keras.saving.register_keras_serializable(package=PACKAGE)
class DihedralViews(keras.layers.Layer):
    """The first ``views`` flips and turns of a batch of square images, as a list of batches: test-time
    augmentation in the graph, in the order and with the maths of ``images.dihedral``."""

    def __init__(self, views: int = VIEWS, **kwargs):
        super().__init__(**kwargs)
        if views not in range(1, VIEWS + 1):
            raise ValueError(f"views must be 1..{VIEWS}, got {views}")
        self.views = int(views)

    def call(self, images):
        turned = ops.flip(ops.flip(images, axis=1), axis=2)
        diagonal = ops.transpose(images, (0, 2, 1, 3))
        return [images, turned, ops.flip(images, axis=2), ops.flip(images, axis=1), ops.flip(diagonal, axis=2),
                ops.flip(diagonal, axis=1), diagonal, ops.transpose(turned, (0, 2, 1, 3))][:self.views]

    def compute_output_shape(self, input_shape):
        return [tuple(input_shape)] * self.views

    def get_config(self):
        return {**super().get_config(), "views": self.views}
