"""A small HAM10000-shaped data set made on the fly: coloured blobs whose colour depends on the class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from skin_core.loadtest import dermoscopy_like  # noqa: F401  (one drawing for the tests and the bench)
from skin_core.vocab import CLASSES, SITES

COLOURS = [(200, 60, 60), (60, 200, 60), (60, 60, 200), (200, 200, 60), (40, 20, 20), (160, 110, 80), (200, 60, 200)]


def lesion_image(class_index: int, rng: np.random.Generator, size=(200, 150)) -> Image.Image:
    skin = tuple(int(c) for c in rng.integers(180, 230, 3))
    image = Image.new("RGB", size, skin)
    draw = ImageDraw.Draw(image)
    cx, cy = size[0] / 2 + rng.normal(0, 10), size[1] / 2 + rng.normal(0, 8)
    r = rng.uniform(25, 45)
    draw.ellipse([cx - r, cy - r * 0.8, cx + r, cy + r * 0.8], fill=COLOURS[class_index])
    array = np.asarray(image, dtype=np.float32) + rng.normal(0, 6, (size[1], size[0], 3))
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def make_dataset(root: Path, per_class: int = 8, seed: int = 0) -> Path:
    """Write images/ and HAM10000_metadata.csv under root; two images share each lesion."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for c, dx in enumerate(CLASSES):
        for i in range(per_class):
            image_id = f"ISIC_{c:02d}{i:05d}"
            lesion_id = f"HAM_{c:02d}{i // 2:05d}"
            lesion_image(c, rng).save(root / "images" / f"{image_id}.jpg", quality=92)
            rows.append({
                "lesion_id": lesion_id, "image_id": image_id, "dx": dx, "dx_type": "histo",
                "age": float(rng.integers(1, 18) * 5) if i % 5 else np.nan,
                "sex": ["male", "female", "unknown"][i % 3], "localization": SITES[(c + i) % len(SITES)],
            })
    pd.DataFrame(rows).to_csv(root / "HAM10000_metadata.csv", index=False)
    return root


