"""Fitting the 'not a dermoscopy photo' check (``skin_core.ood``) to a bundle, and measuring it.

- The feature models (mean and Ledoit-Wolf shrunk precision of each candidate layer's pooled output)
  are fitted on the TRAINING split's lesions.
- Every threshold is a percentile of the VALIDATION split's lesions: each image check at
  ``image_percentile`` (detail: both tails), the feature distance at the strictest percentile that
  keeps the combined check's false warnings on validation lesions within ``budget``.
- Which layer the feature check reads, and the image percentile, are chosen on the *tuning* non-lesion
  images (drawn pictures, scikit-learn's and matplotlib's; ``ood.is_tuning_image``): the setting whose
  combined check warns on most of them; ties go to the one whose feature check alone warns on most,
  then to the larger median distance / threshold. scikit-image's photos are never used for a choice,
  only measured.
- The test split is measured once, with everything already fixed.

This module imports both the Classifier and the check; neither imports it, so the graph is acyclic.
"""

from __future__ import annotations

import numpy as np

from . import data
from .bundle import ModelBundle, write_json
from .classifier import Classifier
from .errors import BundleError
from .images import resize_for_model
from .ood import (FEATURES_FILE, IMAGE_CHECKS, REASONS, FeatureModel, LesionCheck, candidate_feature_layers, detail,
                  energy, fit, is_derived, is_tuning_image, non_dermoscopy_images, skin_fraction)
from .patient import UNKNOWN_PATIENT

IMAGE_PERCENTILES = (0.1, 0.25, 0.5)  # tried for the image checks (detail: also 100 minus it)
VAL_BUDGET = 0.02  # the combined check may flag at most this share of validation lesions
FEATURE_PERCENTILES = np.round(np.arange(99.9, 94.95, -0.1), 1)  # tried from the most lenient down
BATCH = 64


def network_outputs(classifier: Classifier, images: np.ndarray, metadata: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits (n, 7) and pooled features (n, d) of uint8 model-size images, in batches."""
    logits, pooled = [], []
    for i in range(0, len(images), BATCH):
        _, l, f = classifier.forward_with_features(np.asarray(images[i:i + BATCH]), metadata[i:i + BATCH])
        logits.append(l)
        pooled.append(f)
    return np.concatenate(logits), np.concatenate(pooled)


def _unknown(n: int) -> np.ndarray:
    return np.repeat(UNKNOWN_PATIENT.encode()[None], n, axis=0)


def _split(pooled: np.ndarray, widths: dict[str, int]) -> dict[str, np.ndarray]:
    """The concatenated pooled features cut back into one block per layer."""
    edges = np.cumsum([0, *widths.values()])
    return {layer: pooled[:, a:b] for layer, a, b in zip(widths, edges[:-1], edges[1:])}


def _image_scores(images, logits) -> dict[str, np.ndarray]:
    return {"skin_fraction": np.array([skin_fraction(im) for im in images]),
            "detail": np.array([detail(im) for im in images]),
            "energy": np.array([energy(l) for l in logits])}


def _rates(check: LesionCheck, scores: dict, mask=None) -> dict:
    mask = slice(None) if mask is None else mask
    flags = check.check_flags(scores)
    return {"any": float(check.flags(scores)[mask].mean()), **{name: float(f[mask].mean()) for name, f in flags.items()}}


def choose_feature_percentile(check_at, val_scores: dict, budget: float = VAL_BUDGET) -> float:
    """The strictest feature percentile whose combined check flags at most ``budget`` of val lesions."""
    chosen = float(FEATURE_PERCENTILES[0])
    for q in FEATURE_PERCENTILES:
        if check_at(float(q)).flags(val_scores).mean() > budget:
            break
        chosen = float(q)
    return chosen


def fit_lesion_check(bundle: ModelBundle, data_dir, split_file=None, budget: float = VAL_BUDGET,
                     image_percentiles=IMAGE_PERCENTILES, progress=print) -> dict:
    """Fit the check to ``bundle``; write ``ood_features.npz``, ``ood_report.json`` and the card's ``ood``."""
    if bundle.is_ensemble:
        raise BundleError(f"{bundle.path} is an ensemble: it runs its first member's check; fit that member instead")
    split_file = split_file or data.SPLIT_FILE
    model = bundle.load_network()
    candidates = candidate_feature_layers(model, bundle.card["layers"].get("gradcam", "features"))
    widths = {layer: int(model.get_layer(layer).output.shape[-1]) for layer in candidates}
    del model
    classifier = Classifier(bundle, feature_layers=candidates)
    size, side = bundle.input_size, bundle.detail_side
    table = data.read_ham10000(data_dir)
    rows = {split: data.split_table(table, split, split_file) for split in ("train", "val", "test")}

    progress(f"train lesions: {len(rows['train'])} images -> pooled outputs of {', '.join(candidates)}")
    train_images = data.load_images(rows["train"]["path"], size, side)
    _, train_pooled = network_outputs(classifier, train_images, _unknown(len(train_images)))
    del train_images
    models = {layer: FeatureModel.fit(block) for layer, block in _split(train_pooled, widths).items()}

    def scored(images, logits, pooled) -> tuple[dict, dict]:
        base = _image_scores(images, logits)
        return base, {layer: models[layer].distance(block) for layer, block in _split(pooled, widths).items()}

    lesions, distances, test_meta_energy = {}, {}, None
    for split in ("val", "test"):
        progress(f"{split} lesions: {len(rows[split])} images")
        images = data.load_images(rows[split]["path"], size, side)
        logits, pooled = network_outputs(classifier, images, _unknown(len(images)))
        lesions[split], distances[split] = scored(images, logits, pooled)
        if split == "test":
            meta_logits, _ = network_outputs(classifier, images, data.encode_metadata(rows[split]))
            test_meta_energy = np.array([energy(l) for l in meta_logits])

    progress("non-lesion images")
    others = non_dermoscopy_images()
    names = list(others)
    resized = np.stack([resize_for_model(im, size, side).round().astype(np.uint8) for im in others.values()])
    logits, pooled = network_outputs(classifier, resized, _unknown(len(resized)))
    other_base, other_distances = scored(resized, logits, pooled)
    tuning = np.array([is_tuning_image(n) for n in names])
    derived = np.array([is_derived(n) for n in names])

    def with_layer(base, dist, layer):
        return {**base, "feature_distance": dist[layer]}

    trials = []
    for depth, layer in enumerate(candidates):
        val_scores = with_layer(lesions["val"], distances["val"], layer)
        for p in image_percentiles:
            def check_at(q, p=p, layer=layer, val_scores=val_scores):
                return fit(val_scores, p, q, models[layer], (layer,))

            q = choose_feature_percentile(check_at, val_scores, budget)
            check = check_at(q)
            scores = with_layer(other_base, other_distances, layer)
            caught = check.flags(scores)[tuning].mean()
            alone = check.check_flags(scores)["max_feature_distance"][tuning].mean()
            margin = float(np.median(scores["feature_distance"][tuning]) / check.max_feature_distance)
            trials.append({"layer": layer, "image_percentile": p, "feature_percentile": q,
                           "val_false_warnings": float(check.flags(val_scores).mean()),
                           "tuning_warning_rate": float(caught), "tuning_warning_rate_feature_check_alone": float(alone),
                           "tuning_median_distance_over_threshold": margin,
                           "_rank": (-caught, -alone, -margin, depth, p)})
    best = min(trials, key=lambda t: t["_rank"])
    layer, image_percentile, feature_percentile = best["layer"], best["image_percentile"], best["feature_percentile"]
    check = fit(with_layer(lesions["val"], distances["val"], layer), image_percentile, feature_percentile,
                models[layer], (layer,))
    no_features = LesionCheck(*(getattr(check, f) for f in IMAGE_CHECKS))

    val_scores = with_layer(lesions["val"], distances["val"], layer)
    test_scores = with_layer(lesions["test"], distances["test"], layer)
    other_scores = with_layer(other_base, other_distances, layer)
    other_any = check.flags(other_scores)
    other_flags = check.check_flags(other_scores)
    feature = models[layer]
    thresholds = {
        **check.thresholds(),
        "features_file": FEATURES_FILE,
        "feature_dim": int(feature.mean.shape[0]),
        "fitted_on": (f"feature mean and Ledoit-Wolf covariance (shrinkage {feature.shrinkage:.4f}) of the pooled "
                      f"{layer} output: the train split's {len(rows['train'])} lesions; thresholds: the val split's "
                      f"{len(rows['val'])} lesions, image checks at their {image_percentile} percentile (detail: also "
                      f"{100 - image_percentile}), feature distance at their {feature_percentile} percentile, the "
                      f"strictest keeping the combined false warnings on val at most {budget:.1%}; layer and image "
                      f"percentile chosen on the tuning non-lesion images (not scikit-image's); metadata unknown"),
    }
    for t in trials:
        t.pop("_rank")
    report = {
        "thresholds": thresholds,
        "feature_layer": layer,
        "image_percentile": image_percentile,
        "feature_percentile": feature_percentile,
        "val_budget": budget,
        "false_warning_rate_val_lesions": float(check.flags(val_scores).mean()),
        "false_warning_rate_test_lesions": float(check.flags(test_scores).mean()),
        "false_warning_rate_test_lesions_with_metadata": float(check.flags({**test_scores, "energy": test_meta_energy}).mean()),
        "warning_rate_non_lesions": float(other_any.mean()),
        "non_lesion_images": len(names),
        "non_lesion_images_derived": int(derived.sum()),
        "non_lesion_images_tuning": int(tuning.sum()),
        "warning_rate_non_lesions_held_out": float(other_any[~tuning].mean()),
        "warning_rate_non_lesions_tuning": float(other_any[tuning].mean()),
        "warning_rate_non_lesions_original": float(other_any[~derived].mean()),
        "warning_rate_non_lesions_derived": float(other_any[derived].mean()),
        "warning_rate_non_lesions_without_feature_check": float(no_features.flags(other_scores).mean()),
        "per_check": {
            "val_lesions": _rates(check, val_scores),
            "test_lesions": _rates(check, test_scores),
            "non_lesions": _rates(check, other_scores),
            "non_lesions_held_out": _rates(check, other_scores, ~tuning),
        },
        "non_lesions_missed": [n for n, hit in zip(names, other_any) if not hit],
        "non_lesions_caught_only_by": {name: [n for i, n in enumerate(names)
                                              if other_flags[name][i] and sum(f[i] for f in other_flags.values()) == 1]
                                       for name in other_flags},
        "settings_tried": trials,
        "reasons": REASONS,
        "lesions": {split: len(rows[split]) for split in rows},
    }
    feature.save(bundle.path / FEATURES_FILE)
    bundle.update_card(ood=thresholds)
    write_json(bundle.path / "ood_report.json", report)
    return report
