"""`python -m skin_core predict`: many files -> one CSV row each, errors as rows, never a crash."""

from __future__ import annotations

import csv
from pathlib import Path

from .errors import SkinCoreError
from .patient import Patient
from .vocab import CLASSES

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".heic", ".heif"}
COLUMNS = ["image", *CLASSES, "prediction", "refer", "referral_score", "referral_rule", "not_dermoscopy",
           "uncertain", "error"]


def expand_inputs(items) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files as given, folders as their image files (sorted), and the folders' other files with why
    they were left out: a clinic's photo folder also holds reports and notes, and a batch run must
    say which files it did not read rather than drop them silently."""
    paths, skipped = [], []
    for item in map(Path, items):
        if not item.is_dir():
            paths.append(item)  # named explicitly: an unreadable one becomes an error row
            continue
        for path in sorted(p for p in item.rglob("*") if p.is_file()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(path)
            else:
                skipped.append((path, f"not an image file ({path.suffix or 'no suffix'})"))
    return paths, skipped


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


def prediction_row(prediction) -> dict:
    """A Prediction as CSV fields. ``refer``, ``referral_score`` and ``referral_rule`` stay empty when
    the bundle has no referral rule: 0 would claim that melanoma was excluded, which nobody checked."""
    row = {c: f"{p:.6f}" for c, p in prediction.as_dict().items()}
    row.update(prediction=prediction.top, not_dermoscopy=int(bool(prediction.not_lesion_reasons)),
               uncertain=int(bool(prediction.uncertainty_reasons())))
    if prediction.referral is not None:
        row.update(refer=int(prediction.refer), referral_score=f"{prediction.referral_score:.6f}",
                   referral_rule=prediction.referral.describe())
    return row


def predict_files(classifier, paths, out_csv, patient_fields: dict | None = None,
                  metadata: dict[str, dict] | None = None, progress: bool = False, report=None) -> int:
    """Write one row per path (an unreadable file gets an error row); returns the number of error rows.

    ``report(path, row)`` is called after each row is written (the CLI names errors, and every row
    with ``--verbose``).
    """
    from tqdm import tqdm

    errors = 0
    with open(out_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for path in tqdm(paths, desc="predicting", unit="image", disable=not progress):
            path = Path(path)
            row = {"image": path.stem}
            try:
                fields = (metadata or {}).get(path.stem, patient_fields or {})
                prediction = classifier.predict(path, Patient.from_fields(**fields))
                row.update(prediction_row(prediction))
            except (SkinCoreError, OSError) as error:
                errors += 1
                row["error"] = str(error)
            writer.writerow(row)
            if report:
                report(path, row)
    return errors
