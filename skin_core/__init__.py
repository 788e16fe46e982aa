"""Skin-lesion classification core: models, data, training, evaluation and serving (no UI).

The app uses only what is exported here.
"""

from .cli import quiet_tensorflow_start

with quiet_tensorflow_start():  # only under `python -m skin_core`: TensorFlow's start-up lines stay out of batch output
    from . import layers, losses  # noqa: F401  (registers the custom Keras objects for plain load_model)
from .bundle import ModelBundle, list_bundles
from .case_report import case_report_pdf, referral_statement
from .classifier import Classifier, EnsembleClassifier, Prediction, default_bundle, find_bundle, gpu_available, load_classifier
from .errors import BundleError, InvalidImage, InvalidPatient, SkinCoreError
from .explain import METHODS as HEATMAP_METHODS
from .explain import overlay, png_bytes
from .images import load_image
from .patient import Patient
from .vocab import CLASS_NAMES, CLASSES, MALIGNANT, SEXES, SITES, UNKNOWN

__all__ = [
    "BundleError", "CLASS_NAMES", "CLASSES", "Classifier", "EnsembleClassifier", "InvalidImage", "InvalidPatient", "MALIGNANT",
    "ModelBundle", "Patient", "Prediction", "SEXES", "SITES", "SkinCoreError", "UNKNOWN", "default_bundle",
    "find_bundle", "gpu_available", "HEATMAP_METHODS", "list_bundles", "load_classifier", "load_image", "overlay", "png_bytes",
    "case_report_pdf", "referral_statement",
]
