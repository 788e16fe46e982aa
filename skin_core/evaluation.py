"""Class-balanced metrics (scikit-learn), calibration error and temperature scaling."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from .images import dihedral
from .referral import SCORES, TARGET_SENSITIVITY, score, sensitivity_specificity, threshold_for_sensitivity
from .vocab import CLASSES, MALIGNANT

ECE_BINS = 15


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): T > 1 softens over-confident outputs; the ranking never changes."""
    logits = np.log(np.clip(probabilities, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=-1, keepdims=True)


def fit_temperature(probabilities: np.ndarray, y: np.ndarray) -> float:
    """The T that minimises the negative log-likelihood on (validation) data."""
    from scipy.optimize import minimize_scalar

    def nll(t):
        return skm.log_loss(y, apply_temperature(probabilities, t), labels=range(len(CLASSES)))

    return float(minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded").x)


def reliability(probabilities: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per equal-width confidence bin: its range, count, mean confidence and accuracy (top label)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = which == b
        rows.append({"bin_low": float(edges[b]), "bin_high": float(edges[b + 1]), "count": int(mask.sum()),
                     "confidence": float(confidence[mask].mean()) if mask.any() else None,
                     "accuracy": float(correct[mask].mean()) if mask.any() else None})
    return rows


def expected_calibration_error(probabilities: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: sum over the reliability bins of |accuracy - confidence| x bin share."""
    return float(sum(r["count"] / len(y) * abs(r["accuracy"] - r["confidence"])
                     for r in reliability(probabilities, y, bins) if r["count"]))


def _macro_auc(y, probabilities):
    return skm.roc_auc_score(y, probabilities, multi_class="ovr", average="macro", labels=range(len(CLASSES)))


def bootstrap_intervals(y, probabilities, n: int = 1000, seed: int = 0) -> dict:
    """95% percentile intervals for balanced accuracy and macro AUC over resampled images."""
    rng = np.random.default_rng(seed)
    predicted = probabilities.argmax(axis=1)
    bacc, auc = [], []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        if len(np.unique(y[idx])) < len(CLASSES):
            continue  # AUC needs every class present
        bacc.append(skm.balanced_accuracy_score(y[idx], predicted[idx]))
        auc.append(_macro_auc(y[idx], probabilities[idx]))
    return {
        "balanced_accuracy_95ci": [float(np.percentile(bacc, 2.5)), float(np.percentile(bacc, 97.5))],
        "macro_auc_95ci": [float(np.percentile(auc, 2.5)), float(np.percentile(auc, 97.5))],
        "bootstrap_samples": len(bacc),
    }


def classification_metrics(y: np.ndarray, probabilities: np.ndarray, bootstrap: int = 1000) -> dict:
    """Everything the metrics files and the metrics page report, from labels and probabilities."""
    labels = list(range(len(CLASSES)))
    predicted = probabilities.argmax(axis=1)
    confusion = skm.confusion_matrix(y, predicted, labels=labels)
    precision, recall, f1, support = skm.precision_recall_fscore_support(y, predicted, labels=labels, zero_division=0)
    negatives = confusion.sum() - confusion.sum(axis=1)
    false_positives = confusion.sum(axis=0) - np.diag(confusion)
    specificity = (negatives - false_positives) / np.maximum(negatives, 1)
    per_class, roc = {}, {}
    for i, name in enumerate(CLASSES):
        binary = (y == i).astype(int)
        has_both = 0 < binary.sum() < len(binary)
        auc = skm.roc_auc_score(binary, probabilities[:, i]) if has_both else None
        per_class[name] = {
            "precision": float(precision[i]), "recall": float(recall[i]), "specificity": float(specificity[i]),
            "f1": float(f1[i]), "support": int(support[i]), "auc": None if auc is None else float(auc),
        }
        if has_both:
            fpr, tpr, _ = skm.roc_curve(binary, probabilities[:, i], drop_intermediate=True)
            roc[name] = {"fpr": np.round(fpr, 4).tolist(), "tpr": np.round(tpr, 4).tolist()}
    malignant = np.isin(y, [CLASSES.index(c) for c in MALIGNANT]).astype(int)
    malignant_score = probabilities[:, [CLASSES.index(c) for c in MALIGNANT]].sum(axis=1)
    result = {
        "n_images": int(len(y)),
        "accuracy": float(skm.accuracy_score(y, predicted)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y, predicted)),
        "macro_f1": float(skm.f1_score(y, predicted, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(skm.f1_score(y, predicted, labels=labels, average="weighted", zero_division=0)),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_specificity": float(specificity.mean()),
        "weighted_precision": float(np.average(precision, weights=support)),
        "weighted_recall": float(np.average(recall, weights=support)),
        "macro_auc": float(_macro_auc(y, probabilities)) if len(np.unique(y)) == len(CLASSES) else None,
        "malignant_vs_benign_auc": float(skm.roc_auc_score(malignant, malignant_score)) if 0 < malignant.sum() < len(y) else None,
        "ece": expected_calibration_error(probabilities, y),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
        "roc_curves": roc,
        "reliability": reliability(probabilities, y),
    }
    if bootstrap and result["macro_auc"] is not None:
        result.update(bootstrap_intervals(y, probabilities, n=bootstrap))
    return result


def _split_rows(data_dir, split: str, split_file=None):
    from . import data

    return data.split_table(data.read_ham10000(data_dir), split, split_file or data.SPLIT_FILE)


def _split_arrays(bundle, data_dir, split: str, split_file=None):
    """The bundle's served model and one split as (images float32, metadata, labels), read as served."""
    return (bundle.load_model(), *_split_inputs(bundle, data_dir, split, split_file))


def _split_inputs(bundle, data_dir, split: str, split_file=None):
    """One split prepared for the bundle: (images float32, metadata, labels)."""
    from . import data

    rows = _split_rows(data_dir, split, split_file)
    images = data.load_images(rows["path"], bundle.input_size, bundle.detail_side).astype(np.float32)
    return images, data.encode_metadata(rows), data.labels(rows)


def _unknown_metadata(n: int) -> np.ndarray:
    from .patient import UNKNOWN_PATIENT

    return np.repeat(UNKNOWN_PATIENT.encode()[None], n, axis=0)


def calibrated_probabilities(model, bundle, images: np.ndarray, metadata: np.ndarray) -> np.ndarray:
    """The network's softmax on prepared images, softened by the bundle's temperature."""
    raw = model.predict({"image": images.astype(np.float32), "metadata": metadata.astype(np.float32)},
                        batch_size=64, verbose=0)
    return apply_temperature(raw, bundle.temperature)


def decoded_images(paths, workers: int = 4) -> list[np.ndarray]:
    """Every photo as decoded (RGB uint8 at its stored size): what a shift is applied to."""
    from concurrent.futures import ThreadPoolExecutor

    from .images import load_image

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(load_image, paths))


def prepared(bundle, photos: list[np.ndarray], shift=None) -> np.ndarray:
    """Photos (optionally shifted) through the served preprocessing: (n, S, S, 3) float32."""
    from .images import resize_for_model

    return np.stack([resize_for_model(shift(photo, i) if shift else photo, bundle.input_size, bundle.detail_side)
                     for i, photo in enumerate(photos)])


def referral_metrics(probabilities: np.ndarray, y: np.ndarray, rule) -> dict | None:
    """Melanoma sensitivity and specificity at the bundle's referral rule (None without a rule)."""
    if rule is None:
        return None
    return {**rule.as_card(), **sensitivity_specificity(rule.score(probabilities), y == CLASSES.index("mel"),
                                                        rule.threshold)}


def melanoma_summary(y: np.ndarray, probabilities: np.ndarray, rule) -> dict:
    """Balanced accuracy over the classes present, melanoma-vs-rest AUC and the referral's operating point.

    ``y`` is -1 for a lesion outside the seven classes (an external set's "other"): it counts as a
    non-melanoma and is left out of balanced accuracy.
    """
    mel = CLASSES.index("mel")
    known = y >= 0
    present = sorted(set(y[known].tolist()))
    positive = y == mel
    referral = referral_metrics(probabilities, y, rule)
    return {
        "n_images": int(len(y)),
        "classes": [CLASSES[c] for c in present],
        "balanced_accuracy": float(skm.balanced_accuracy_score(y[known], probabilities[known].argmax(1))),
        "macro_auc": float(_macro_auc(y, probabilities)) if len(present) == len(CLASSES) and known.all() else None,
        "melanoma_auc": float(skm.roc_auc_score(positive, probabilities[:, mel])) if 0 < positive.sum() < len(y) else None,
        "argmax_melanoma_sensitivity": float((probabilities[positive].argmax(1) == mel).mean()) if positive.any() else None,
        "melanoma_sensitivity": None if referral is None else referral["sensitivity"],
        "melanoma_specificity": None if referral is None else referral["specificity"],
    }


def evaluate_shifts(bundle, data_dir, split: str, split_file=None) -> dict:
    """Every shift of ``shifts.SHIFTS`` on one split, metadata unknown: balanced accuracy, macro AUC and
    melanoma sensitivity / specificity at the referral rule; the worst shift named. Writes
    ``metrics_shift_<split>.json``."""
    from . import data
    from .referral import ReferralRule

    rows = _split_rows(data_dir, split, split_file)
    y = data.labels(rows)
    per_shift = shifted_probabilities(bundle.load_model(), bundle, decoded_images(rows["path"]), _unknown_metadata(len(y)))
    return shift_report(bundle, split, y, per_shift, ReferralRule.from_card(bundle.card))


def shifted_probabilities(model, bundle, photos: list[np.ndarray], metadata: np.ndarray) -> list[np.ndarray]:
    """Calibrated probabilities of the photos under each shift of ``shifts.SHIFTS`` (the first: clean)."""
    from .shifts import SHIFTS

    return [calibrated_probabilities(model, bundle, prepared(bundle, photos, shift), metadata) for shift in SHIFTS]


def shift_report(bundle, split: str, y: np.ndarray, per_shift: list[np.ndarray], rule) -> dict:
    """The shift tests' table from each shift's probabilities (``shifted_probabilities``); writes
    ``metrics_shift_<split>.json``."""
    from .bundle import write_json
    from .shifts import SHIFTS

    results = [{"name": shift.name, "description": shift.description, **melanoma_summary(y, probabilities, rule)}
               for shift, probabilities in zip(SHIFTS, per_shift)]
    clean = results[0]["balanced_accuracy"]
    for row in results:
        row["balanced_accuracy_drop"] = clean - row["balanced_accuracy"]
    worst = max(results[1:], key=lambda r: r["balanced_accuracy_drop"])
    result = {"split": split, "bundle": bundle.name, "metadata": "unknown",
              "referral": None if rule is None else rule.as_card(), "shifts": results, "worst_shift": worst["name"]}
    write_json(bundle.path / f"metrics_shift_{split}.json", result)
    return result


EXTERNAL_SETS = {
    "isic2017_test": ("ISIC 2017 test", "isic2017"),
    "derm7pt": ("Derm7pt", "derm7pt"),
}


def external_rows(key: str, data_root):
    """The rows of an external test set: ISIC 2017's test split, or all of Derm7pt."""
    from pathlib import Path

    from . import data

    folder = Path(data_root) / EXTERNAL_SETS[key][1]
    if key == "isic2017_test":
        table = data.read_isic2017(folder)
        return table[table["split"] == "test"].reset_index(drop=True)
    return data.read_derm7pt(folder)


def external_labels(rows) -> np.ndarray:
    """Class indices, -1 for a diagnosis outside the seven (see ``melanoma_summary``)."""
    return rows["dx"].map(lambda dx: CLASSES.index(dx) if dx in CLASSES else -1).to_numpy(dtype=np.int64)


def evaluate_external(bundle, data_root) -> dict:
    """Melanoma AUC, balanced accuracy over the classes each set has, and the referral's sensitivity and
    specificity on the external test sets under ``data_root`` (metadata unknown: they carry none).
    Writes ``metrics_external.json``."""
    from .bundle import write_json
    from .referral import ReferralRule

    model, rule = bundle.load_model(), ReferralRule.from_card(bundle.card)
    sets = {}
    for key, (name, _) in EXTERNAL_SETS.items():
        rows = external_rows(key, data_root)
        probabilities = calibrated_probabilities(model, bundle, prepared(bundle, decoded_images(rows["path"])),
                                                 _unknown_metadata(len(rows)))
        sets[key] = {"name": name, "counts": rows["dx"].value_counts().to_dict(),
                     **melanoma_summary(external_labels(rows), probabilities, rule)}
    result = {"bundle": bundle.name, "metadata": "unknown", "referral": None if rule is None else rule.as_card(),
              "sets": sets}
    write_json(bundle.path / "metrics_external.json", result)
    return result


def evaluate_bundle(bundle, data_dir, split: str, split_file=None, bootstrap: int = 1000) -> dict:
    """Metrics of a bundle on one split, with the patients' metadata and with every field unknown.

    Probabilities are calibrated with the bundle's temperature (fitted on validation at training
    time); the uncalibrated ECE is reported beside the calibrated one, and the melanoma referral
    rule's sensitivity and specificity beside the argmax metrics.
    """
    from .bundle import write_json
    from .referral import ReferralRule

    model, images, metadata, y = _split_arrays(bundle, data_dir, split, split_file)
    rule = ReferralRule.from_card(bundle.card)
    variants = {"with_metadata": metadata, "without_metadata": _unknown_metadata(len(y))}
    result = {"split": split, "bundle": bundle.name, "architecture": bundle.architecture,
              "temperature": bundle.temperature}
    for variant, metadata in variants.items():
        raw = model.predict({"image": images, "metadata": metadata}, batch_size=64, verbose=0)
        calibrated = apply_temperature(raw, bundle.temperature)
        metrics = classification_metrics(y, calibrated, bootstrap=bootstrap)
        metrics["ece_uncalibrated"] = expected_calibration_error(raw, y)
        metrics["referral"] = referral_metrics(calibrated, y, rule)
        result[variant] = metrics
    write_json(bundle.path / f"metrics_{split}.json", result)
    return result


def choose_referral(bundle, data_dir, isic2017=None, split_file=None,
                    sensitivity: float = TARGET_SENSITIVITY) -> tuple[dict, dict]:
    """Choose the melanoma referral rule on validation data only and store it in the card.

    Conditions: HAM10000 val under every shift (metadata unknown), HAM10000 val with the patients'
    records, and ISIC 2017 val when given. For each score (p(mel), or the malignant sum) the threshold
    is the lowest of the per-condition thresholds that keep ``sensitivity`` in each condition, so the
    rule holds on every validation condition, not only on average; the score with the higher
    specificity on clean HAM10000 val (metadata unknown) is kept. The val shift tests come from the same
    predictions: ``metrics_shift_val.json`` is rewritten at the new rule. Returns the rule's card entry and
    the val shift tests.
    """
    from . import data
    from .referral import ReferralRule
    from .shifts import SHIFTS

    rows = _split_rows(data_dir, "val", split_file)
    y, photos, model = data.labels(rows), decoded_images(rows["path"]), bundle.load_model()
    per_shift = shifted_probabilities(model, bundle, photos, _unknown_metadata(len(y)))
    conditions = {f"ham10000 val, {shift.name}": (p, y) for shift, p in zip(SHIFTS, per_shift)}
    conditions["ham10000 val, with metadata"] = (
        calibrated_probabilities(model, bundle, prepared(bundle, photos), data.encode_metadata(rows)), y)
    if isic2017:
        isic = data.read_isic2017(isic2017)
        isic = isic[isic["split"] == "val"].reset_index(drop=True)
        conditions["isic2017 val"] = (calibrated_probabilities(
            model, bundle, prepared(bundle, decoded_images(isic["path"])), _unknown_metadata(len(isic))), data.labels(isic))
    mel = CLASSES.index("mel")
    candidates = {}
    for kind in SCORES:
        threshold = min(threshold_for_sensitivity(score(p, kind), labels == mel, sensitivity)
                        for p, labels in conditions.values())
        points = {name: sensitivity_specificity(score(p, kind), labels == mel, threshold)
                  for name, (p, labels) in conditions.items()}
        candidates[kind] = {"threshold": threshold, "conditions": points}
    kind = max(candidates, key=lambda k: candidates[k]["conditions"]["ham10000 val, clean"]["specificity"])
    clean = candidates[kind]["conditions"]["ham10000 val, clean"]
    referral = {
        "score": kind, "threshold": candidates[kind]["threshold"], "target_sensitivity": sensitivity,
        "chosen_on": "val",
        "val_sensitivity": clean["sensitivity"], "val_specificity": clean["specificity"],
        "val_conditions": candidates[kind]["conditions"],
        "alternatives": {k: {"threshold": c["threshold"],
                             "val_specificity": c["conditions"]["ham10000 val, clean"]["specificity"]}
                         for k, c in candidates.items()},
    }
    bundle.update_card(referral=referral)
    return referral, shift_report(bundle, "val", y, per_shift, ReferralRule.from_card(bundle.card))


def measure_tta(bundle, data_dir, split: str = "val", split_file=None) -> dict:
    """Balanced accuracy with and without test-time augmentation (4 and 8 views, ``images.dihedral``), and
    what each costs (batched)."""
    import time

    from .bundle import write_json

    images, metadata, y = _split_inputs(bundle, data_dir, split, split_file)
    model = bundle.load_network()  # without the card's own views: plain is one view
    predictions, seconds = [], []
    for view in dihedral(images):
        started = time.perf_counter()
        predictions.append(model.predict({"image": np.ascontiguousarray(view), "metadata": metadata},
                                         batch_size=64, verbose=0))
        seconds.append(time.perf_counter() - started)
    result = {"split": split, "n_images": int(len(y))}
    for views, suffix in ((1, ""), (4, "_tta4"), (8, "_tta8")):
        mean = np.mean(predictions[:views], axis=0)
        result |= {f"balanced_accuracy{suffix}": float(skm.balanced_accuracy_score(y, mean.argmax(1))),
                   f"macro_auc{suffix}": float(_macro_auc(y, mean)),
                   f"ms_per_image{suffix}": 1000 * sum(seconds[:views]) / len(y)}
    write_json(bundle.path / f"tta_{split}.json", result)
    return result


def compare_on_validation(bundles: list, data_dir, split_file=None, tta: bool = False) -> dict:
    """Proxy table for model choices: each bundle alone and the mean of their calibrated probabilities (an
    ensemble), on the validation split clean and under every shift, metadata unknown.

    Per candidate: balanced accuracy clean, mean and worst over the shifts, macro AUC clean, and melanoma
    specificity on clean val at the p(mel) threshold that keeps sensitivity >= TARGET_SENSITIVITY under every
    shift (the referral rule's way of choosing, here on the same data it is read on: for ranking candidates,
    not for reporting). Validation only: test and external sets stay untouched by this choice. ``tta``: each
    bundle's probabilities are the mean over the 8 flips and quarter turns of every photo (``dihedral``)."""
    from . import data
    from .shifts import SHIFTS

    rows = _split_rows(data_dir, "val", split_file)
    y, photos = data.labels(rows), decoded_images(rows["path"])
    unknown = _unknown_metadata(len(y))
    members = {}
    for bundle in bundles:
        model = bundle.load_network() if tta else bundle.load_model()  # not the card's own views twice
        members[bundle.name + (" + TTA" if tta else "")] = [
            np.mean([calibrated_probabilities(model, bundle, np.ascontiguousarray(view), unknown)
                     for view in (dihedral(images) if tta else [images])], axis=0)
            for images in (prepared(bundle, photos, shift) for shift in SHIFTS)]
    candidates = dict(members)
    if len(bundles) > 1:
        candidates["mean of " + ", ".join(members)] = [np.mean(ps, axis=0) for ps in zip(*members.values())]
    mel = CLASSES.index("mel")
    table = []
    for name, per_shift in candidates.items():
        accuracy = [float(skm.balanced_accuracy_score(y, p.argmax(1))) for p in per_shift]
        threshold = min(threshold_for_sensitivity(p[:, mel], y == mel, TARGET_SENSITIVITY) for p in per_shift)
        worst = int(np.argmin(accuracy[1:])) + 1
        table.append({
            "candidate": name, "balanced_accuracy_clean": accuracy[0],
            "balanced_accuracy_shifted_mean": float(np.mean(accuracy[1:])),
            "balanced_accuracy_worst": accuracy[worst], "worst_shift": SHIFTS[worst].name,
            "macro_auc_clean": float(_macro_auc(y, per_shift[0])),
            "melanoma_auc_clean": float(skm.roc_auc_score(y == mel, per_shift[0][:, mel])),
            "referral_threshold": float(threshold),
            "referral_specificity_clean": sensitivity_specificity(per_shift[0][:, mel], y == mel, threshold)["specificity"],
            "per_shift": dict(zip((s.name for s in SHIFTS), accuracy)),
        })
    return {"split": "val", "metadata": "unknown", "test_time_augmentation": tta,
            "target_sensitivity": TARGET_SENSITIVITY, "candidates": table}
