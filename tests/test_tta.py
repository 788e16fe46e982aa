"""Test-time augmentation: a bundle whose card names views serves the mean of its probabilities over that
many flips and turns of the photo, the same way in the app, in evaluation (``load_model``) and in export;
its maps and not-a-dermoscopy check read the photo as given."""

import json

import numpy as np
import pytest
from synthetic import lesion_image

import skin_core as sc
from skin_core.bundle import WEIGHTS_DIR, ModelBundle
from skin_core.classifier import softmax
from skin_core.ensemble import make_ensemble
from skin_core.evaluation import apply_temperature, calibrated_probabilities
from skin_core.export import serving_function
from skin_core.images import dihedral, resize_for_model
from skin_core.layers import DihedralViews

ENSEMBLE = "mobilenetv2-192-ensemble"
SINGLE = "mobilenetv2-192"


def with_views(root, name, views, card_changes=None):
    """A copy of a shipped bundle (its files linked) whose card asks for ``views`` test-time views; an
    ensemble's members are linked beside it."""
    source = WEIGHTS_DIR / name
    folder = root / f"{name}-views{views}"
    folder.mkdir()
    for file in source.iterdir():
        if file.name != "card.json":
            (folder / file.name).symlink_to(file)
    card = json.loads((source / "card.json").read_text())
    for member in card.get("members", ()):
        if not (root / member).exists():
            (root / member).symlink_to(WEIGHTS_DIR / member)
    (folder / "card.json").write_text(json.dumps({**card, "test_time_augmentation_views": views, **(card_changes or {})}))
    return ModelBundle.open(folder)


def photo(class_index=4, seed=0):
    return np.asarray(lesion_image(class_index, np.random.default_rng(seed), size=(600, 450)))


@pytest.mark.parametrize("views", [1, 4, 8])
def test_views_in_the_graph_are_the_views_in_numpy(views):
    images = np.random.default_rng(0).random((2, 6, 6, 3)).astype(np.float32)
    graph = [np.asarray(v) for v in DihedralViews(views)(images)]
    expected = dihedral(images, views)
    assert len(graph) == len(expected) == views
    for g, e in zip(graph, expected):
        np.testing.assert_array_equal(g, e)


def test_the_eight_views_are_every_flip_and_quarter_turn():
    images = np.random.default_rng(1).random((1, 5, 5, 3))
    turns = [np.rot90(images, k, axes=(1, 2)) for k in range(4)]
    group = turns + [t[:, :, ::-1] for t in turns]
    views = dihedral(images)
    assert np.array_equal(views[0], images)
    assert sorted(next(i for i, g in enumerate(group) if np.array_equal(v, g)) for v in views) == list(range(8))
    assert [len(dihedral(images, n)) for n in (1, 4)] == [1, 4]


@pytest.fixture(scope="module")
def ensembles(tmp_path_factory):
    """The shipped ensemble's card with 1 and with 4 views (the members loaded once, shared)."""
    root = tmp_path_factory.mktemp("tta")
    return [sc.load_classifier(with_views(root, ENSEMBLE, views).path) for views in (1, 4)]


@pytest.fixture(scope="module")
def tta_ensemble(ensembles):
    return ensembles[1]


def test_ensemble_with_views_serves_the_mean_over_them(ensembles, tta_ensemble):
    image, patient = photo(), sc.Patient.from_fields(63, "male", "back")
    prediction = tta_ensemble.predict(image, patient)
    x, meta = tta_ensemble.model_inputs(image, patient)
    by_hand = np.mean([apply_temperature(softmax(m.forward(v, meta)[1][0]), m.bundle.temperature)
                       for m in tta_ensemble.members for v in dihedral(x, 4)], axis=0)
    np.testing.assert_allclose(prediction.probabilities, apply_temperature(by_hand, tta_ensemble.bundle.temperature),
                               atol=1e-5)
    bundle = tta_ensemble.bundle
    network = calibrated_probabilities(bundle.load_model(), bundle, x.astype(np.float32), meta)
    np.testing.assert_allclose(network[0], prediction.probabilities, atol=1e-5)
    # Maps and the check read the photo as given: the same as the ensemble without views.
    plain = ensembles[0].predict(image, patient)
    np.testing.assert_allclose(prediction.attention_map, plain.attention_map, atol=1e-5)
    assert prediction.not_lesion_reasons == plain.not_lesion_reasons
    assert not np.allclose(prediction.probabilities, plain.probabilities, atol=1e-4), "the views changed nothing"


def test_single_bundle_with_views_serves_what_evaluation_reads(tmp_path):
    bundle = with_views(tmp_path, SINGLE, 8)
    classifier = sc.load_classifier(bundle.path)
    image = photo(1, seed=3)
    prediction = classifier.predict(image)
    x, meta = classifier.model_inputs(image, sc.Patient())
    network = calibrated_probabilities(bundle.load_model(), bundle, x.astype(np.float32), meta)
    np.testing.assert_allclose(network[0], prediction.probabilities, atol=1e-5)
    single = calibrated_probabilities(bundle.load_network(), bundle, np.concatenate(dihedral(x)).astype(np.float32),
                                      np.repeat(meta, 8, axis=0))
    assert not np.allclose(single[0], prediction.probabilities, atol=1e-4)


def test_export_serves_the_mean_over_the_views(tta_ensemble):
    bundle = tta_ensemble.bundle
    _, serve, _ = serving_function(bundle)
    images = np.stack([resize_for_model(photo(c, seed=c), bundle.input_size, bundle.detail_side)
                       for c in (0, 4)]).astype(np.float32)
    metadata = np.stack([sc.Patient.from_fields(54, "female", "back").encode(), sc.Patient().encode()]).astype(np.float32)
    served = serve(images, metadata)
    np.testing.assert_allclose(served["probabilities"].numpy(),
                               calibrated_probabilities(bundle.load_model(), bundle, images, metadata), atol=1e-4)
    assert served["attention_map"].shape[0] == 2


def test_a_card_asking_for_impossible_views_is_refused(tmp_path):
    with pytest.raises(sc.BundleError, match="test_time_augmentation_views"):
        with_views(tmp_path, SINGLE, 9)


def test_make_ensemble_writes_the_views_and_fits_the_temperature_on_their_mean(synthetic_data, tmp_path):
    for member in json.loads((WEIGHTS_DIR / ENSEMBLE / "card.json").read_text())["members"]:
        (tmp_path / member).symlink_to(WEIGHTS_DIR / member)
    members = [tmp_path / m for m in json.loads((WEIGHTS_DIR / ENSEMBLE / "card.json").read_text())["members"]]
    bundle = make_ensemble(members, tmp_path / "ens", synthetic_data, synthetic_data / "split.csv", views=4)
    assert bundle.views == 4 and "4 flips and turns" in bundle.card["combination"]
    assert bundle.card["calibration"]["fitted_on"] == "val" and bundle.temperature > 0


def test_tta_command_measures_the_network_plain_and_over_four_and_eight_views(synthetic_data, tmp_path):
    from sklearn.metrics import balanced_accuracy_score

    from skin_core.evaluation import _split_arrays, measure_tta

    bundle = with_views(tmp_path, SINGLE, 4)  # the card's own views do not count as "plain"
    split_file = synthetic_data / "split.csv"
    shipped = (WEIGHTS_DIR / SINGLE / "tta_val.json").read_text()
    result = measure_tta(bundle, synthetic_data, "val", split_file)
    _, images, metadata, y = _split_arrays(bundle, synthetic_data, "val", split_file)
    network = bundle.load_network()
    views = [network.predict([np.ascontiguousarray(v), metadata], verbose=0) for v in dihedral(images)]
    for count, suffix in ((1, ""), (4, "_tta4"), (8, "_tta8")):
        expected = balanced_accuracy_score(y, np.mean(views[:count], axis=0).argmax(1))
        assert result[f"balanced_accuracy{suffix}"] == pytest.approx(expected)
    assert json.loads((bundle.path / "tta_val.json").read_text()) == result
    assert (WEIGHTS_DIR / SINGLE / "tta_val.json").read_text() == shipped, "wrote through the link"
