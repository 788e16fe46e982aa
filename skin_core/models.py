"""Builds the classifiers: an image branch with an attention module, a patient-metadata branch,
and a 7-way softmax. Every model has the same named interface the rest of the code relies on:

- inputs ``image`` (S x S x 3, RGB 0..255; colour constancy and scaling are inside the model) and ``metadata`` (META_DIM);
- layer ``features``: the convolutional map Grad-CAM explains;
- layer ``attention``: returns ``[output, map]``; the map (h x w) is the model's own attention;
- output layer ``probabilities``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from .layers import AttentionResidual, CalibratedMean, DihedralViews, Preprocess, ShadesOfGray, SoftAttention
from .patient import META_DIM
from .registry import Architecture, get_architecture
from .vocab import CLASSES

INIT_CHOICES = ("imagenet", "none")  # or a path to a local .weights.h5 file


def build_model(
    name: str,
    image_size: int | None = None,
    init: str = "none",
    preprocessing: str | None = None,
    meta_units: int = 4096,
    heads: int = 16,
    dropout: float = 0.5,
    bn_momentum: float | None = None,
    colour_constancy: float | None = None,
) -> keras.Model:
    """Build an untrained (or ImageNet-initialised) model from the registry.

    ``bn_momentum`` overrides the batch-norm moving-average momentum (Keras MobileNets use 0.999,
    too slow for a network trained from scratch on 7k images: its validation outputs lag for epochs).
    ``colour_constancy`` is the Minkowski power of a Shades of Gray layer at the input (None: none).
    """
    spec = get_architecture(name)
    if init not in (*INIT_CHOICES, None) and preprocessing is None:
        # The registry's scaling is that of Keras's own ImageNet weights; a converted file may want
        # another (torchvision's: --preprocessing torch), and a wrong one trains silently, only worse.
        raise ValueError(f"{init} does not say how its inputs were scaled: pass preprocessing "
                         "(--preprocessing torch for torchvision conversions such as ../shared/weights, "
                         "tf for the EfficientNet-Lite conversions)")
    size = int(image_size or spec.input_size)
    image = keras.Input((size, size, 3), name="image")
    metadata = keras.Input((META_DIM,), name="metadata")
    x = image
    if colour_constancy:
        x = ShadesOfGray(colour_constancy, name="colour_constancy")(x)
    x = Preprocess(preprocessing or spec.preprocessing, name="preprocess")(x)
    if spec.family == "soft_attention":
        image_features = _soft_attention_branch(spec, x, init, heads, dropout)
    else:
        if init not in ("none", None):
            raise ValueError(f"{spec.name} has no pretrained weights; use --init none")
        image_features = _arl_branch(spec, x)
    meta = layers.Dense(meta_units, activation="relu", name="metadata_dense")(metadata)
    merged = layers.Concatenate(name="merge")([image_features, meta])
    probabilities = layers.Dense(len(CLASSES), activation="softmax", name="probabilities")(merged)
    model = keras.Model([image, metadata], probabilities, name=spec.name.replace("-", "_"))
    if bn_momentum is not None:
        for layer in model.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = bn_momentum
    return model


def zero_classifier(model: keras.Model) -> None:
    """Start the 7-way classifier at zero (as BiT does for transfer, Kolesnikov et al. 2020): training begins
    from equal probabilities instead of the confident random guesses a Glorot kernel makes of large
    ImageNet features (EfficientNet-Lite's: a first-batch loss of 7.7 against ln 7 = 1.95)."""
    layer = model.get_layer("probabilities")
    layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])


def _backbone(spec: Architecture, x, init: str):
    kwargs = dict(include_top=False, input_tensor=x, **spec.constructor_kwargs)
    if init == "imagenet":
        return spec.constructor(weights="imagenet", **kwargs)
    backbone = spec.constructor(weights=None, **kwargs)
    if init not in ("none", None):
        backbone.load_weights(init)  # a local Keras .weights.h5 file of the no-top backbone
    return backbone


def _soft_attention_branch(spec: Architecture, x, init: str, heads: int, dropout: float):
    backbone = _backbone(spec, x, init)
    t = layers.Activation("relu", name="features")(backbone.get_layer(spec.attach_layer).output)
    attended, _ = SoftAttention(heads=heads, name="attention")(t)
    pooled_t = layers.MaxPooling2D(2, padding="same", name="pool_features")(t)
    pooled_a = layers.MaxPooling2D(2, padding="same", name="pool_attention")(attended)
    y = layers.Concatenate(name="attention_concat")([pooled_t, pooled_a])
    y = layers.Activation("relu", name="attention_relu")(y)
    y = layers.Dropout(dropout, name="attention_dropout")(y)
    return layers.Flatten(name="flatten")(y)


def _conv_bn(x, filters, kernel, strides, name, activation=True):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x) if activation else x


def _arl_branch(spec: Architecture, x):
    """ARL-CNN: ResNet bottleneck stages where each block merges with AttentionResidual."""
    x = _conv_bn(x, 64, 7, 2, "stem")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    n_stages = len(spec.arl_blocks)
    for stage, (blocks, filters) in enumerate(zip(spec.arl_blocks, (64, 128, 256, 512))):
        for block in range(blocks):
            name = f"arl{stage + 1}_{block + 1}"
            strides = 2 if (block == 0 and stage > 0) else 1
            shortcut = x
            if block == 0:
                shortcut = _conv_bn(x, 4 * filters, 1, strides, f"{name}_proj", activation=False)
            fx = _conv_bn(x, filters, 1, 1, f"{name}_1")
            fx = _conv_bn(fx, filters, 3, strides, f"{name}_2")
            fx = _conv_bn(fx, 4 * filters, 1, 1, f"{name}_3", activation=False)
            last = stage == n_stages - 1 and block == blocks - 1
            x, _ = AttentionResidual(name="attention" if last else f"{name}_arl")([shortcut, fx])
            x = layers.Activation("relu", name="features" if last else f"{name}_out")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return layers.Dropout(0.5, name="gap_dropout")(x)


def ensemble_network(models: list, temperatures: list[float], attention_layers: list[str] | None = None) -> keras.Model:
    """One network for several trained ones that read the same (image, metadata): the mean of their
    probabilities, each calibrated by its own temperature. Used to evaluate and export an ensemble bundle as
    any other; the app's EnsembleClassifier runs the members itself (it also needs their features).

    ``attention_layers`` (each member's soft-attention layer): a second output, the mean of the members' maps
    (each a sum of per-head spatial softmaxes, so on one scale where the grids agree)."""
    image = keras.Input(models[0].inputs[0].shape[1:], name="image")
    metadata = keras.Input(models[0].inputs[1].shape[1:], name="metadata")
    outputs = []
    for i, model in enumerate(models):
        heads = [model.outputs[0]]
        if attention_layers:
            heads.append(model.get_layer(attention_layers[i]).output[1])
        outputs.append(keras.Model(model.inputs, heads, name=f"member_{i}")([image, metadata]))
    mean = CalibratedMean(temperatures, name="probabilities")([member[0] for member in outputs])
    if not attention_layers:
        return keras.Model([image, metadata], mean, name="ensemble")
    maps = [member[1] for member in outputs]
    if len({tuple(m.shape[1:]) for m in maps}) > 1:
        raise ValueError("the members' attention grids differ")
    return keras.Model([image, metadata], [mean, layers.Average(name="attention")(maps)], name="ensemble")


def view_mean(network: keras.Model, views: int) -> keras.Model:
    """Test-time augmentation: the network's probabilities averaged over ``views`` flips and turns of the image
    (``layers.DihedralViews``); any further output (an attention map) from the image as given, so that it
    lies over the photo."""
    image = keras.Input(network.inputs[0].shape[1:], name="image")
    metadata = keras.Input(network.inputs[1].shape[1:], name="metadata")
    outputs = [network([view, metadata]) for view in DihedralViews(views, name="views")(image)]
    if not isinstance(outputs[0], (list, tuple)):
        return keras.Model([image, metadata], layers.Average(name="view_mean")(outputs), name=f"{network.name}_tta")
    mean = layers.Average(name="view_mean")([output[0] for output in outputs])
    return keras.Model([image, metadata], [mean, *outputs[0][1:]], name=f"{network.name}_tta")
