"""An ensemble bundle is served, evaluated and exported as one model: the mean of its members' calibrated
probabilities under the ensemble's own temperature; its maps are its members' means."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from synthetic import lesion_image
from test_export import SERVE

import skin_core as sc
from skin_core.bundle import ModelBundle
from skin_core.cli import main
from skin_core.ensemble import make_ensemble
from skin_core.evaluation import apply_temperature, calibrated_probabilities
from skin_core.classifier import softmax
from skin_core.images import dihedral, resize_for_model

ENSEMBLE = "mobilenetv2-lite0-192-ensemble"  # the served one


@pytest.fixture(scope="module")
def ensemble():
    return sc.load_classifier(ENSEMBLE)


def photo(class_index: int = 4, seed: int = 0) -> np.ndarray:
    return np.asarray(lesion_image(class_index, np.random.default_rng(seed), size=(600, 450)))


def test_served_probabilities_are_the_members_calibrated_mean(ensemble):
    assert isinstance(ensemble, sc.EnsembleClassifier) and len(ensemble.members) >= 2
    image, patient = photo(), sc.Patient.from_fields(63, "male", "back")
    prediction = ensemble.predict(image, patient)
    x, meta = ensemble.model_inputs(image, patient)
    calibrated = [apply_temperature(softmax(member.forward(view, meta)[1][0]), member.bundle.temperature)
                  for member in ensemble.members for view in dihedral(x, ensemble.bundle.views)]  # the card's views
    expected = apply_temperature(np.mean(calibrated, axis=0), ensemble.bundle.temperature)
    np.testing.assert_allclose(prediction.probabilities, expected, atol=1e-6)
    members = [member.predict(image, patient) for member in ensemble.members]
    assert prediction.not_lesion_reasons == members[0].not_lesion_reasons, "the first member's check"
    assert prediction.attention_map.min() == 0 and prediction.attention_map.max() == pytest.approx(1)
    assert prediction.model_name == ENSEMBLE and prediction.referral == ensemble.referral
    # Evaluation, referral and external scores read the ensemble through one network: the same numbers.
    network = calibrated_probabilities(ensemble.bundle.load_model(), ensemble.bundle, x.astype(np.float32), meta)
    np.testing.assert_allclose(network[0], prediction.probabilities, atol=1e-5)


def test_members_are_shared_with_the_app_cache(ensemble):
    assert ensemble.members[0] is sc.load_classifier(ensemble.bundle.members[0].path)


def test_heatmap_is_the_members_mean_for_the_ensembles_class(ensemble):
    image = photo(1, seed=2)
    heatmap = ensemble.explainer("Grad-CAM")(image, None, "mel")
    mean = np.mean([m.explainer("Grad-CAM")(image, None, "mel") for m in ensemble.members], axis=0)
    assert heatmap.shape == image.shape[:2]
    np.testing.assert_allclose(heatmap, (mean - mean.min()) / np.ptp(mean), atol=1e-6)
    top = ensemble.predict(image).top
    np.testing.assert_allclose(ensemble.explainer("Grad-CAM")(image), ensemble.explainer("Grad-CAM")(image, None, top))
    assert ensemble.explainer("Grad-CAM").grid == ensemble.members[0].explainer("Grad-CAM").grid == "6x6"


def _card_only_bundle(root, name, **card):
    folder = root / name
    folder.mkdir()
    (folder / "model.keras").write_bytes(b"")
    (folder / "card.json").write_text(json.dumps({"architecture": "MobileNetV2", "classes": list(sc.CLASSES),
                                                  "input_size": 192, "detail_side": 150, **card}))
    return folder


def test_an_ensemble_whose_member_is_gone_is_refused(tmp_path):
    folder = tmp_path / "ens"
    folder.mkdir()
    (folder / "card.json").write_text(json.dumps({"architecture": "Ensemble", "classes": list(sc.CLASSES),
                                                  "input_size": 192, "members": ["gone"]}))
    with pytest.raises(sc.BundleError, match="member"):
        ModelBundle.open(folder)


def test_make_ensemble_refuses_members_it_cannot_feed_as_one(tmp_path):
    a = _card_only_bundle(tmp_path, "a")
    b = _card_only_bundle(tmp_path, "b", input_size=160)
    (tmp_path / "elsewhere").mkdir()
    c = _card_only_bundle(tmp_path / "elsewhere", "c")
    with pytest.raises(sc.BundleError, match="at least two"):
        make_ensemble([a], tmp_path / "e", "unused")
    with pytest.raises(sc.BundleError, match="input size"):
        make_ensemble([a, b], tmp_path / "e", "unused")
    with pytest.raises(sc.BundleError, match="beside"):
        make_ensemble([a, c], tmp_path / "e", "unused")
    assert not (tmp_path / "e").exists()


def test_ensemble_export_serves_what_the_app_serves(ensemble, tmp_path):
    bundle = ensemble.bundle
    assert main(["export", str(bundle.path), "--out", str(tmp_path / "skin")]) == 0
    images = np.stack([resize_for_model(photo(c, seed=c), bundle.input_size, bundle.detail_side)
                       for c in (0, 4)]).astype(np.float32)
    metadata = np.stack([sc.Patient.from_fields(54, "female", "back").encode(), sc.Patient().encode()]).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", image=images, metadata=metadata)
    subprocess.run([sys.executable, "-c", SERVE, str(tmp_path / "skin" / "1"), str(tmp_path / "inputs.npz"),
                    str(tmp_path / "out.npz")], cwd=tmp_path, check=True, timeout=900)
    served = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(served["probabilities"], calibrated_probabilities(bundle.load_model(), bundle, images, metadata),
                               atol=1e-4)
    maps = [keras.Model(m.model.inputs, m.model.get_layer(m.bundle.card["layers"]["attention"]).output[1])
            .predict([images, metadata], verbose=0) for m in ensemble.members]
    np.testing.assert_allclose(served["attention_map"], np.mean(maps, axis=0), atol=1e-4)


def test_compare_scores_each_bundle_and_their_mean_under_every_shift(synthetic_data):
    from skin_core import data
    from skin_core.evaluation import _split_rows, compare_on_validation, decoded_images, prepared
    from skin_core.shifts import SHIFTS

    bundles = [b for b in sc.load_classifier(ENSEMBLE).bundle.members]
    split_file = synthetic_data / "split.csv"
    result = compare_on_validation(bundles, synthetic_data, split_file)
    names = [r["candidate"] for r in result["candidates"]]
    assert names == [b.name for b in bundles] + ["mean of " + ", ".join(b.name for b in bundles)]
    rows = _split_rows(synthetic_data, "val", split_file)
    y, photos = data.labels(rows), decoded_images(rows["path"])
    unknown = np.repeat(sc.Patient().encode()[None], len(y), axis=0)
    mean = np.mean([calibrated_probabilities(b.load_model(), b, prepared(b, photos), unknown) for b in bundles], axis=0)
    recall = [(mean[y == c].argmax(1) == c).mean() for c in np.unique(y)]
    ensemble_row = result["candidates"][-1]
    assert ensemble_row["balanced_accuracy_clean"] == pytest.approx(np.mean(recall))
    for row in result["candidates"]:
        assert list(row["per_shift"]) == [s.name for s in SHIFTS]
        assert row["per_shift"]["clean"] == row["balanced_accuracy_clean"]
        assert row["balanced_accuracy_worst"] == min(list(row["per_shift"].values())[1:])
        assert 0 <= row["referral_specificity_clean"] <= 1


def eight_view_balanced_accuracy(bundle, network, data_dir, split_file) -> float:
    """Balanced accuracy on the val split of `network`'s calibrated probabilities averaged over the 8 dihedral
    views, metadata unknown: what compare --tta should report."""
    from skin_core import data
    from skin_core.evaluation import _split_rows, decoded_images, prepared

    rows = _split_rows(data_dir, "val", split_file)
    y, images = data.labels(rows), prepared(bundle, decoded_images(rows["path"]))
    unknown = np.repeat(sc.Patient().encode()[None], len(y), axis=0)
    mean = np.mean([calibrated_probabilities(network, bundle, np.ascontiguousarray(v), unknown)
                    for v in dihedral(images)], axis=0)
    return float(np.mean([(mean[y == c].argmax(1) == c).mean() for c in np.unique(y)]))


def test_compare_with_tta_averages_the_eight_flips_and_turns(synthetic_data):
    from skin_core.evaluation import compare_on_validation

    bundle = sc.load_classifier(ENSEMBLE).bundle.members[0]
    split_file = synthetic_data / "split.csv"
    row, = compare_on_validation([bundle], synthetic_data, split_file, tta=True)["candidates"]
    assert row["candidate"] == f"{bundle.name} + TTA"
    assert row["balanced_accuracy_clean"] == pytest.approx(
        eight_view_balanced_accuracy(bundle, bundle.load_model(), synthetic_data, split_file))


def test_compare_with_tta_augments_the_bare_network_of_a_bundle_that_serves_views(synthetic_data, monkeypatch):
    """A bundle whose card already averages views is augmented once (its bare network over the 8 views), not
    its served model again, which would run 8 x 4 passes."""
    from skin_core.evaluation import compare_on_validation

    bundle = sc.load_classifier(ENSEMBLE).bundle
    assert bundle.views > 1, "the served ensemble is expected to average views"
    monkeypatch.setattr(ModelBundle, "load_model", lambda self: pytest.fail("compare --tta used the served model"))
    split_file = synthetic_data / "split.csv"
    row, = compare_on_validation([bundle], synthetic_data, split_file, tta=True)["candidates"]
    assert row["balanced_accuracy_clean"] == pytest.approx(
        eight_view_balanced_accuracy(bundle, bundle.load_network(), synthetic_data, split_file))
