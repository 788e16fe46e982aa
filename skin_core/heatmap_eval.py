"""`python -m skin_core heatmaps`: how much of each heat-map's mass lies inside the lesion (HAM10000 masks).

A map that points at the lesion must beat the trivial answer "the middle of the photo": a centred,
isotropic Gaussian whose spread matches the maps' (dermoscopy lesions sit mostly in the middle).

The default method the app serves is chosen on a subsample of the validation split; the test split's
subsample is only measured, after the choice, and gives every figure reported.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from .bundle import write_json
from .data import SPLIT_FILE, patients, read_ham10000, split_table
from .explain import METHODS, resize_map
from .images import load_image

SOFT_ATTENTION = "Soft attention (the model's own)"
BASELINE = "Centred Gaussian blob (baseline)"


def lesion_mask(data_dir, image_id: str, shape: tuple[int, int]) -> np.ndarray:
    """The HAM10000 segmentation (600 x 450) as a 0/1 float mask at ``shape`` (majority of each pixel)."""
    mask = cv2.imread(str(Path(data_dir) / "masks" / f"{image_id}_segmentation.png"), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise FileNotFoundError(f"no lesion mask for {image_id} under {data_dir}/masks")
    small = cv2.resize((mask > 127).astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return (small >= 0.5).astype(np.float32)


def share_in_mask(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's mass inside the mask; a blank map counts as uniform (it points nowhere)."""
    total = float(heatmap.sum())
    return float((heatmap * mask).sum() / total) if total > 0 else float(mask.mean())


def second_moment(heatmap: np.ndarray) -> float:
    """Mean squared distance (px^2) of the map's mass from its own centroid: its spatial spread."""
    total = heatmap.sum()
    if total <= 0:
        return float("nan")
    yy, xx = np.mgrid[: heatmap.shape[0], : heatmap.shape[1]]
    cy, cx = (heatmap * yy).sum() / total, (heatmap * xx).sum() / total
    return float((heatmap * ((yy - cy) ** 2 + (xx - cx) ** 2)).sum() / total)


def centred_gaussian(shape: tuple[int, int], sigma: float) -> np.ndarray:
    """An isotropic Gaussian at the photo's centre, peak 1 (its second moment is 2 sigma^2 before the border cuts it)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.exp(-((yy - (shape[0] - 1) / 2) ** 2 + (xx - (shape[1] - 1) / 2) ** 2) / (2 * sigma ** 2)).astype(np.float32)


def bootstrap_ci(values: np.ndarray, resamples: int = 1000, seed: int = 0) -> list[float]:
    """95% percentile interval of the mean over images."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def measure(classifier, table, data_dir, explainers: dict, progress: bool = True) -> dict:
    """Per map (the soft attention, then each explainer): each photo's share in the lesion, and the
    share of a centred Gaussian of that map's mean spread; grid and ms per image.

    Each photo is explained for its predicted class with the patient's own record, as the app does.
    """
    names = [SOFT_ATTENTION, *explainers]
    shares = {name: [] for name in names}
    moments = {name: [] for name in names}
    seconds = {name: 0.0 for name in names}
    masks = []
    for i, (row, patient) in enumerate(zip(table.itertuples(), patients(table))):
        image = load_image(row.path)
        mask = lesion_mask(data_dir, row.image_id, image.shape[:2])
        masks.append(mask)
        started = time.perf_counter()
        prediction = classifier.predict(image, patient)
        maps = {SOFT_ATTENTION: resize_map(prediction.attention_map, image.shape[:2])}  # as the app overlays it
        seconds[SOFT_ATTENTION] += time.perf_counter() - started
        for name, explain in explainers.items():
            started = time.perf_counter()
            maps[name] = explain(image, patient, prediction.top)
            seconds[name] += time.perf_counter() - started
        for name, heatmap in maps.items():
            shares[name].append(share_in_mask(heatmap, mask))
            moments[name].append(second_moment(heatmap))
        if progress and (i + 1) % 25 == 0:
            print(f"{i + 1}/{len(table)} images", flush=True)

    grids = {SOFT_ATTENTION: classifier.attention_grid, **{n: e.grid for n, e in explainers.items()}}
    result = {}
    for name in names:
        sigma = float(np.sqrt(np.nanmean(moments[name]) / 2))  # isotropic 2-D Gaussian: E[r^2] = 2 sigma^2
        started = time.perf_counter()
        blob = [share_in_mask(centred_gaussian(mask.shape, sigma), mask) for mask in masks]
        result[name] = {"shares": np.asarray(shares[name]), "grid": grids[name], "ms_per_image": 1000 * seconds[name] / len(masks),
                        "sigma_px": sigma, "blob_shares": np.asarray(blob),
                        "blob_ms_per_image": 1000 * (time.perf_counter() - started) / len(masks)}
    return result


def row(name: str, shares: np.ndarray, grid: str, ms_per_image: float) -> dict:
    return {"name": name, "share_in_lesion": float(shares.mean()), "ci95": bootstrap_ci(shares), "grid": grid,
            "ms_per_image": float(ms_per_image)}


def gains_over_own_blob(measured: dict) -> dict:
    """Per map: each photo's share in the lesion minus that of a centred Gaussian of the map's own spread."""
    return {name: m["shares"] - m["blob_shares"] for name, m in measured.items()}


def choose_default(measured_val: dict, methods=METHODS) -> str:
    """The method of ``methods`` that beats its own centred Gaussian (same spread) by most, on validation.

    Against its own blob, not on the raw share: a sharper map would otherwise win only by being sharper,
    since lesions sit in the middle.
    """
    gains = gains_over_own_blob(measured_val)
    return max((name for name in methods if name in gains), key=lambda name: gains[name].mean())


def summarise(measured_val: dict, measured_test: dict) -> tuple[dict, dict]:
    """(``attention_in_lesion.json``, ``card["heatmap"]``) from the two splits' measurements.

    The default is chosen on validation only; every reported figure (the table, the default's share and
    its baseline: the Gaussian with the default's spread on test) comes from the test split.
    """
    default = choose_default(measured_val)
    val_gains = gains_over_own_blob(measured_val)
    blob = measured_test[default]
    rows = [row(name, m["shares"], m["grid"], m["ms_per_image"]) for name, m in measured_test.items()]
    rows.append(row(BASELINE, blob["blob_shares"], "none", blob["blob_ms_per_image"]))
    n_val = len(next(iter(measured_val.values()))["shares"])
    result = {"split": "test", "n_images": len(blob["shares"]), "methods": rows, "baseline": "centred Gaussian blob",
              "default_method": default, "chosen_on": "val", "n_images_val": n_val,
              "val_gain_over_own_blob": {name: {"gain": float(g.mean()), "ci95": bootstrap_ci(g)}
                                         for name, g in val_gains.items()}}
    card = {"default": default, "share_in_lesion": float(blob["shares"].mean()),
            "baseline": float(blob["blob_shares"].mean()), "chosen_on": "val",
            "val_gain": float(val_gains[default].mean()), "n_images_val": n_val}
    return result, card


def subsample(data_dir, split: str, limit: int, split_file=SPLIT_FILE):
    """A deterministic subsample of one split (``limit`` photos; 0: all)."""
    table = split_table(read_ham10000(data_dir), split, split_file)
    return table.sample(n=limit, random_state=0).reset_index(drop=True) if limit and limit < len(table) else table


def evaluate_heatmaps(bundle, data_dir, limit: int = 300, split_file=SPLIT_FILE, progress: bool = True) -> dict:
    """Every method of METHODS on deterministic subsamples of the validation and the test split (``limit``
    photos each; 0: all).

    The default is chosen on validation (``choose_default``); the test subsample is measured the same
    way and gives the figures reported. Writes ``attention_in_lesion.json`` (test table) into the bundle
    and ``card["heatmap"]``: the default, its test share in the lesion and its baseline (the centred
    Gaussian of the default's spread, test), ``chosen_on: "val"`` and the default's validation gain.
    """
    from .bundle import ModelBundle
    from .classifier import load_classifier

    classifier = load_classifier(str(bundle.path))
    explainers = {name: classifier.explainer(name) for name in METHODS}
    measured = {}
    for split in ("val", "test"):
        if progress:
            print(f"{split} split:", flush=True)
        table = subsample(data_dir, split, limit, split_file)
        measured[split] = measure(classifier, table, data_dir, explainers, progress)
    result, card = summarise(measured["val"], measured["test"])
    write_json(bundle.path / "attention_in_lesion.json", result)
    ModelBundle.open(bundle.path).update_card(heatmap=card)  # the card as it is now: other commands write it too
    return {**result, "against_own_blob": {name: {"gain": float(g.mean()), "ci95": bootstrap_ci(g),
                                                  "sigma_px": measured["test"][name]["sigma_px"]}
                                           for name, g in gains_over_own_blob(measured["test"]).items()}}
