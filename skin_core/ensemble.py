"""`python -m skin_core ensemble`: several trained bundles served as one model.

Two networks that err differently hold up better together on other clinics' photos than either alone
(on validation, mobilenetv2-192 with its robust retrain: see README, "What was tried"). The ensemble is a
bundle folder with a card and the usual metrics files but no network of its own: its card names its
members, bundle folders beside it, so their files are shipped once and each keeps its own card, referral,
not-a-dermoscopy check and heat-map choice. Its probabilities are the mean of the members' calibrated
probabilities, softened once more by a temperature fitted here on validation, as training does for a
single model.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from .bundle import CARD_VERSION, ModelBundle, software_versions, write_json
from .errors import BundleError
from .evaluation import _split_arrays, apply_temperature, expected_calibration_error, fit_temperature
from .vocab import CLASSES


def make_ensemble(members: list, out, data_dir, split_file=None, views: int = 1) -> ModelBundle:
    """Write the ensemble bundle ``out`` of ``members`` (bundle folders in the same parent folder as ``out``).

    ``views`` > 1: serve the mean over that many flips and turns of each photo (test-time augmentation,
    ``images.dihedral``); the temperature is fitted on those means."""
    out = Path(out)
    bundles = [ModelBundle.open(m) for m in members]
    if len(bundles) < 2:
        raise BundleError("An ensemble needs at least two member bundles")
    if any(b.is_ensemble for b in bundles):
        raise BundleError("An ensemble's members must be single models")
    beside = Path(os.path.abspath(out)).parent  # not resolve(): a member may be a link to a folder elsewhere
    if any(Path(os.path.abspath(b.path)).parent != beside for b in bundles):
        raise BundleError(f"Members must sit beside the ensemble, in {beside}")
    first = bundles[0]
    if any((b.input_size, b.detail_side) != (first.input_size, first.detail_side) for b in bundles):
        raise BundleError("Members must share input size and detail level (one prepared photo feeds them all)")
    out.mkdir(parents=True, exist_ok=True)
    card = {
        "card_version": CARD_VERSION,
        "architecture": "Ensemble (" + " + ".join(b.architecture for b in bundles) + ")",
        "members": [b.name for b in bundles],
        "combination": "mean of the members' calibrated probabilities"
                       + (f" over {views} flips and turns of the photo" if views > 1 else "")
                       + ", then the ensemble's temperature",
        "test_time_augmentation_views": views,
        "input_size": first.input_size, "detail_side": first.detail_side, "input": first.card.get("input"),
        "classes": list(CLASSES), "metadata": first.card["metadata"],
        "parameters": sum(int(b.card["parameters"]) for b in bundles),
        "temperature": 1.0,
        "split_file": first.card.get("split_file"),
        "software": software_versions(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(out / "card.json", card)
    bundle = ModelBundle.open(out)
    # The temperature, on validation with the patients' records, as training fits a single model's.
    model, images, metadata, y = _split_arrays(bundle, data_dir, "val", split_file)
    probabilities = model.predict({"image": images, "metadata": metadata}, batch_size=64, verbose=0)
    temperature = fit_temperature(probabilities, y)
    bundle.update_card(temperature=temperature, calibration={
        "fitted_on": "val", "val_ece_before": expected_calibration_error(probabilities, y),
        "val_ece_after": expected_calibration_error(apply_temperature(probabilities, temperature), y)})
    return bundle
