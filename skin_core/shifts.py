"""Fixed, seeded image shifts: how a photo from another clinic, dermoscope or archive differs from ours.

Our test split shares its sources, scale and colour with training, so it cannot show how a model
fares elsewhere. Each shift is a small named function of (RGB uint8 photo, random generator) applied
to the photo as decoded, before the served preprocessing; the generator is seeded by the image's
index, so a shift test is the same on every run and machine.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

SEED = 20260101
ARCHIVE_SIDE = 224  # ISIC-style archives store a square centre crop at this side


def centre_crop_squash(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    h, w = round(height * 0.85), round(width * 0.85)
    top, left = (height - h) // 2, (width - w) // 2
    crop = Image.fromarray(image[top:top + h, left:left + w])
    return np.asarray(crop.resize((ARCHIVE_SIDE, ARCHIVE_SIDE), Image.Resampling.BICUBIC))


def downscale_half(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    small = Image.fromarray(image).resize((max(1, width // 2), max(1, height // 2)), Image.Resampling.LANCZOS)
    return np.asarray(small.resize((width, height), Image.Resampling.BILINEAR))


def jpeg_40(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=40)
    return np.asarray(Image.open(buffer).convert("RGB"))


def colour_cast(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gains = rng.uniform(0.85, 1.15, 3)
    return np.clip(image * gains, 0, 255).astype(np.uint8)


def _gamma(value: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    def shift(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.clip(255.0 * (image / 255.0) ** value, 0, 255).round().astype(np.uint8)

    return shift


def brightness_contrast(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    contrast, brightness = rng.uniform(0.75, 1.25), rng.uniform(-25, 25)
    mean = image.reshape(-1, 3).mean(axis=0)
    return np.clip((image - mean) * contrast + mean + brightness, 0, 255).astype(np.uint8)


def rotate_90(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(image))


def vignette(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    y, x = np.mgrid[:height, :width]
    radius = np.hypot((y - (height - 1) / 2) / (height / 2), (x - (width - 1) / 2) / (width / 2)) / np.sqrt(2)
    falloff = np.clip(1.0 - 0.8 * radius ** 2.5, 0.0, 1.0)
    return (image * falloff[..., None]).round().astype(np.uint8)


@dataclass(frozen=True)
class Shift:
    name: str
    description: str
    apply: Callable[[np.ndarray, np.random.Generator], np.ndarray]

    def __call__(self, image: np.ndarray, index: int) -> np.ndarray:
        """The shifted copy of the ``index``-th image of a set (seeded by the index)."""
        return self.apply(image, np.random.default_rng([SEED, index]))


SHIFTS = (
    Shift("clean", "the photo as stored", lambda image, rng: image),
    Shift("crop_squash", "centre crop 85 %, squashed to a 224 px square (ISIC-style archives)", centre_crop_squash),
    Shift("downscale_half", "down to 1/2 and back up (a blurrier camera)", downscale_half),
    Shift("jpeg_40", "JPEG re-compression at quality 40", jpeg_40),
    Shift("colour_cast", "per-channel gains 0.85-1.15 (another dermoscope's white balance)", colour_cast),
    Shift("gamma_0.7", "gamma 0.7 (brighter mid-tones)", _gamma(0.7)),
    Shift("gamma_1.4", "gamma 1.4 (darker mid-tones)", _gamma(1.4)),
    Shift("brightness_contrast", "contrast x0.75-1.25 around the mean, brightness -25..+25 levels", brightness_contrast),
    Shift("rotate_90", "rotated by 90 degrees", rotate_90),
    Shift("vignette", "dark vignette towards the corners (a dermoscope's round field)", vignette),
)
