"""The app's pages through streamlit.testing.v1.AppTest, on the shipped bundles."""

import io

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
    charts = app.get("plotly_chart")
    assert charts, "the probability chart is shown"
    captions = [c for image in app.image for c in image.captions]
    assert any("Soft-attention" in c for c in captions) and any("Grad-CAM" in c for c in captions)
    assert "Decision support, not a diagnosis" in texts(app)
    assert "analysis took" in texts(app)
    assert len(app.get("download_button")) == 2


def test_grad_cam_plus_plus_is_selectable(app):
    app.file_uploader[0].set_value(("lesion.jpg", jpeg_bytes(), "image/jpeg")).run()
    app.form_submit_button[0].click().run()
    app.radio[0].set_value("Grad-CAM++").run()
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
