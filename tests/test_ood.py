"""The 'not a dermoscopy photo' check: the Mahalanobis arithmetic, bundles with and without the feature
model, the import graph, and what the shipped default bundle says about real and non-lesion pictures."""

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import HAM10000, ROOT, single_network

from skin_core import ood

PACKAGE = ROOT / "skin_core"


# --- arithmetic -------------------------------------------------------------------------------------

def _correlated(n, d, seed, shape_seed=0):
    """n draws from one correlated Gaussian (its shape fixed by ``shape_seed``), noise from ``seed``."""
    shape = np.random.default_rng(shape_seed)
    mixing, offset = shape.normal(size=(d, d)) * np.linspace(0.2, 3, d), shape.normal(0, 5, d)
    return np.random.default_rng(seed).normal(size=(n, d)) @ mixing + offset


def test_mahalanobis_matches_a_numpy_reference():
    train, queries = _correlated(60, 6, 0), _correlated(9, 6, 1, shape_seed=1)
    model = ood.FeatureModel.fit(train)
    assert 0 < model.shrinkage < 1  # few samples: Ledoit-Wolf does shrink
    # Ledoit-Wolf's covariance written out: (1 - s) S + s (trace(S) / d) I, S the biased sample covariance.
    mean = train.mean(axis=0)
    sample = (train - mean).T @ (train - mean) / len(train)
    shrunk = (1 - model.shrinkage) * sample + model.shrinkage * np.trace(sample) / 6 * np.eye(6)
    reference = np.array([np.sqrt((q - mean) @ np.linalg.solve(shrunk, q - mean)) for q in queries])
    np.testing.assert_allclose(model.mean, mean)
    np.testing.assert_allclose(model.distance(queries), reference, rtol=1e-8)
    np.testing.assert_allclose(ood.mahalanobis(queries[0], mean, np.linalg.inv(shrunk)), reference[:1], rtol=1e-8)


def test_distance_grows_off_the_training_cloud():
    train = _correlated(2000, 4, 2)
    model = ood.FeatureModel.fit(train)
    inside = model.distance(_correlated(200, 4, 3))
    outside = model.distance(_correlated(200, 4, 3) + 3 * train.std(axis=0))
    assert np.median(outside) > 2 * np.median(inside)
    assert abs(np.median(inside) - 1.83) < 0.25  # chi with 4 degrees of freedom: median 1.83


def test_fit_puts_the_thresholds_at_the_percentiles():
    rng = np.random.default_rng(4)
    scores = {"skin_fraction": rng.random(1000), "detail": rng.normal(30, 5, 1000), "energy": rng.normal(5, 1, 1000),
              "feature_distance": rng.gamma(5, 2, 1000)}
    model = ood.FeatureModel(np.zeros(2), np.eye(2))
    check = ood.fit(scores, 1.0, 99.0, model, ("layer_x",))
    flags = check.check_flags(scores)
    for name in ("min_skin_fraction", "min_detail", "max_detail", "min_energy", "max_feature_distance"):
        assert 0.005 <= flags[name].mean() <= 0.015, name
    assert check.feature_layers == ("layer_x",) and check.thresholds()["feature_layers"] == ["layer_x"]


# --- bundles with and without the feature model -------------------------------------------------------

def _card(**extra):
    return {"ood": {"min_skin_fraction": 0.2, "min_detail": 1.0, "max_detail": 60.0, "min_energy": 2.0, **extra}}


def test_a_bundle_without_the_npz_keeps_only_the_image_checks(tmp_path):
    card = _card(max_feature_distance=3.0, feature_layers=["block_x"])
    check = ood.LesionCheck.from_card(card, tmp_path)
    assert check is not None and not check.uses_features
    assert ood.LesionCheck.from_card({}, tmp_path) is None
    ood.FeatureModel(np.zeros(3), np.eye(3)).save(tmp_path / ood.FEATURES_FILE)
    check = ood.LesionCheck.from_card(card, tmp_path)
    assert check.uses_features and check.feature_layers == ("block_x",)
    pale = np.full((64, 64, 3), (190, 140, 120), np.uint8) + np.random.default_rng(0).integers(0, 60, (64, 64, 3)).astype(np.uint8)
    logits = np.array([5.0, 0, 0, 0, 0, 0, 0])
    assert check.reasons(pale, logits, np.zeros(3)) == []
    assert check.reasons(pale, logits, np.full(3, 4.0)) == [ood.REASONS["max_feature_distance"]]
    assert check.reasons(pale, logits, None) == []  # no features handed over: the feature check is skipped


def test_a_copied_bundle_without_the_npz_still_serves(tmp_path):
    import skin_core as sc

    source = single_network(sc.load_classifier()).bundle  # the bundle whose check the app runs
    if not (source.path / ood.FEATURES_FILE).is_file():
        pytest.fail(f"{source.name} has no {ood.FEATURES_FILE} (run fit-ood)")
    copy = tmp_path / source.name
    shutil.copytree(source.path, copy, ignore=shutil.ignore_patterns(ood.FEATURES_FILE))
    classifier = sc.Classifier(sc.ModelBundle.open(copy))
    assert classifier.lesion_check is not None and not classifier.lesion_check.uses_features
    from skimage import data

    prediction = classifier.predict(data.chelsea())
    assert ood.REASONS["max_feature_distance"] not in prediction.not_lesion_reasons


# --- import graph -------------------------------------------------------------------------------------

def _imports(module: str) -> set[str]:
    """skin_core modules ``module`` imports anywhere in its file (top level or inside functions)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("skin_core."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("skin_core."))
    return {m for m in found if (PACKAGE / f"{m}.py").is_file()}


def test_ood_reaches_neither_the_classifier_nor_its_fitting_code():
    reached, todo = set(), ["ood"]
    while todo:
        for module in _imports(todo.pop()) - reached:
            reached.add(module)
            todo.append(module)
    assert "classifier" not in reached and "ood_fit" not in reached and "ood" not in reached, reached
    assert "ood" in _imports("classifier") and {"classifier", "ood"} <= _imports("ood_fit")


def test_importing_ood_alone_loads_no_classifier():
    # The package's __init__ imports the classifier for the app, so load ood.py under a bare package.
    code = (f"import sys, types; pkg = types.ModuleType('skin_core'); pkg.__path__ = [{str(PACKAGE)!r}]; "
            "sys.modules['skin_core'] = pkg; import skin_core.ood; "
            "print(sorted(m for m in sys.modules if m.startswith('skin_core')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(eval(out))
    assert "skin_core.ood" in loaded and "skin_core.classifier" not in loaded and "skin_core.ood_fit" not in loaded


# --- the shipped default bundle -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def classifier():
    import skin_core as sc

    classifier = sc.load_classifier()
    if classifier.lesion_check is None or not classifier.lesion_check.uses_features:
        pytest.fail(f"{classifier.name} has no fitted feature check (run python -m skin_core fit-ood)")
    return classifier


@pytest.mark.parametrize("name", ["skimage:chelsea", "skimage:motorcycle_left.png", "skimage:retina", "noise:uniform"])
def test_the_default_bundle_warns_on_pictures_that_are_not_lesions(classifier, name):
    picture = ood.non_dermoscopy_images(derived=False)[name]
    reasons = classifier.predict(picture).not_lesion_reasons
    assert reasons, f"{name} got a diagnosis without a warning"


def test_the_cat_is_unlike_the_training_lesions(classifier):
    from skimage import data

    assert ood.REASONS["max_feature_distance"] in classifier.predict(data.chelsea()).not_lesion_reasons


def test_served_reasons_agree_with_the_batch_flags(classifier):
    from skin_core.images import resize_for_model
    from skin_core.patient import UNKNOWN_PATIENT

    pictures = ood.non_dermoscopy_images(derived=False)
    names = ["skimage:chelsea", "skimage:astronaut", "plain:skin", "document:0", "noise:skin_coloured", "shapes:0"]
    size, side = classifier.input_size, classifier.bundle.detail_side
    batch = np.stack([resize_for_model(pictures[n], size, side).round().astype(np.uint8) for n in names])
    network = single_network(classifier)
    _, logits, pooled = network.forward_with_features(batch, np.repeat(UNKNOWN_PATIENT.encode()[None], len(names), 0))
    check = network.lesion_check
    flags = check.check_flags(check.scores(batch, logits, pooled))
    for i, name in enumerate(names):
        served = classifier.predict(pictures[name]).not_lesion_reasons
        assert set(served) == {ood.REASONS[k] for k, f in flags.items() if f[i]}, name


def test_the_card_and_report_describe_the_fitted_check(classifier):
    bundle = single_network(classifier).bundle
    card = bundle.card["ood"]
    report = json.loads((bundle.path / "ood_report.json").read_text())
    assert card["max_feature_distance"] == report["thresholds"]["max_feature_distance"]
    assert card["feature_layers"] == [report["feature_layer"]]
    assert report["false_warning_rate_val_lesions"] <= report["val_budget"]
    assert report["warning_rate_non_lesions"] >= 0.98 and report["false_warning_rate_test_lesions"] <= 0.03


@pytest.mark.skipif(not HAM10000.is_dir(), reason="HAM10000 not available")
def test_real_test_lesions_mostly_get_no_warning(classifier):
    import pandas as pd

    split = pd.read_csv(PACKAGE / "splits" / "ham10000_lesion_split.csv")
    ids = split[split["split"] == "test"]["image_id"].iloc[::30][:50]
    warned = [i for i in ids if classifier.predict(HAM10000 / "images" / f"{i}.jpg").not_lesion_reasons]
    assert len(warned) <= 3, warned


def test_drawn_blob_lesions_are_not_taken_for_dermoscopy_photos(classifier):
    # tests/synthetic.py draws a flat skin-coloured card with one smooth coloured ellipse: a cartoon, not a
    # photo. The image checks pass it (skin colour, some detail); the feature check is what flags it.
    from synthetic import lesion_image

    rng = np.random.default_rng(0)
    cartoons = [np.asarray(lesion_image(c, rng)) for c in range(7) for _ in range(2)]
    reasons = [classifier.predict(im).not_lesion_reasons for im in cartoons]
    assert sum(bool(r) for r in reasons) >= 12, reasons
    assert sum(ood.REASONS["max_feature_distance"] in r for r in reasons) >= 12
