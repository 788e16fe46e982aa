"""The app's pages through streamlit.testing.v1.AppTest, on the shipped bundles."""

import io
import json
import shutil

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest
from synthetic import dermoscopy_like

import skin_core as sc

APP = str(sc.bundle.WEIGHTS_DIR.parent / "app.py")
TIMEOUT = 180


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    dermoscopy_like(3).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def app():
    return AppTest.from_file(APP, default_timeout=TIMEOUT).run()


def texts(at) -> str:
    parts = [e.value for kind in ("markdown", "caption", "error", "warning", "info", "success") for e in getattr(at, kind)]
    return "\n".join(map(str, parts))


def test_upload_gives_probabilities_and_both_overlays(app):
    app.file_uploader[0].set_value(("lesion.jpg", jpeg_bytes(), "image/jpeg")).run()
    app.number_input(key="age").set_value(62)
    app.form_submit_button[0].click().run()
    assert not app.exception, [e.value for e in app.exception]
    result = app.session_state["result"]
    prediction = result["prediction"]
    assert abs(prediction.probabilities.sum() - 1) < 1e-6
    assert result["patient"].age == 62
    bars = app.get("progress")
    assert len(bars) == 7 and all(abs(bar.proto.value - 100 * p) <= 1 for bar, (_, p) in zip(bars, prediction.ranked))
    assert all(sc.CLASS_NAMES[code] in bar.proto.text for bar, (code, _) in zip(bars, prediction.ranked))
    captions = [c for image in app.image for c in image.captions]
    assert any("Soft-attention" in c for c in captions) and any(c.startswith(tuple(sc.HEATMAP_METHODS)) for c in captions)
    assert "Decision support, not a diagnosis" in texts(app)
    assert "analysis took" in texts(app)
    labels = [button.proto.label for button in app.get("download_button")]
    assert "Download case report (PDF)" in labels and len(labels) == 3


def analyse_with_referral(app, monkeypatch, threshold: float):
    from skin_core.referral import ReferralRule

    monkeypatch.setattr(sc.load_classifier(), "referral", ReferralRule("melanoma", threshold))
    app.form_submit_button[0].click().run()
    assert not app.exception, [e.value for e in app.exception]
    return app.session_state["result"]["prediction"]


def test_referral_line_shows_whenever_the_threshold_is_crossed(app, monkeypatch):
    from skin_core.referral import REFERRAL_MESSAGE

    app.file_uploader[0].set_value(("lesion.jpg", jpeg_bytes(), "image/jpeg")).run()
    assert analyse_with_referral(app, monkeypatch, 0.0).refer
    assert any(REFERRAL_MESSAGE in e.value and "≥ referral threshold 0.0%" in e.value for e in app.error)
    assert not analyse_with_referral(app, monkeypatch, 1.01).refer
    assert REFERRAL_MESSAGE not in texts(app)
    assert "is below the referral threshold 101.0%" in texts(app)
    monkeypatch.setattr(sc.load_classifier(), "referral", None)
    app.form_submit_button[0].click().run()
    assert "referral threshold" not in texts(app), "a bundle without a rule says nothing"


def test_grad_cam_plus_plus_is_selectable(app):
    app.file_uploader[0].set_value(("lesion.jpg", jpeg_bytes(), "image/jpeg")).run()
    app.form_submit_button[0].click().run()
    app.radio(key="heatmap_method").set_value("Grad-CAM++").run()
    assert not app.exception
    captions = [c for image in app.image for c in image.captions]
    assert any(c.startswith("Grad-CAM++") for c in captions)


def test_non_image_upload_gives_a_clear_message(app):
    app.file_uploader[0].set_value(("report.jpg", b"%PDF-1.4 this is a pdf", "image/jpeg")).run()
    assert not app.exception
    assert any("not an image" in e.value for e in app.error)
    assert app.form_submit_button[0].disabled
    assert "result" not in app.session_state


def test_metrics_page_renders_a_table_per_bundle(app):
    app.switch_page("pages/model_metrics.py").run()
    assert not app.exception, [e.value for e in app.exception]
    bundles = sc.list_bundles()
    headers = [h.value for h in app.header]
    for bundle in bundles:
        assert any(bundle.name in h for h in headers)
    comparison = app.dataframe[0].value
    assert list(comparison["Bundle"]) == [b.name for b in bundles]


def test_metrics_page_shows_referral_shift_external_and_attention_tables(app, tmp_path, monkeypatch):
    """A copy of a shipped single-network bundle with the four optional files, in the formats their commands write."""
    shipped = next(b for b in sc.list_bundles() if not b.is_ensemble)
    copy = tmp_path / shipped.name
    shutil.copytree(shipped.path, copy, ignore=shutil.ignore_patterns("model.keras"))
    (copy / "model.keras").symlink_to(shipped.model_file)
    card = json.loads((copy / "card.json").read_text())
    card["referral"] = {"score": "melanoma", "threshold": 0.093, "target_sensitivity": 0.95, "chosen_on": "val",
                        "val_sensitivity": 0.951, "val_specificity": 0.612}
    (copy / "card.json").write_text(json.dumps(card))
    referral = {"score": "melanoma", "threshold": 0.093}
    (copy / "metrics_shift_test.json").write_text(json.dumps({
        "split": "test", "bundle": shipped.name, "referral": referral, "worst_shift": "blur",
        "shifts": [{"name": name, "description": f"{name} photos", "balanced_accuracy": ba, "macro_auc": 0.9,
                    "melanoma_sensitivity": 0.9, "melanoma_specificity": 0.6, "balanced_accuracy_drop": 0.72 - ba}
                   for name, ba in [("clean", 0.72), ("blur", 0.51)]]}))
    (copy / "metrics_external.json").write_text(json.dumps({"bundle": shipped.name, "referral": referral, "sets": {
        "ph2": {"name": "PH2", "n_images": 200, "counts": {"mel": 40, "nv": 160}, "melanoma_auc": 0.871,
                "balanced_accuracy": 0.6, "classes": ["mel", "nv"], "melanoma_sensitivity": 0.95,
                "melanoma_specificity": 0.5, "argmax_melanoma_sensitivity": 0.3}}}))
    (copy / "attention_in_lesion.json").write_text(json.dumps({
        "split": "test", "n_images": 300, "baseline": "centred Gaussian blob", "default_method": "Grad-CAM",
        "chosen_on": "val", "n_images_val": 150,
        "methods": [{"name": "Grad-CAM", "share_in_lesion": 0.61, "ci95": [0.58, 0.64], "grid": "6x6",
                     "ms_per_image": 40.0},
                    {"name": "centred Gaussian blob", "share_in_lesion": 0.55, "ci95": [0.52, 0.58], "grid": "-",
                     "ms_per_image": 0.1}]}))
    monkeypatch.setattr(sc, "list_bundles", lambda: [sc.ModelBundle.open(copy)])

    app.switch_page("pages/model_metrics.py").run()
    assert not app.exception, [e.value for e in app.exception]
    subheaders = [h.value for h in app.subheader]
    for title in ["Melanoma referral threshold", "Robustness to image shifts (test split)",
                  "Other clinics' photos (external sets)", "Do the heat-maps fall on the lesion?"]:
        assert title in subheaders
    tables = [frame.value for frame in app.dataframe]
    assert any("Shift" in t and list(t["Shift"]) == ["clean", "blur"] for t in tables)
    assert any("Set" in t and list(t["Set"]) == ["PH2"] and t["Images per diagnosis"][0] == "mel 40, nv 160"
               for t in tables)
    assert any("Method" in t and t["95% interval"][0] == "0.580 to 0.640" for t in tables)
    assert any("Split" in t and t["Melanoma sensitivity"][0] == 0.951
               and t["Specificity (non-melanoma not referred)"].isna()[1] for t in tables), "missing figures stay empty"
    assert "0.093" in texts(app) and "--shifts" in texts(app) and "skin_core heatmaps" in texts(app)
    assert "chosen on 150 validation images" in texts(app)


def test_a_non_dermoscopy_photo_gets_a_visible_warning(app):
    from skin_core.explain import png_bytes
    from skin_core.ood import non_dermoscopy_images

    if sc.load_classifier().lesion_check is None:
        pytest.fail("the default bundle has no fitted 'not a dermoscopy photo' check (run fit-ood)")
    page = png_bytes(non_dermoscopy_images()["document:0"])
    app.file_uploader[0].set_value(("scan.png", page, "image/png")).run()
    app.form_submit_button[0].click().run()
    assert not app.exception
    assert any("does not look like a dermoscopy photo" in e.value for e in app.error)
    assert app.expander, "the model's output is tucked away, not shown as a diagnosis"
