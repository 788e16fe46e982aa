"""The shipped bundles: they load, agree with their cards, and predict valid probabilities."""

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from image_cases import encode
from PIL import Image
from synthetic import lesion_image

import skin_core as sc
from skin_core.classifier import default_bundle
from skin_core.explain import METHODS as HEATMAP_METHODS

BUNDLES = [b for b in sc.list_bundles() if not b.is_ensemble]  # ensembles: tests/test_ensemble.py


def test_bundles_are_shipped():
    assert BUNDLES, "weights/ must hold at least one model bundle"


@pytest.fixture(scope="module", params=[b.name for b in BUNDLES])
def classifier(request):
    return sc.load_classifier(request.param)


def photos(n=3):
    rng = np.random.default_rng(7)
    return [np.asarray(lesion_image(i % 7, rng, size=(300, 225))) for i in range(n)]


def test_card_matches_model(classifier):
    card = classifier.bundle.card
    assert classifier.model.inputs[0].shape[1:] == (card["input_size"], card["input_size"], 3)
    assert classifier.model.outputs[0].shape[-1] == len(card["classes"]) == 7
    assert card["classes"] == list(sc.CLASSES)
    assert card["parameters"] == classifier.model.count_params()
    assert classifier.bundle.model_file.stat().st_size < 25e6
    for split in ("val", "test"):
        metrics = classifier.bundle.metrics(split)
        assert metrics and {"with_metadata", "without_metadata"} <= set(metrics), f"metrics_{split}.json"


def test_predictions_are_probability_vectors(classifier):
    patients = [sc.Patient(), sc.Patient.from_fields(70, "male", "back"), sc.Patient.from_fields(30, "f", "face")]
    for image, patient in zip(photos(), patients):
        prediction = classifier.predict(image, patient)
        p = prediction.probabilities
        assert p.shape == (7,) and np.all(p >= 0) and abs(p.sum() - 1) < 1e-6
        assert prediction.attention_map.min() >= 0 and prediction.attention_map.max() <= 1
        assert prediction.ranked[0][1] == p.max()
        assert 0 <= prediction.malignant_probability <= 1


def test_temperature_is_applied(classifier):
    """The served probabilities are the raw network's, softened by the card's temperature."""
    from skin_core.evaluation import apply_temperature

    image = photos(1)[0]
    x, meta = classifier.model_inputs(image, sc.Patient())
    raw = classifier.model.predict([x, meta], verbose=0)[0].astype(np.float64)
    served = classifier.predict(image).probabilities
    np.testing.assert_allclose(served, apply_temperature(raw, classifier.bundle.temperature), atol=1e-5)


def test_heatmap_maps(classifier):
    image = photos(1)[0]
    for method in HEATMAP_METHODS:
        heatmap = classifier.explainer(method)(image)
        assert heatmap.shape == image.shape[:2] and 0 <= heatmap.min() <= heatmap.max() <= 1
        assert np.isfinite(heatmap).all()


def test_threads_share_one_classifier(classifier):
    images = photos(8)
    sequential = [classifier.predict(im).probabilities for im in images]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda im: classifier.predict(im).probabilities, images))
    for a, b in zip(sequential, parallel):
        np.testing.assert_allclose(a, b, atol=1e-6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=2048), st.builds(
    lambda w, h, mode, seed: encode(Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode), "PNG"),
    st.integers(1, 400), st.integers(1, 400), st.sampled_from(["RGB", "L", "P", "RGBA", "1"]), st.integers(0, 1000))))
def test_predict_gives_a_prediction_or_invalid_image(classifier, data):
    try:
        prediction = classifier.predict(data)
    except sc.InvalidImage:
        return
    assert abs(prediction.probabilities.sum() - 1) < 1e-6


def _fake_bundle(root, name, architecture, val_balanced_accuracy=None, shifted=None):
    folder = root / name
    folder.mkdir()
    (folder / "model.keras").write_bytes(b"")
    (folder / "card.json").write_text(json.dumps({"architecture": architecture, "classes": list(sc.CLASSES),
                                                  "input_size": 192}))
    if val_balanced_accuracy is not None:
        metrics = {"without_metadata": {"balanced_accuracy": val_balanced_accuracy}}
        (folder / "metrics_val.json").write_text(json.dumps(metrics))
    if shifted is not None:
        rows = [{"name": "clean", "balanced_accuracy": val_balanced_accuracy}]
        rows += [{"name": f"shift{i}", "balanced_accuracy": value} for i, value in enumerate(shifted)]
        (folder / "metrics_shift_val.json").write_text(json.dumps({"shifts": rows}))


@pytest.mark.parametrize("gpu, expected", [(True, "InceptionResNetV2"), (False, "MobileNetV3Large")])
def test_device_picks_the_served_model(tmp_path, monkeypatch, gpu, expected):
    for name, architecture in [("a-v2", "MobileNetV2"), ("b-irv2", "InceptionResNetV2"), ("c-v3l", "MobileNetV3Large")]:
        _fake_bundle(tmp_path, name, architecture)
    monkeypatch.setattr(sc.classifier, "gpu_available", lambda: gpu)
    assert default_bundle(tmp_path).architecture == expected


def test_gpu_without_a_gpu_bundle_falls_back_to_the_cpu_model(tmp_path, monkeypatch):
    _fake_bundle(tmp_path, "a-v2", "MobileNetV2")
    _fake_bundle(tmp_path, "c-v3l", "MobileNetV3Large")
    monkeypatch.setattr(sc.classifier, "gpu_available", lambda: True)
    assert default_bundle(tmp_path).architecture == "MobileNetV3Large"


@pytest.mark.parametrize("v2, v3, expected", [(0.70, 0.52, "MobileNetV2"), (0.70, 0.67, "MobileNetV3Large")])
def test_cpu_default_gives_way_only_to_a_clearly_better_model(tmp_path, monkeypatch, v2, v3, expected):
    _fake_bundle(tmp_path, "a-v2", "MobileNetV2", v2)
    _fake_bundle(tmp_path, "c-v3l", "MobileNetV3Large", v3)
    monkeypatch.setattr(sc.classifier, "gpu_available", lambda: False)
    assert default_bundle(tmp_path).architecture == expected


def test_cpu_default_weighs_shifted_validation(tmp_path, monkeypatch):
    """Of two bundles, the one slightly weaker on clean validation but far stronger under the shifts wins."""
    _fake_bundle(tmp_path, "a-plain", "MobileNetV2", 0.68, shifted=[0.55, 0.56, 0.57])
    _fake_bundle(tmp_path, "b-robust", "MobileNetV2", 0.66, shifted=[0.65, 0.65, 0.66])
    _fake_bundle(tmp_path, "c-v3l", "MobileNetV3Large", 0.55)
    monkeypatch.setattr(sc.classifier, "gpu_available", lambda: False)
    assert default_bundle(tmp_path).name == "b-robust"
