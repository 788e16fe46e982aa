"""Grad-CAM / Grad-CAM++ heat-maps (tf-keras-vis) and the overlays the app shows."""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image

from .patient import UNKNOWN_PATIENT, Patient
from .vocab import CLASSES


class GradCam:
    """Explains one class of one photo on the model's ``features`` map.

    The model has two inputs (image, metadata), so tf-keras-vis is asked for the raw CAM
    (``expand_cam=False``) and we resize it ourselves.
    """

    def __init__(self, classifier, plus_plus: bool = False):
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

        self.classifier = classifier
        self.plus_plus = plus_plus
        method = GradcamPlusPlus if plus_plus else Gradcam
        self._cam = method(classifier.model, model_modifier=ReplaceToLinear(), clone=True)
        self._layer = classifier.bundle.card["layers"]["gradcam"]
        self._lock = threading.Lock()  # tf-keras-vis rebuilds a sub-model per call; keep calls apart

    @property
    def name(self) -> str:
        return "Grad-CAM++" if self.plus_plus else "Grad-CAM"

    def __call__(self, image: np.ndarray, patient: Patient | None = None, class_name: str | None = None) -> np.ndarray:
        """Heat-map in 0..1 at the photo's size, for ``class_name`` (default: the predicted class)."""
        from tf_keras_vis.utils.scores import CategoricalScore

        x, meta = self.classifier.model_inputs(image, patient or UNKNOWN_PATIENT)
        if class_name is None:
            class_name = self.classifier.predict(image, patient).top
        with self._lock:
            cam = self._cam(CategoricalScore([CLASSES.index(class_name)]), [x, meta],
                            penultimate_layer=self._layer, seek_penultimate_conv_layer=False,
                            expand_cam=False, normalize_cam=True)
        cam = np.asarray(cam[0] if isinstance(cam, list) else cam, dtype=np.float32)[0]
        return resize_map(cam, image.shape[:2])


def resize_map(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a small map to (height, width), clipped to 0..1."""
    resized = Image.fromarray(np.nan_to_num(heatmap).astype(np.float32), mode="F").resize(
        (shape[1], shape[0]), Image.Resampling.BILINEAR
    )
    return np.clip(np.asarray(resized), 0.0, 1.0)


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """A 0..1 map as RGB uint8 through a matplotlib-style colour scale."""
    from matplotlib import colormaps

    return (colormaps[colormap](np.clip(heatmap, 0, 1))[..., :3] * 255).astype(np.uint8)


def overlay(image: np.ndarray, heatmap: np.ndarray, opacity: float = 0.45, colormap: str = "jet") -> np.ndarray:
    """The photo with the heat-map blended over it (opacity 0 = photo only, 1 = map only)."""
    if heatmap.shape != image.shape[:2]:
        heatmap = resize_map(heatmap, image.shape[:2])
    colours = colorize(heatmap, colormap).astype(np.float32)
    blended = (1 - opacity) * image.astype(np.float32) + opacity * colours
    return np.clip(blended, 0, 255).astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
