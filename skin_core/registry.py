"""The one place that maps a model name to how it is built, its input size, its preprocessing and
where its attention module sits. Nothing else in the project switches on model names.

Soft-attention cut ("follow the paper: the last blocks are replaced by the module"): Nguyen et al.
drop the last Inception-ResNet-C block and the final 1x1 convolution of InceptionResNetV2 and put
the soft-attention module on what remains. Each backbone below is cut the same way: at the output
of its second-to-last block (or, for the MobileNets and DenseNet, of its last block, dropping the
final wide 1x1 "head" convolution / normalisation that exists only to feed a classifier).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import keras

from .efficientnet_lite import EfficientNetLite0, EfficientNetLite1, EfficientNetLite2

A = keras.applications


@dataclass(frozen=True)
class Architecture:
    """How one model is built and fed."""

    name: str
    family: str  # "soft_attention" (a keras.applications backbone + module) or "arl"
    input_size: int  # default square input side, pixels
    preprocessing: str  # default input scaling, see layers.Preprocess
    attach_layer: str = ""  # backbone layer whose output feeds the soft-attention module
    attach_reason: str = ""
    constructor: Callable | None = None  # keras.applications-style function (soft_attention family)
    constructor_kwargs: dict = field(default_factory=dict)
    arl_blocks: tuple[int, ...] = ()  # bottleneck blocks per stage (arl family)


_ARCHITECTURES = [
    Architecture(
        "InceptionResNetV2", "soft_attention", 299, "tf", "block8_9_ac",
        "The paper removes the last 28 layers: block8_10 and conv_7b; the module reads block8_9 (8x8x2080 at 299 px).",
        A.InceptionResNetV2,
    ),
    Architecture(
        "MobileNetV3Large", "soft_attention", 224, "tf", "expanded_conv_14_add",
        "Last inverted-residual block; the 960-channel conv_1 head is replaced by the module.",
        A.MobileNetV3Large, {"include_preprocessing": False},
    ),
    Architecture(
        "MobileNetV3Small", "soft_attention", 224, "tf", "expanded_conv_10_add",
        "Last inverted-residual block; the 576-channel conv_1 head is replaced by the module.",
        A.MobileNetV3Small, {"include_preprocessing": False},
    ),
    Architecture(
        "MobileNetV2", "soft_attention", 224, "tf", "block_16_project_BN",
        "Last inverted-residual block; the 1280-channel Conv_1 head is replaced by the module.",
        A.MobileNetV2,
    ),
    Architecture(
        # Its converted weights want (x - 127) / 128, which "tf" matches to within 0.008.
        "EfficientNetLite0", "soft_attention", 224, "tf", "block7a_project_bn",
        "Last MBConv block; the 1280-channel top_conv head is replaced by the module.",
        EfficientNetLite0,
    ),
    Architecture(
        "EfficientNetLite1", "soft_attention", 240, "tf", "block7a_project_bn",
        "Last MBConv block; the 1280-channel top_conv head is replaced by the module.",
        EfficientNetLite1,
    ),
    Architecture(
        "EfficientNetLite2", "soft_attention", 260, "tf", "block7a_project_bn",
        "Last MBConv block; the 1280-channel top_conv head is replaced by the module.",
        EfficientNetLite2,
    ),
    Architecture(
        "DenseNet201", "soft_attention", 224, "torch", "conv5_block31_concat",
        "Drops the last dense layer (conv5_block32) and the final BN-ReLU, like block8_10 in IRv2.",
        A.DenseNet201,
    ),
    Architecture(
        "ResNet50", "soft_attention", 224, "caffe", "conv5_block2_out",
        "Drops the last bottleneck block (conv5_block3), like block8_10 in IRv2.",
        A.ResNet50,
    ),
    Architecture(
        "ResNet152", "soft_attention", 224, "caffe", "conv5_block2_out",
        "Drops the last bottleneck block (conv5_block3), like block8_10 in IRv2.",
        A.ResNet152,
    ),
    Architecture(
        "NASNetMobile", "soft_attention", 224, "tf", "normal_concat_11",
        "Drops the last normal cell (cell 12), like block8_10 in IRv2.",
        A.NASNetMobile,
    ),
    Architecture(
        "VGG16", "soft_attention", 224, "caffe", "block5_conv3",
        "Drops the last max-pool so the module sees the 14x14 map of block 5.",
        A.VGG16,
    ),
    Architecture("ARL-CNN14", "arl", 224, "tf", arl_blocks=(1, 1, 1, 1)),
    Architecture("ARL-CNN50", "arl", 224, "tf", arl_blocks=(3, 4, 6, 3)),
]

REGISTRY: dict[str, Architecture] = {spec.name: spec for spec in _ARCHITECTURES}


def get_architecture(name: str) -> Architecture:
    """Look a name up case-insensitively; the error lists what exists."""
    for key, spec in REGISTRY.items():
        if key.lower() == name.lower():
            return spec
    raise KeyError(f"Unknown model {name!r}; choose one of: {', '.join(REGISTRY)}")


# Which architecture the app serves by default, by the device TensorFlow sees.
SERVING_PREFERENCE = {"gpu": "InceptionResNetV2", "cpu": "MobileNetV3Large"}
