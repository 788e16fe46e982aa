"""`python -m skin_core predict`: many files -> one CSV row each, errors as rows, never a crash."""

from __future__ import annotations

import csv
from pathlib import Path

from .errors import SkinCoreError
from .patient import Patient
from .vocab import CLASSES

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif"}


def expand_inputs(items) -> list[Path]:
    """Files as given, folders as their image files (sorted)."""
    paths = []
    for item in map(Path, items):
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(item)
    return paths


def read_metadata_csv(path) -> dict[str, dict]:
    """Rows keyed by image stem: columns image, age, sex, and site (or HAM10000's localization)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for row in rows:
        key = row.get("image") or row.get("image_id")
        if key:
            out[Path(key).stem] = {"age": row.get("age"), "sex": row.get("sex"),
                                   "site": row.get("site", row.get("localization"))}
    return out


def predict_files(classifier, paths, out_csv, patient_fields: dict | None = None,
                  metadata: dict[str, dict] | None = None, progress: bool = True) -> int:
    """Write one row per image; returns the number of rows that are errors."""
    from tqdm import tqdm

    errors = 0
    with open(out_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", *CLASSES, "prediction", "error"])
        writer.writeheader()
        for path in tqdm(paths, desc="predicting", unit="image", disable=not progress):
            row = {"image": Path(path).stem}
            try:
                fields = (metadata or {}).get(Path(path).stem, patient_fields or {})
                prediction = classifier.predict(Path(path), Patient.from_fields(**fields))
                row.update({c: f"{p:.6f}" for c, p in prediction.as_dict().items()}, prediction=prediction.top)
            except SkinCoreError as error:
                errors += 1
                row["error"] = str(error)
            writer.writerow(row)
    return errors
