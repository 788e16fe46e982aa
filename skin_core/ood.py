"""'Is this a dermoscopy photo at all?': a check built from the image and the model's own output.

Four scores, each thresholded at a percentile of the validation lesions (so few real lesions are
flagged):

- the share of skin-coloured pixels (documents, landscapes, skies fail);
- the image's detail, grey-level spread (plain colours fail; documents and hard-edged scenes fail high);
- the model's energy score logsumexp(logits) (inputs unlike training images often give low energy;
  Liu et al. 2020);
- the Mahalanobis distance of the network's pooled ``features`` (global average of the map Grad-CAM
  explains) from the lesions' mean, under a Ledoit-Wolf shrunk covariance (Lee et al. 2018). This
  one catches photos that are skin-coloured and textured but are of something else: a cat, a
  retina, a motorcycle, noise. Its mean and precision matrix are stored in the bundle as
  ``ood_features.npz``; a bundle without that file simply lacks this check.

This module only scores arrays and holds the fitted check; fitting it to a bundle (which needs the
Classifier and the data) lives in ``skin_core.ood_fit``, so the import graph has no cycle.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .images import MIN_SIDE, unit_range  # smaller pictures are refused before any check (skin_core.images.load_image)

ANALYSIS_SIDE = 128
FEATURES_FILE = "ood_features.npz"
IMAGE_CHECKS = ("min_skin_fraction", "min_detail", "max_detail", "min_energy")

REASONS = {
    "min_detail": "the image is almost a plain colour",
    "max_detail": "it has far more hard edges and contrast than a skin close-up (a document, scene or object?)",
    "min_skin_fraction": "it has too little skin colour for a close-up of the skin",
    "min_energy": "the model finds no diagnosis that fits it at all, as for pictures unlike its training photos",
    "max_feature_distance": "it is unlike the skin-lesion photos the model was trained on "
                            "(what the network sees in it is far from what it sees in real lesions)",
}


def _small(image: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((ANALYSIS_SIDE, ANALYSIS_SIDE), Image.Resampling.BILINEAR))


def skin_fraction(image: np.ndarray) -> float:
    """Share of pixels with a skin or lesion hue (reds, browns, pinks, purples) and some colour."""
    hsv = np.asarray(Image.fromarray(_small(image)).convert("HSV"), dtype=np.float32) / 255.0
    hue, saturation, value = hsv[..., 0] * 360, hsv[..., 1], hsv[..., 2]
    skin_hue = (hue <= 55) | (hue >= 290)
    return float(np.mean(skin_hue & (saturation >= 0.08) & (value >= 0.15)))


def detail(image: np.ndarray) -> float:
    """Standard deviation of the grey levels (0..255): near zero for a plain colour."""
    return float(np.asarray(Image.fromarray(_small(image)).convert("L"), dtype=np.float32).std())


def energy(logits: np.ndarray) -> float:
    """logsumexp of the class logits; higher means more like the training images."""
    top = float(np.max(logits))
    return top + float(np.log(np.exp(np.asarray(logits, np.float64) - top).sum()))


def candidate_feature_layers(model, features_layer: str = "features", stages: int = 4) -> list[str]:
    """Layers the feature check may read: ``features`` and, for each of the ``stages - 1`` stages before
    it, the stage's last layer (the last whose spatial side is 2, 4, 8 times the ``features`` map's; e.g.
    MobileNetV2 at 192 px: block_13_expand_relu, block_6_expand_relu, block_3_expand_relu). Deep maps are
    specialised to the seven diagnoses; an earlier stage can tell a photo of something else apart better
    (``skin_core.ood_fit`` picks one per bundle)."""
    layers = list(model.layers)
    features = model.get_layer(features_layer)
    side = features.output.shape[1]
    last = {}
    for layer in layers[: layers.index(features)]:
        output = layer.output
        if not isinstance(output, (list, tuple)) and len(output.shape) == 4 and output.shape[1]:
            last[output.shape[1]] = layer.name
    return [features_layer] + [last[side * 2 ** k] for k in range(1, stages) if side and side * 2 ** k in last]


def mahalanobis(features: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """sqrt((x - mean)^T P (x - mean)) for each row x of ``features`` (n, d) -> (n,)."""
    centred = np.atleast_2d(np.asarray(features, np.float64)) - mean
    squared = np.einsum("ij,jk,ik->i", centred, precision, centred)
    return np.sqrt(np.maximum(squared, 0.0))


@dataclass(frozen=True)
class FeatureModel:
    """Mean and precision (inverse shrunk covariance) of the lesions' pooled features."""

    mean: np.ndarray  # (d,)
    precision: np.ndarray  # (d, d)
    shrinkage: float = 0.0

    @classmethod
    def fit(cls, features: np.ndarray) -> "FeatureModel":
        """Ledoit-Wolf shrunk covariance of ``features`` (n, d), inverted."""
        from sklearn.covariance import LedoitWolf

        estimate = LedoitWolf().fit(np.asarray(features, np.float64))
        return cls(estimate.location_, estimate.get_precision(), float(estimate.shrinkage_))

    def distance(self, features: np.ndarray) -> np.ndarray:
        return mahalanobis(features, self.mean, self.precision)

    def save(self, path) -> None:
        np.savez_compressed(path, mean=self.mean.astype(np.float64), precision=self.precision.astype(np.float64),
                            shrinkage=np.float64(self.shrinkage))

    @classmethod
    def load(cls, path) -> "FeatureModel":
        with np.load(path) as file:
            return cls(file["mean"], file["precision"], float(file["shrinkage"]))


@dataclass(frozen=True)
class LesionCheck:
    """Thresholds fitted on lesions (stored in the bundle card under ``ood``), plus the optional
    feature-space model (``ood_features.npz``)."""

    min_skin_fraction: float
    min_detail: float
    max_detail: float
    min_energy: float
    max_feature_distance: float | None = None
    features: FeatureModel | None = None
    feature_layers: tuple[str, ...] = ("features",)  # whose global-average-pooled outputs, concatenated, it reads

    @classmethod
    def from_card(cls, card: dict, bundle_path=None) -> "LesionCheck | None":
        """The check a bundle's card describes; the feature check only if its npz is in ``bundle_path``."""
        ood = card.get("ood")
        if not ood:
            return None
        model, limit = None, ood.get("max_feature_distance")
        file = Path(bundle_path) / ood.get("features_file", FEATURES_FILE) if bundle_path is not None else None
        if limit is not None and file is not None and file.is_file():
            model = FeatureModel.load(file)
        return cls(*(ood[f] for f in IMAGE_CHECKS), max_feature_distance=limit if model else None, features=model,
                   feature_layers=tuple(ood.get("feature_layers", ("features",))))

    @classmethod
    def from_bundle(cls, bundle) -> "LesionCheck | None":
        return cls.from_card(bundle.card, bundle.path)

    @property
    def uses_features(self) -> bool:
        return self.features is not None and self.max_feature_distance is not None

    def scores(self, images, logits: np.ndarray, features: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Every score for a batch: images (n, h, w, 3) uint8, logits (n, 7), pooled features (n, d)."""
        out = {
            "skin_fraction": np.array([skin_fraction(im) for im in images]),
            "detail": np.array([detail(im) for im in images]),
            "energy": np.array([energy(l) for l in np.atleast_2d(logits)]),
        }
        if features is not None and self.uses_features:
            out["feature_distance"] = self.features.distance(features)
        return out

    def check_flags(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Vectorised, per check (named by its threshold): which images it flags."""
        flags = {
            "min_skin_fraction": scores["skin_fraction"] < self.min_skin_fraction,
            "min_detail": scores["detail"] < self.min_detail,
            "max_detail": scores["detail"] > self.max_detail,
            "min_energy": scores["energy"] < self.min_energy,
        }
        if self.uses_features and "feature_distance" in scores:
            flags["max_feature_distance"] = scores["feature_distance"] > self.max_feature_distance
        return flags

    def flags(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        """Vectorised: which images (by their scores) are not lesion close-ups (any check fires)."""
        return np.any(np.stack(list(self.check_flags(scores).values())), axis=0)

    def reasons(self, image: np.ndarray, logits: np.ndarray, features: np.ndarray | None = None) -> list[str]:
        """Plain-language reasons why this does not look like a dermoscopy photo; empty if it does.

        ``image`` is the model's input (uint8), ``logits`` its class scores, ``features`` its pooled
        feature vector (d,) (None: the feature check is skipped).
        """
        scores = self.scores([image], np.asarray(logits)[None], None if features is None else np.asarray(features)[None])
        fired = self.check_flags(scores)
        return [REASONS[name] for name in REASONS if name in fired and fired[name][0]]

    def thresholds(self) -> dict:
        """The card's ``ood`` fields (the feature model itself goes to the npz)."""
        out = {name: float(getattr(self, name)) for name in IMAGE_CHECKS}
        if self.uses_features:
            out.update(max_feature_distance=float(self.max_feature_distance), feature_layers=list(self.feature_layers))
        return out


def fit(scores: dict[str, np.ndarray], percentile: float = 1.0, feature_percentile: float | None = None,
        features: FeatureModel | None = None, feature_layers=("features",)) -> LesionCheck:
    """Each image threshold at ``percentile`` % (detail: also 100 - ``percentile`` %) of the lesions'
    scores; the feature distance (if ``features`` and ``scores['feature_distance']``) at ``feature_percentile`` %."""
    limit = None
    if features is not None and feature_percentile is not None:
        limit = float(np.percentile(scores["feature_distance"], feature_percentile))
    return LesionCheck(
        min_skin_fraction=float(np.percentile(scores["skin_fraction"], percentile)),
        min_detail=float(np.percentile(scores["detail"], percentile)),
        max_detail=float(np.percentile(scores["detail"], 100 - percentile)),
        min_energy=float(np.percentile(scores["energy"], percentile)),
        max_feature_distance=limit,
        features=features if limit is not None else None,
        feature_layers=tuple(feature_layers),
    )


# ---------------------------------------------------------------------------------------------------
# Non-lesion images to measure the check on: what the installed packages ship, variants of each, and
# drawn ones. Nothing is downloaded.

SKIMAGE_SAMPLES = ("astronaut", "brick", "camera", "cell", "chelsea", "checkerboard", "clock", "coffee", "coins",
                   "colorwheel", "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo",
                   "microaneurysms", "moon", "page", "retina", "rocket", "text", "shepp_logan_phantom", "binary_blobs")
SKIMAGE_FILES = ("motorcycle_left.png", "motorcycle_right.png", "chessboard_RGB.png", "color.png", "clock_motion.png",
                 "no_time_for_that_tiny.gif", "multipage_rgb.tif")
WARM_TINT = np.array([1.0, 0.74, 0.60])  # multiplies a grey image into a skin colour


def packaged_images() -> dict[str, np.ndarray]:
    """Photos and pictures bundled with scikit-image, scikit-learn and matplotlib (those that load offline)."""
    import matplotlib
    from skimage import data as samples

    images = {}
    for name in SKIMAGE_SAMPLES:
        try:
            array = getattr(samples, name)()
        except Exception:  # a sample that needs a download is skipped (no internet at run time)
            continue
        images[f"skimage:{name}"] = _as_rgb(array)
    for file in SKIMAGE_FILES:
        try:
            with Image.open(Path(samples.data_dir) / file) as picture:
                images[f"skimage:{file}"] = np.asarray(picture.convert("RGB"))
        except Exception:
            continue
    try:
        from sklearn.datasets import load_sample_images

        bunch = load_sample_images()
        for file, array in zip(bunch.filenames, bunch.images):
            images[f"sklearn:{Path(file).name}"] = _as_rgb(array)
    except Exception:
        pass
    folder = Path(matplotlib.get_data_path()) / "sample_data"
    for file in sorted(folder.rglob("*")):
        if file.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif", ".tif", ".tiff", ".bmp"):
            try:
                with Image.open(file) as picture:
                    images[f"matplotlib:{file.relative_to(folder)}"] = _as_rgb(np.asarray(picture.convert("RGB")))
            except Exception:
                continue
    for file, key in (("jacksboro_fault_dem.npz", "elevation"), ("topobathy.npz", "topo")):  # terrain maps as grey
        try:
            with np.load(folder / file) as arrays:
                images[f"matplotlib:{file}"] = _as_rgb(np.asarray(arrays[key], np.float64))
        except Exception:
            continue
    return {name: image for name, image in images.items() if min(image.shape[:2]) >= MIN_SIDE}


def variants(image: np.ndarray) -> dict[str, np.ndarray]:
    """Crops, a rescale and colour changes of one picture (the derived non-lesion images)."""
    h, w = image.shape[:2]
    grey = np.asarray(Image.fromarray(image).convert("L"), np.float64)
    hsv = np.asarray(Image.fromarray(image).convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + 85) % 256  # hue turned by 120 degrees
    small = Image.fromarray(image).resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.LANCZOS)
    return {
        "centre50": image[h // 4: h // 4 + max(1, h // 2), w // 4: w // 4 + max(1, w // 2)],
        "corner": image[: max(1, h // 2), : max(1, w // 2)],
        "half": np.asarray(small),
        "hue120": np.asarray(Image.fromarray(hsv, "HSV").convert("RGB")),
        "grey": np.stack([grey.astype(np.uint8)] * 3, axis=-1),
        "warm": np.clip(40 + grey[..., None] * 0.85 * WARM_TINT, 0, 255).astype(np.uint8),
    }


def non_dermoscopy_images(derived: bool = True) -> dict[str, np.ndarray]:
    """Pictures that are not skin-lesion close-ups: the packaged ones, with ``derived`` also their
    variants (``name|variant``), plus drawn and synthetic ones (``plain:``, ``document:``, ...).
    Pictures under MIN_SIDE pixels are left out: the app refuses them before any check."""
    images = {}
    for name, image in packaged_images().items():
        images[name] = image
        if derived:
            images.update({f"{name}|{kind}": v for kind, v in variants(image).items() if min(v.shape[:2]) >= MIN_SIDE})
    images.update(_drawn_images())
    return images


def is_derived(name: str) -> bool:
    return "|" in name


def is_tuning_image(name: str) -> bool:
    """The non-lesion images the fit may use to choose between settings (the drawn ones and the
    scikit-learn and matplotlib pictures, with their variants); scikit-image's photos (the cat, the
    motorcycles, the retina, ...) are kept out of every choice and only measured."""
    return not name.startswith("skimage:")


def _as_rgb(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        array = (255 * unit_range(array.astype(np.float64))).astype(np.uint8)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return np.ascontiguousarray(array[..., :3])


def _drawn_images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for name, colour in {"white": (255, 255, 255), "black": (0, 0, 0), "grey": (128, 128, 128), "red": (200, 30, 30),
                         "skin": (224, 172, 140), "dark_skin": (141, 85, 36), "pink": (230, 160, 170),
                         "brown": (120, 70, 40), "blue": (40, 80, 200), "green": (40, 160, 60),
                         "yellow": (230, 210, 40)}.items():
        out[f"plain:{name}"] = np.full((300, 400, 3), colour, np.uint8)
    for i in range(4):  # documents: black text lines on white or pale paper
        page = Image.new("RGB", (400, 520), tuple(int(v) for v in rng.integers(235, 256, 3)))
        draw = ImageDraw.Draw(page)
        for line in range(24):
            y = 30 + line * 20
            draw.text((30, y), " ".join("lorem ipsum dolor sit amet"[: rng.integers(5, 26)] for _ in range(3)), fill=(20, 20, 20))
        out[f"document:{i}"] = np.asarray(page)
    for i in range(4):  # landscapes: sky, horizon, ground, sun
        scene = Image.new("RGB", (480, 320))
        draw = ImageDraw.Draw(scene)
        sky, ground = (int(rng.integers(80, 140)), int(rng.integers(150, 200)), 235), (50, int(rng.integers(110, 170)), 40)
        draw.rectangle([0, 0, 480, 180], fill=sky)
        draw.rectangle([0, 180, 480, 320], fill=ground)
        draw.ellipse([360, 30, 420, 90], fill=(250, 240, 160))
        noisy = np.asarray(scene, np.float32) + rng.normal(0, 12, (320, 480, 3))
        out[f"landscape:{i}"] = np.clip(noisy, 0, 255).astype(np.uint8)
    ramp = np.linspace(0, 255, 400)
    out["gradient:horizontal"] = np.repeat(ramp.astype(np.uint8)[None, :, None], 300, 0).repeat(3, 2)
    out["gradient:vertical"] = np.repeat(np.linspace(0, 255, 300).astype(np.uint8)[:, None, None], 400, 1).repeat(3, 2)
    yy, xx = np.mgrid[0:300, 0:400]
    radius = np.hypot(yy - 150, xx - 200) / 250
    out["gradient:radial"] = np.stack([np.clip(255 * (1 - radius), 0, 255)] * 3, -1).astype(np.uint8)
    t = (xx / 399.0)[..., None]
    out["gradient:skin_to_brown"] = ((1 - t) * np.array([230, 185, 160]) + t * np.array([110, 60, 35])).astype(np.uint8)
    out["gradient:rainbow"] = np.array([[np.array(colorsys.hsv_to_rgb(x / 400, 0.8, 0.9)) * 255 for x in range(400)]] * 300,
                                       np.uint8)
    out["noise:uniform"] = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    out["noise:uniform_grey"] = np.repeat(rng.integers(0, 256, (300, 300, 1), dtype=np.uint8), 3, 2)
    out["noise:gaussian"] = np.clip(rng.normal(128, 40, (300, 300, 3)), 0, 255).astype(np.uint8)
    out["noise:salt_pepper"] = np.repeat((rng.random((300, 300, 1)) < 0.5).astype(np.uint8) * 255, 3, 2)
    sparse = np.full((300, 300, 3), 128, np.uint8)
    dots = rng.random((300, 300)) < 0.05
    sparse[dots] = rng.choice([0, 255], (int(dots.sum()), 1))
    out["noise:sparse_salt_pepper"] = sparse
    smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(6)))
    out["noise:blurred"] = np.clip((smooth.astype(np.float64) - smooth.mean()) * 6 + 128, 0, 255).astype(np.uint8)
    skin_noise = np.array([215, 160, 130]) + rng.normal(0, 25, (300, 300, 1)) * np.array([1.0, 0.9, 0.8])
    out["noise:skin_coloured"] = np.clip(skin_noise, 0, 255).astype(np.uint8)
    low = rng.random((8, 8, 3))
    out["noise:blocks"] = np.asarray(Image.fromarray((low * 255).astype(np.uint8)).resize((300, 300), Image.Resampling.NEAREST))
    stripes = ((xx // 20) % 2).astype(np.uint8) * 255
    out["pattern:stripes"] = np.stack([stripes] * 3, -1)
    checks = (((xx // 25) + (yy // 25)) % 2).astype(np.uint8)
    out["pattern:checker_skin"] = np.where(checks[..., None] == 1, np.array([225, 175, 145]), np.array([120, 70, 45])).astype(np.uint8)
    for i in range(3):  # coloured shapes on a plain background
        canvas = Image.new("RGB", (400, 300), tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(canvas)
        for _ in range(12):
            x, y = rng.integers(0, 400), rng.integers(0, 300)
            r = int(rng.integers(10, 60))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x - r, y - r, x + r, y + r], fill=colour)
        out[f"shapes:{i}"] = np.asarray(canvas)
    return out
