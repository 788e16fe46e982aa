"""Serving: load a bundle once, predict one photo with its attention map, thread-safe."""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .bundle import WEIGHTS_DIR, ModelBundle, list_bundles
from .errors import BundleError
from .evaluation import apply_temperature
from .images import dihedral, load_image, resize_for_model, unit_range
from .ood import LesionCheck
from .patient import UNKNOWN_PATIENT, Patient
from .referral import ReferralRule
from .registry import SERVING_PREFERENCE
from .vocab import CLASS_NAMES, CLASSES, MALIGNANT

# When to tell the doctor the model is unsure (chosen as plain, conservative rules).
MIN_TOP_PROBABILITY = 0.50
MAX_NORMALISED_ENTROPY = 0.60
MIN_MARGIN = 0.15
CPU_FALLBACK_MARGIN = 0.05  # validation balanced accuracy a bundle must gain to displace the CPU model


@dataclass(frozen=True)
class Prediction:
    """One photo's result: calibrated probabilities in CLASSES order, the attention map, timing."""

    probabilities: np.ndarray  # (7,), sums to 1
    attention_map: np.ndarray  # (h, w) in 0..1, the model's own soft attention
    image: np.ndarray = field(repr=False)  # the RGB photo as decoded (after EXIF rotation)
    logits: np.ndarray = field(default=None, repr=False)  # raw class scores, before softmax and temperature
    not_lesion_reasons: tuple[str, ...] = ()  # why the photo does not look like a dermoscopy image
    model_name: str = ""
    architecture: str = ""
    device: str = "CPU"
    seconds: float = 0.0
    referral: ReferralRule | None = None  # the bundle's melanoma referral rule (None: the bundle has none)

    def as_dict(self) -> dict[str, float]:
        return {c: float(p) for c, p in zip(CLASSES, self.probabilities)}

    @property
    def ranked(self) -> list[tuple[str, float]]:
        order = np.argsort(-self.probabilities)
        return [(CLASSES[i], float(self.probabilities[i])) for i in order]

    @property
    def top(self) -> str:
        return self.ranked[0][0]

    @property
    def malignant_probability(self) -> float:
        return float(sum(self.probabilities[CLASSES.index(c)] for c in MALIGNANT))

    @property
    def referral_score(self) -> float | None:
        return None if self.referral is None else float(self.referral.score(self.probabilities))

    @property
    def refer(self) -> bool:
        """True when melanoma cannot be excluded (the referral score crosses the card's threshold)."""
        return bool(self.referral is not None and self.referral.refers(self.probabilities))

    @property
    def normalised_entropy(self) -> float:
        p = np.clip(self.probabilities, 1e-12, 1.0)
        return float(-(p * np.log(p)).sum() / math.log(len(p)))

    def uncertainty_reasons(self) -> list[str]:
        """Plain-language reasons to distrust this result; empty when the model is decisive."""
        (first, p1), (second, p2) = self.ranked[:2]
        reasons = []
        if p1 < MIN_TOP_PROBABILITY:
            reasons.append(f"the most likely diagnosis ({CLASS_NAMES[first]}) has only {p1:.0%} probability")
        if p1 - p2 < MIN_MARGIN:
            reasons.append(f"{CLASS_NAMES[first]} and {CLASS_NAMES[second]} are nearly tied ({p1:.0%} vs {p2:.0%})")
        if self.normalised_entropy > MAX_NORMALISED_ENTROPY:
            reasons.append("the probability is spread over many diagnoses")
        return reasons


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax (the last axis)."""
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def gpu_available() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


class Classifier:
    """A loaded bundle. One instance can serve many threads at once."""

    def __init__(self, bundle: ModelBundle, feature_layers=None):
        """``feature_layers``: layers whose pooled outputs ``forward_with_features`` returns (default:
        those the bundle's not-a-lesion check reads, else ``features``)."""
        import keras
        import tensorflow as tf

        self.bundle = bundle
        try:
            self.model = bundle.load_network()
        except Exception as error:  # a bundle from other code or a damaged file
            raise BundleError(f"The model file {bundle.model_file} could not be loaded: {error}") from error
        size = self.model.inputs[0].shape[1]
        if size != bundle.input_size or self.model.outputs[0].shape[-1] != len(CLASSES):
            raise BundleError(f"{bundle.path}: card says {bundle.input_size}px / {len(CLASSES)} classes, "
                              f"model has {size}px / {self.model.outputs[0].shape[-1]}")
        names = bundle.card["layers"]
        head = self.model.get_layer(names["output"])
        self._head_kernel, self._head_bias = (w.astype(np.float64) for w in head.get_weights())
        self.lesion_check = LesionCheck.from_bundle(bundle)
        if feature_layers is None:
            checked = self.lesion_check is not None and self.lesion_check.uses_features
            feature_layers = self.lesion_check.feature_layers if checked else (names.get("gradcam", "features"),)
        self.feature_layers = tuple(feature_layers)
        self._check_features = self.lesion_check is not None and self.lesion_check.feature_layers == self.feature_layers
        try:
            maps = [self.model.get_layer(n).output for n in self.feature_layers]
        except ValueError as error:
            raise BundleError(f"{bundle.path}: the not-a-lesion check reads a layer the model lacks ({error}); "
                              "run fit-ood again") from error
        if (self._check_features and self.lesion_check.uses_features
                and self.lesion_check.features.mean.shape[0] != sum(int(m.shape[-1]) for m in maps)):
            raise BundleError(f"{bundle.path}: its ood_features.npz does not fit the model; run fit-ood again")
        served = keras.Model(self.model.inputs, [self.model.get_layer(names["attention"]).output[1], head.input, *maps])

        def run(image, metadata):  # one pass: attention, the head's input, the feature maps' global averages
            attention, head_input, *maps = served([image, metadata], training=False)
            return attention, head_input, tf.concat([tf.reduce_mean(m, axis=[1, 2]) for m in maps], axis=-1)

        self._forward = tf.function(
            run,
            input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32),
                             tf.TensorSpec((None, self.model.inputs[1].shape[1]), tf.float32)],
        )
        self.device = "GPU" if gpu_available() else "CPU"
        self.referral = ReferralRule.from_card(bundle.card)
        self._explainers = {}
        self._lock = threading.Lock()
        self.predict(np.full((size, size, 3), 128, np.uint8))  # trace once, so the first doctor does not wait

    @property
    def name(self) -> str:
        return self.bundle.name

    @property
    def input_size(self) -> int:
        return self.bundle.input_size

    def model_inputs(self, image: np.ndarray, patient: Patient) -> tuple[np.ndarray, np.ndarray]:
        """The batch of one (image, metadata) pair the network reads."""
        return resize_for_model(image, self.input_size, self.bundle.detail_side)[None], patient.encode()[None]

    def views(self, x: np.ndarray, metadata: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One prepared photo's batch of test-time views (the card's count of ``images.dihedral``; the photo as
        given first) and its metadata repeated: probabilities are their mean, maps read the first."""
        views = np.concatenate(dihedral(x, self.bundle.views))
        return views, np.repeat(metadata, len(views), axis=0)

    def forward(self, images: np.ndarray, metadata: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A batch through the network: attention maps (n, h, w) and class logits (n, 7), float64."""
        return self.forward_with_features(images, metadata)[:2]

    def forward_with_features(self, images: np.ndarray, metadata: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As ``forward``, plus the globally averaged ``feature_layers`` (n, channels), float64, from the same pass."""
        attention, head_input, pooled = self._forward(images.astype(np.float32), metadata.astype(np.float32))
        logits = head_input.numpy().astype(np.float64) @ self._head_kernel + self._head_bias
        return attention.numpy(), logits, pooled.numpy().astype(np.float64)

    def predict(self, image, patient: Patient | None = None) -> Prediction:
        """Classify one photo (bytes, path, file object or RGB array) for one patient."""
        started = time.perf_counter()
        rgb = image if isinstance(image, np.ndarray) else load_image(image)
        x, meta = self.model_inputs(rgb, patient or UNKNOWN_PATIENT)
        attention, logits, pooled = self.forward_with_features(*self.views(x, meta))
        return Prediction(
            probabilities=apply_temperature(softmax(logits).mean(axis=0), self.bundle.temperature),
            attention_map=unit_range(attention[0]), image=rgb, logits=logits[0],
            not_lesion_reasons=self.not_lesion_reasons(x[0], logits[0], pooled[0]), model_name=self.name,
            architecture=self.bundle.architecture, device=self.device, seconds=time.perf_counter() - started,
            referral=self.referral,
        )

    def not_lesion_reasons(self, prepared: np.ndarray, logits: np.ndarray, pooled: np.ndarray) -> tuple[str, ...]:
        """Why the not-a-dermoscopy check rejects a prepared photo (empty: it passes or the bundle has none)."""
        if self.lesion_check is None:
            return ()
        features = pooled if self._check_features else None  # None: the check skips its feature distance
        return tuple(self.lesion_check.reasons(prepared.astype(np.uint8), logits, features))

    @property
    def attention_grid(self) -> str:
        """The soft-attention map's grid, e.g. "6x6"."""
        shape = self.model.get_layer(self.bundle.card["layers"]["attention"]).output[1].shape[1:3]
        return "x".join(str(int(side)) for side in shape)

    @property
    def default_heatmap_method(self) -> str:
        """The heat-map method the card chose (``python -m skin_core heatmaps``: most mass in the lesion)."""
        return self.bundle.card.get("heatmap", {}).get("default", "Grad-CAM")

    def explainer(self, method: str | None = None):
        """The heat-map callable for one of ``explain.METHODS`` (default: the card's), built once and shared.

        ``explainer(method)(image, patient=None, class_name=None)`` -> (h, w) map in 0..1 at the photo's size.
        """
        from .explain import build_explainer

        method = method or self.default_heatmap_method
        with self._lock:
            if method not in self._explainers:
                self._explainers[method] = build_explainer(self, method)
            return self._explainers[method]


class EnsembleClassifier:
    """Several bundles served as one model, with the Classifier's interface.

    Probabilities: the mean of the members' calibrated probabilities over the card's test-time views, softened
    by the ensemble's own temperature (``evaluation`` reads the same through ``ModelBundle.load_model``). The soft-attention map
    and every heat-map: the members' maps, each in 0..1, averaged (heat-maps for the ensemble's class). The
    not-a-dermoscopy check: the first member's, fitted on its own features and logits.
    """

    def __init__(self, bundle: ModelBundle):
        from .models import ensemble_network

        self.bundle = bundle
        self.members = [load_classifier(member.path) for member in bundle.members]  # shared with direct use
        # The members' networks joined (weights shared, nothing copied): what bench times as the bare model.
        self.model = ensemble_network([m.model for m in self.members], [m.bundle.temperature for m in self.members])
        self.device = self.members[0].device
        self.lesion_check = self.members[0].lesion_check
        self.referral = ReferralRule.from_card(bundle.card)
        self._explainers = {}
        self._lock = threading.Lock()

    name = Classifier.name
    input_size = Classifier.input_size
    model_inputs = Classifier.model_inputs
    views = Classifier.views
    default_heatmap_method = Classifier.default_heatmap_method

    @property
    def attention_grid(self) -> str:
        return self.members[0].attention_grid

    def predict(self, image, patient: Patient | None = None) -> Prediction:
        started = time.perf_counter()
        rgb = image if isinstance(image, np.ndarray) else load_image(image)
        x, meta = self.model_inputs(rgb, patient or UNKNOWN_PATIENT)
        batch = self.views(x, meta)
        outputs = [member.forward_with_features(*batch) for member in self.members]
        mean = np.mean([apply_temperature(softmax(logits), member.bundle.temperature)
                        for member, (_, logits, _) in zip(self.members, outputs)], axis=(0, 1))
        grid = outputs[0][0].shape[1:3]
        attention = np.mean([unit_range(resize_grid(a[0], grid)) for a, _, _ in outputs], axis=0)
        _, first_logits, first_pooled = outputs[0]
        return Prediction(
            probabilities=apply_temperature(mean, self.bundle.temperature), attention_map=unit_range(attention),
            image=rgb, logits=np.log(np.clip(mean, 1e-12, 1.0)),
            not_lesion_reasons=self.members[0].not_lesion_reasons(x[0], first_logits[0], first_pooled[0]),
            model_name=self.name, architecture=self.bundle.architecture, device=self.device,
            seconds=time.perf_counter() - started, referral=self.referral,
        )

    def explainer(self, method: str | None = None):
        """As ``Classifier.explainer``: the members' maps of one method, averaged (``explain.MeanExplainer``)."""
        from .explain import MeanExplainer

        method = method or self.default_heatmap_method
        with self._lock:
            if method not in self._explainers:
                self._explainers[method] = MeanExplainer([m.explainer(method) for m in self.members], self)
            return self._explainers[method]


def resize_grid(heatmap: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """A member's attention map on the first member's grid (members of other backbones may differ)."""
    if tuple(heatmap.shape) == tuple(grid):
        return heatmap
    import cv2

    return cv2.resize(heatmap.astype(np.float32), (int(grid[1]), int(grid[0])), interpolation=cv2.INTER_AREA)


def validation_score(bundle: ModelBundle) -> float | None:
    """Validation balanced accuracy with metadata unknown (the harder, honest case), if measured.

    Where the shift tests were run on validation (``metrics_shift_val.json``), the mean over the clean
    split and every shift: photos from other clinics and dermoscopes count as much as our own.
    """
    shifted = bundle.path / "metrics_shift_val.json"
    if shifted.is_file():
        rows = json.loads(shifted.read_text())["shifts"]
        return float(np.mean([row["balanced_accuracy"] for row in rows]))
    return (bundle.metrics("val") or {}).get("without_metadata", {}).get("balanced_accuracy")


def default_bundle(root=WEIGHTS_DIR, gpu: bool | None = None) -> ModelBundle:
    """The bundle the app serves by default.

    A GPU and a shipped GPU model (InceptionResNetV2): that one. Otherwise the CPU model
    (MobileNetV3Large), unless another shipped bundle beats it on the validation split by more than
    CPU_FALLBACK_MARGIN balanced accuracy: a doctor should not be shown a clearly weaker model by
    default. The choice reads validation metrics only, never test.
    """
    bundles = list_bundles(root)
    if not bundles:
        raise BundleError(f"No model bundles found in {root}")
    use_gpu = gpu_available() if gpu is None else gpu
    by_architecture = {b.architecture: b for b in bundles}
    if use_gpu and SERVING_PREFERENCE["gpu"] in by_architecture:
        return by_architecture[SERVING_PREFERENCE["gpu"]]
    preferred = by_architecture.get(SERVING_PREFERENCE["cpu"], bundles[0])
    scored = [b for b in bundles if validation_score(b) is not None]
    if scored and validation_score(preferred) is not None:
        best = max(scored, key=validation_score)
        if validation_score(best) - validation_score(preferred) > CPU_FALLBACK_MARGIN:
            return best
    return preferred


def find_bundle(name_or_path, root=WEIGHTS_DIR) -> ModelBundle:
    """A bundle by directory path, or by folder name / architecture under ``root``."""
    path = Path(name_or_path)
    if (path / "card.json").is_file():
        return ModelBundle.open(path)
    for bundle in list_bundles(root):
        if str(name_or_path).lower() in (bundle.name.lower(), bundle.architecture.lower()):
            return bundle
    raise BundleError(f"No model bundle {name_or_path!r}; shipped: {', '.join(b.name for b in list_bundles(root))}")


_cache: dict[Path, Classifier | EnsembleClassifier] = {}
_cache_lock = threading.RLock()  # an ensemble loads its members through the same cache


def load_classifier(name_or_path=None, root=WEIGHTS_DIR) -> Classifier | EnsembleClassifier:
    """A shared Classifier for a bundle (default: the one for this device), loaded once per process."""
    bundle = default_bundle(root) if name_or_path is None else find_bundle(name_or_path, root)
    key = bundle.path.resolve()
    with _cache_lock:
        if key not in _cache:
            _cache[key] = EnsembleClassifier(bundle) if bundle.is_ensemble else Classifier(bundle)
        return _cache[key]
