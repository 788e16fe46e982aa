"""'Is this a dermoscopy photo at all?': a check built from the image and the model's own output.

Three scores, each thresholded at a low percentile of the validation lesions (so few real lesions
are flagged): the share of skin-coloured pixels (documents, landscapes, skies fail), the image's
detail (plain colours fail), and the model's energy score logsumexp(logits) (inputs unlike training
images give low energy; Liu et al. 2020).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

ANALYSIS_SIDE = 128


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


@dataclass(frozen=True)
class LesionCheck:
    """Thresholds fitted on validation lesions (stored in the bundle card under ``ood``)."""

    min_skin_fraction: float
    min_detail: float
    max_detail: float
    min_energy: float

    @classmethod
    def from_card(cls, card: dict) -> "LesionCheck | None":
        ood = card.get("ood")
        fields = ("min_skin_fraction", "min_detail", "max_detail", "min_energy")
        return None if not ood else cls(*(ood[f] for f in fields))

    def flags(self, skin: np.ndarray, texture: np.ndarray, energies: np.ndarray) -> np.ndarray:
        """Vectorised: which images (by their scores) are not lesion close-ups."""
        return ((skin < self.min_skin_fraction) | (texture < self.min_detail) | (texture > self.max_detail)
                | (energies < self.min_energy))

    def reasons(self, image: np.ndarray, logits: np.ndarray) -> list[str]:
        """Plain-language reasons why this does not look like a dermoscopy photo; empty if it does."""
        found = []
        texture = detail(image)
        if texture < self.min_detail:
            found.append("the image is almost a plain colour")
        if texture > self.max_detail:
            found.append("it has far more hard edges and contrast than a skin close-up (a document, scene or object?)")
        if skin_fraction(image) < self.min_skin_fraction:
            found.append("it has too little skin colour for a close-up of the skin")
        if energy(logits) < self.min_energy:
            found.append("it is unlike every photo the model was trained on")
        return found


def fit(scores: dict[str, np.ndarray], percentile: float = 1.0) -> LesionCheck:
    """Each threshold at ``percentile`` % (detail: also 100 - ``percentile`` %) of the lesions' scores."""
    return LesionCheck(
        min_skin_fraction=float(np.percentile(scores["skin_fraction"], percentile)),
        min_detail=float(np.percentile(scores["detail"], percentile)),
        max_detail=float(np.percentile(scores["detail"], 100 - percentile)),
        min_energy=float(np.percentile(scores["energy"], percentile)),
    )


def non_dermoscopy_images() -> dict[str, np.ndarray]:
    """A set of photos that are not skin-lesion close-ups: scikit-image's bundled samples plus drawn ones."""
    from skimage import data as samples
    from skimage import io

    images = {}
    for name in ("astronaut", "brick", "camera", "cell", "chelsea", "checkerboard", "clock", "coffee", "coins",
                 "colorwheel", "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo",
                 "microaneurysms", "moon", "page", "retina", "rocket", "text", "shepp_logan_phantom"):
        try:
            array = getattr(samples, name)()
        except Exception:  # a sample that needs a download is skipped (no internet at run time)
            continue
        images[f"skimage:{name}"] = _as_rgb(array)
    for file in ("motorcycle_left.png", "motorcycle_right.png"):
        try:
            images[f"skimage:{file}"] = _as_rgb(io.imread(f"{samples.data_dir}/{file}"))
        except Exception:
            continue
    images.update(_drawn_images())
    return images


def _as_rgb(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        array = (255 * (array - array.min()) / (np.ptp(array) or 1)).astype(np.uint8)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return array[..., :3]


def _drawn_images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for name, colour in {"white": (255, 255, 255), "black": (0, 0, 0), "grey": (128, 128, 128), "red": (200, 30, 30),
                         "skin": (224, 172, 140), "blue": (40, 80, 200), "green": (40, 160, 60), "yellow": (230, 210, 40)}.items():
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
    out["noise:uniform"] = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    out["gradient:horizontal"] = np.repeat(np.linspace(0, 255, 400, dtype=np.uint8)[None, :, None], 300, 0).repeat(3, 2)
    return out


def _scores(classifier, images: list[np.ndarray], metadata: np.ndarray) -> dict[str, np.ndarray]:
    """The three scores for images already at the model's input size (uint8)."""
    batches = range(0, len(images), 64)
    logits = np.concatenate([classifier.forward(np.stack(images[i:i + 64]), metadata[i:i + 64])[1] for i in batches])
    return {
        "skin_fraction": np.array([skin_fraction(im) for im in images]),
        "detail": np.array([detail(im) for im in images]),
        "energy": np.array([energy(l) for l in logits]),
    }


def fit_lesion_check(bundle, data_dir, split_file=None) -> dict:
    """Fit the thresholds on validation lesions; measure warning rates on val, test and non-lesions."""
    from . import data
    from .bundle import write_json
    from .classifier import Classifier
    from .images import resize_for_model
    from .patient import UNKNOWN_PATIENT

    classifier = Classifier(bundle)
    size = bundle.input_size
    table = data.read_ham10000(data_dir)
    split_file = split_file or data.SPLIT_FILE
    lesion_scores = {}
    for split in ("val", "test"):
        rows = data.split_table(table, split, split_file)
        lesion_scores[split] = _scores(classifier, list(data.load_images(rows["path"], size, bundle.detail_side)), data.encode_metadata(rows))
    check = fit(lesion_scores["val"])
    others = non_dermoscopy_images()
    resized = [resize_for_model(im, size, bundle.detail_side).astype(np.uint8) for im in others.values()]
    unknown = np.repeat(UNKNOWN_PATIENT.encode()[None], len(resized), axis=0)
    other_scores = _scores(classifier, resized, unknown)

    def flagged(scores):
        return check.flags(scores["skin_fraction"], scores["detail"], scores["energy"])

    other_flags = flagged(other_scores)
    report = {
        "thresholds": {**asdict(check), "fitted_on": "val lesions: 1st percentile of each score (detail: 1st and 99th)"},
        "false_warning_rate_val_lesions": float(flagged(lesion_scores["val"]).mean()),
        "false_warning_rate_test_lesions": float(flagged(lesion_scores["test"]).mean()),
        "warning_rate_non_lesions": float(other_flags.mean()),
        "non_lesion_images": len(others),
        "non_lesions_missed": [name for name, hit in zip(others, other_flags) if not hit],
    }
    bundle.update_card(ood={**report["thresholds"]})
    write_json(bundle.path / "ood_report.json", report)
    return report
