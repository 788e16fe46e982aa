"""Class heat-maps over the photo (Grad-CAM, Grad-CAM++, LayerCAM, multi-grid LayerCAM, Score-CAM) and the overlays
the app shows.

Each method is one small callable ``(image, patient=None, class_name=None) -> (h, w) map in 0..1``
at the photo's size, built once per bundle (``Classifier.explainer``) and shared by every session:
the maths runs in one traced ``tf.function`` with a fixed input signature, so a call is one graph
run (no sub-model rebuilt, no eager tape, no lock). The model's own soft-attention map is not here:
it comes with every prediction (``Prediction.attention_map``).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import keras
import numpy as np
import tensorflow as tf

from .images import unit_range
from .patient import UNKNOWN_PATIENT, Patient
from .vocab import CLASSES

METHODS = ("Grad-CAM", "Grad-CAM++", "Grad-CAM (finer grid)", "LayerCAM (finer grid)",
           "Soft attention x LayerCAM (finer grid)", "LayerCAM (2 grids agreeing)", "LayerCAM (3 grids agreeing)",
           "Score-CAM")
FINER_GRID_SIDE = 12  # the '(finer grid)' methods explain the deepest map with at least this many cells a side
SCORE_CAM_CHANNELS = 64  # Faster Score-CAM: only the most varied channels are tried as masks


def spatial_side(layer) -> int | None:
    """The smaller spatial side of a layer's single 4-D output, or None (vectors, several outputs)."""
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        return None
    return min(shape[1], shape[2]) if len(shape) == 4 and shape[1] and shape[2] else None


def finer_layer(model, min_side: int = FINER_GRID_SIDE) -> str:
    """The deepest layer whose map is the coarsest one still at least ``min_side`` cells a side.

    Found by walking the model, whatever the backbone; padding layers are not maps of the network and
    are skipped. The deepest layer of that side has seen most of the photo.
    """
    sides = [(layer.name, spatial_side(layer)) for layer in model.layers
             if not isinstance(layer, keras.layers.ZeroPadding2D)]
    side = min(s for _, s in sides if s and s >= min_side)
    return [name for name, s in sides if s == side][-1]


def finer_layers(model, count: int, min_side: int = FINER_GRID_SIDE) -> tuple[str, ...]:
    """``finer_layer``, then the deepest layer of each next finer grid (24x24, then 48x48 for a 12x12 finer grid):
    ``count`` layers, coarsest first."""
    layers = [finer_layer(model, min_side)]
    while len(layers) < count:
        layers.append(finer_layer(model, spatial_side(model.get_layer(layers[-1])) + 1))
    return tuple(layers)


class _Cam:
    """Shared plumbing: a sub-model ``[image, metadata] -> [layer map(s), head input, soft-attention map]``.

    ``layer`` is one layer's name (the maths gets its map as one tensor) or a tuple of names (a tuple of maps).
    """

    def __init__(self, classifier, layer: str | tuple[str, ...]):
        model, names = classifier.model, classifier.bundle.card["layers"]
        head = model.get_layer(names["output"])
        self.classifier = classifier
        self.layers = (layer,) if isinstance(layer, str) else tuple(layer)
        self.layer = self.layers[0]
        self._several = not isinstance(layer, str)
        self._sub = keras.Model(model.inputs, [*(model.get_layer(name).output for name in self.layers), head.input,
                                               model.get_layer(names["attention"]).output[1]])
        self._kernel, self._bias = (tf.constant(w) for w in head.get_weights())
        size = classifier.input_size
        self._compiled = tf.function(self._cam, input_signature=[
            tf.TensorSpec((1, size, size, 3), tf.float32),
            tf.TensorSpec((1, model.inputs[1].shape[1]), tf.float32),
            tf.TensorSpec((len(CLASSES),), tf.float32)])
        self._compiled.get_concrete_function()  # trace now, not for the first doctor
        self._offset = cell_offset(size, self._sub.outputs[0].shape[1])

    @property
    def grid(self) -> str:
        return "+".join(f"{output.shape[1]}x{output.shape[2]}" for output in self._sub.outputs[:len(self.layers)])

    def _forward(self, image, metadata, target):
        """The layer's map, the logits, the score explained (``target`` weights on the logits; zeros: the
        top class) and the soft-attention map."""
        *maps, head_input, attention = self._sub([image, metadata], training=False)
        maps = tuple(maps) if self._several else maps[0]
        logits = tf.matmul(head_input, self._kernel) + self._bias
        target = tf.where(tf.reduce_any(target != 0), target,
                          tf.one_hot(tf.argmax(logits[0]), len(CLASSES)))
        return maps, logits, target, attention

    def _gradients(self, image, metadata, target):
        """The layer's map, the gradient of the explained score with respect to it, the soft-attention map."""
        with tf.GradientTape() as tape:
            maps, logits, target, attention = self._forward(image, metadata, target)
            score = tf.reduce_sum(logits[0] * target)
        return maps, tape.gradient(score, maps), attention

    def _run(self, image: np.ndarray, patient: Patient | None, class_name: str | None):
        x, meta = self.classifier.model_inputs(image, patient or UNKNOWN_PATIENT)
        target = np.zeros(len(CLASSES), np.float32)
        if class_name is not None:
            target[CLASSES.index(class_name)] = 1
        return self._compiled(x.astype(np.float32), meta.astype(np.float32), target)

    def __call__(self, image: np.ndarray, patient: Patient | None = None, class_name: str | None = None) -> np.ndarray:
        """Heat-map in 0..1 at the photo's size, for ``class_name`` (default: the predicted class)."""
        return resize_map(self._run(image, patient, class_name).numpy(), image.shape[:2], self._offset)


def _normalise(cam):
    """ReLU, then min-max to 0..1 (as tf-keras-vis' ``normalize``)."""
    cam = tf.nn.relu(cam)
    return (cam - tf.reduce_min(cam)) / (tf.reduce_max(cam) - tf.reduce_min(cam) + 1e-7)


class GradCam(_Cam):
    """Grad-CAM (Selvaraju et al. 2017): the layer's channels weighted by their mean gradient of the class logit."""

    def _cam(self, image, metadata, target):
        maps, grads, _ = self._gradients(image, metadata, target)
        weights = tf.reduce_mean(grads, axis=[1, 2], keepdims=True)
        return _normalise(tf.reduce_sum(maps * weights, axis=-1)[0])


class GradCamPlusPlus(_Cam):
    """Grad-CAM++ (Chattopadhyay et al. 2018): positive gradients, weighted per cell by the closed-form alphas.

    Written as tf-keras-vis' GradcamPlusPlus, without its exp(score) factor, which min-max scaling cancels.
    """

    def _cam(self, image, metadata, target):
        maps, grads, _ = self._gradients(image, metadata, target)
        second, third = grads ** 2, grads ** 3
        denominator = 2 * second + third * tf.reduce_sum(maps, axis=[1, 2], keepdims=True)
        alphas = second / tf.where(second == 0, tf.ones_like(denominator), denominator)
        total = tf.reduce_sum(alphas, axis=[1, 2], keepdims=True)
        alphas = alphas / tf.where(total == 0, tf.ones_like(total), total)
        weights = tf.reduce_sum(tf.nn.relu(grads) * alphas, axis=[1, 2], keepdims=True)
        return _normalise(tf.reduce_sum(maps * weights, axis=-1)[0])


class LayerCam(_Cam):
    """LayerCAM (Jiang et al. 2021): each cell's channels weighted by their own positive gradient there.

    Grad-CAM's one weight per channel, averaged over the map, washes out the detail of a finer layer;
    a weight per cell keeps it.
    """

    def _cam(self, image, metadata, target):
        maps, grads, _ = self._gradients(image, metadata, target)
        return _normalise(tf.reduce_sum(maps * tf.nn.relu(grads), axis=-1)[0])


class AttentionLayerCam(_Cam):
    """LayerCAM times the model's own soft-attention map: the class evidence where the model attends.

    Each map is placed on the photo at its own grid's cell centres before the product.
    """

    def _cam(self, image, metadata, target):
        maps, grads, attention = self._gradients(image, metadata, target)
        return _normalise(tf.reduce_sum(maps * tf.nn.relu(grads), axis=-1)[0]), _normalise(attention[0])

    def __call__(self, image: np.ndarray, patient: Patient | None = None, class_name: str | None = None) -> np.ndarray:
        cam, attention = (t.numpy() for t in self._run(image, patient, class_name))
        attention_offset = cell_offset(self.classifier.input_size, attention.shape[0])
        both = resize_map(cam, image.shape[:2], self._offset) * resize_map(attention, image.shape[:2], attention_offset)
        return both / (both.max() or 1.0)


class LayerCamProduct(_Cam):
    """LayerCAM on several grids (the finer grid and the next finer ones), multiplied: a cell stays hot only where
    the class evidence shows at every depth, the deep grid's meaning with the shallower grids' detail.

    LayerCAM's authors combine several layers' maps (Jiang et al. 2021, sec. III-C); the product keeps what the
    layers agree on and drops what one layer alone shows (the deep grid's corner cells, a shallow grid's
    hair and edge texture). Each map is placed on the photo at its own grid's cell centres before the product.
    """

    def _cam(self, image, metadata, target):
        maps, grads, _ = self._gradients(image, metadata, target)
        return tuple(_normalise(tf.reduce_sum(m * tf.nn.relu(g), axis=-1)[0]) for m, g in zip(maps, grads))

    def __call__(self, image: np.ndarray, patient: Patient | None = None, class_name: str | None = None) -> np.ndarray:
        size = self.classifier.input_size
        product = np.prod([resize_map(cam, image.shape[:2], cell_offset(size, cam.shape[0]))
                           for cam in (t.numpy() for t in self._run(image, patient, class_name))], axis=0)
        return product / (product.max() or 1.0)


class ScoreCam(_Cam):
    """Score-CAM (Wang et al. 2020): each channel, upsampled and scaled to 0..1, masks the photo; the
    class probability of the masked photo is that channel's weight. No gradients; one forward pass per
    channel tried (the SCORE_CAM_CHANNELS most varied), so it costs a batch, not a single pass.

    Not tf-keras-vis' Scorecam: it masks every model input with the image's mask and fails on the
    metadata input.
    """

    def _cam(self, image, metadata, target):
        maps, logits, target, _ = self._forward(image, metadata, target)
        k = min(SCORE_CAM_CHANNELS, maps.shape[-1])
        chosen = tf.math.top_k(tf.math.reduce_std(maps[0], axis=[0, 1]), k).indices
        maps = tf.gather(maps, chosen, axis=-1)
        masks = tf.transpose(tf.image.resize(maps, image.shape[1:3]), [3, 1, 2, 0])  # (k, S, S, 1)
        low = tf.reduce_min(masks, axis=[1, 2, 3], keepdims=True)
        masks = (masks - low) / (tf.reduce_max(masks, axis=[1, 2, 3], keepdims=True) - low + 1e-7)
        _, head_input, _ = self._sub([image * masks, tf.repeat(metadata, k, axis=0)], training=False)
        probabilities = tf.nn.softmax(tf.matmul(head_input, self._kernel) + self._bias)
        weights = tf.reduce_sum(probabilities * target, axis=-1)  # (k,)
        return _normalise(tf.reduce_sum(maps[0] * weights, axis=-1))


class MeanExplainer:
    """An ensemble's heat-map: its members' maps of one method for the same class (the ensemble's top class
    unless one is named), averaged and scaled to 0..1."""

    def __init__(self, explainers: list, ensemble):
        self.explainers, self.ensemble = explainers, ensemble

    @property
    def grid(self) -> str:
        return self.explainers[0].grid

    def __call__(self, image: np.ndarray, patient: Patient | None = None, class_name: str | None = None) -> np.ndarray:
        class_name = class_name or self.ensemble.predict(image, patient).top
        return unit_range(np.mean([explain(image, patient, class_name) for explain in self.explainers], axis=0))


def build_explainer(classifier, method: str) -> _Cam:
    """The callable for one of METHODS on one loaded classifier (``Classifier.explainer`` caches it)."""
    model, features = classifier.model, classifier.bundle.card["layers"].get("gradcam", "features")
    recipes = {"Grad-CAM": (GradCam, lambda: features), "Grad-CAM++": (GradCamPlusPlus, lambda: features),
               "Grad-CAM (finer grid)": (GradCam, lambda: finer_layer(model)),
               "LayerCAM (finer grid)": (LayerCam, lambda: finer_layer(model)),
               "Soft attention x LayerCAM (finer grid)": (AttentionLayerCam, lambda: finer_layer(model)),
               "LayerCAM (2 grids agreeing)": (LayerCamProduct, lambda: finer_layers(model, 2)),
               "LayerCAM (3 grids agreeing)": (LayerCamProduct, lambda: finer_layers(model, 3)),
               "Score-CAM": (ScoreCam, lambda: features)}
    if method not in recipes:
        raise ValueError(f"Unknown heat-map method {method!r}; choose one of {', '.join(METHODS)}")
    kind, layer = recipes[method]
    return kind(classifier, layer())


def resize_map(heatmap: np.ndarray, shape: tuple[int, int], offset: float = 0.0) -> np.ndarray:
    """Bicubic resize of a small map to (height, width), clipped to 0..1 (bicubic overshoots a little).

    ``offset`` (in cells) moves every cell's centre down and right, to where the network sees it.
    """
    heatmap = np.nan_to_num(np.asarray(heatmap, np.float32))
    (h, w), (height, width) = heatmap.shape, shape
    sx, sy = width / w, height / h
    to_photo = np.float32([[sx, 0, (0.5 + offset) * sx - 0.5], [0, sy, (0.5 + offset) * sy - 0.5]])
    resized = cv2.warpAffine(heatmap, to_photo, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return np.clip(resized, 0.0, 1.0)


def cell_offset(input_size: int, grid: int) -> float:
    """Where a cell of a stride-s map is centred, in cells past the naive grid centre: (s - 1) / (2 s).

    Keras' stride-2 layers ('same' padding, and MobileNet's correct_pad) pad one more pixel at the
    bottom and right of an even-sized map, so each output pixel is centred half an input pixel
    further than an even split of the image would put it; over log2(s) such layers that is (s - 1) / 2 px.
    """
    stride = input_size / grid
    return (stride - 1) / (2 * stride)


@lru_cache(maxsize=None)
def _colour_table(colormap: str) -> np.ndarray:
    """matplotlib's scale as a 256-entry BGR table for cv2.applyColorMap (cv2's own JET is another scale)."""
    from matplotlib import colormaps

    rgb = (colormaps[colormap](np.arange(256))[:, :3] * 255).round().astype(np.uint8)
    return np.ascontiguousarray(rgb[:, None, ::-1])


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """A 0..1 map as RGB uint8 through a matplotlib colour scale."""
    levels = np.minimum(np.clip(heatmap, 0, 1) * 256, 255).astype(np.uint8)  # matplotlib's binning of 0..1
    return cv2.cvtColor(cv2.applyColorMap(levels, _colour_table(colormap)), cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, heatmap: np.ndarray, opacity: float = 0.45, colormap: str = "jet") -> np.ndarray:
    """The photo with the heat-map blended over it (opacity 0 = photo only, 1 = map only)."""
    if heatmap.shape != image.shape[:2]:
        heatmap = resize_map(heatmap, image.shape[:2])
    return cv2.addWeighted(np.ascontiguousarray(image, np.uint8), 1 - opacity, colorize(heatmap, colormap), opacity, 0)


def png_bytes(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
