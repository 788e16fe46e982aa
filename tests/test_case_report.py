"""The PDF case report, built from a real prediction of the shipped default bundle and read back with pypdf."""

import dataclasses
import io
from datetime import datetime, timezone

import numpy as np
import pytest
from pypdf import PdfReader
from synthetic import lesion_image

import skin_core as sc
from skin_core.referral import REFERRAL_MESSAGE, ReferralRule

CREATED = datetime(2026, 11, 24, 21, 40, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def case():
    classifier = sc.load_classifier()
    image = np.asarray(lesion_image(4, np.random.default_rng(0), size=(300, 225)))
    patient = sc.Patient.from_fields(57, "female", "back")
    prediction = classifier.predict(image, patient)
    heatmap = np.linspace(0, 1, image.shape[0] * image.shape[1]).reshape(image.shape[:2])
    return prediction, patient, classifier.bundle, {"Grad-CAM": heatmap}


def pdf_text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    assert 1 <= len(reader.pages) <= 2, "one or two A4 pages"
    assert all(round(float(page.mediabox.width)) == 595 for page in reader.pages), "A4 portrait"
    return " ".join(" ".join(page.extract_text().split()) for page in reader.pages)


def test_report_holds_the_case_the_scores_and_a_fired_referral(case):
    prediction, patient, bundle, heatmaps = case
    referred = dataclasses.replace(prediction, referral=ReferralRule("melanoma", 0.0))
    assert referred.refer
    pdf = sc.case_report_pdf(referred, patient, bundle, heatmaps, CREATED)
    assert pdf.startswith(b"%PDF")
    text = pdf_text(pdf)
    assert sc.CLASS_NAMES[prediction.top] in text
    assert "57" in text and "female" in text and "back" in text
    assert "2026-11-24 21:40" in text
    assert REFERRAL_MESSAGE in text and "≥ referral threshold 0.0%" in text
    assert f"{prediction.malignant_probability:.1%}" in text
    assert "Decision support, not a diagnosis" in text
    test = bundle.metrics("test")["without_metadata"]
    assert f"balanced accuracy {test['balanced_accuracy']:.3f}" in text
    assert bundle.name in text and bundle.architecture in text
    assert len(PdfReader(io.BytesIO(pdf)).pages[0].images) == 3, "photo and both overlays"


def test_report_below_the_threshold_says_so_and_does_not_refer(case):
    prediction, patient, bundle, heatmaps = case
    below = dataclasses.replace(prediction, referral=ReferralRule("melanoma", 1.01))
    text = pdf_text(sc.case_report_pdf(below, sc.Patient.from_fields(None, None, None), bundle, heatmaps, CREATED))
    assert REFERRAL_MESSAGE not in text
    assert "is below the referral threshold 101.0%" in text
    assert "Age unknown" in text and "Sex unknown" in text and "Body site unknown" in text


def test_report_warns_when_the_photo_is_no_lesion_and_the_model_is_unsure(case):
    prediction, patient, bundle, heatmaps = case
    flat = np.full(7, 1 / 7)
    odd = dataclasses.replace(prediction, probabilities=flat, not_lesion_reasons=("too little skin colour",),
                              referral=None)
    text = pdf_text(sc.case_report_pdf(odd, patient, bundle, heatmaps, CREATED))
    assert "does not look like a dermoscopy photo" in text and "too little skin colour" in text
    assert "The model is unsure" in text
    assert REFERRAL_MESSAGE not in text and "referral threshold" not in text


def test_referral_statement_reads_how_the_card_chose_the_threshold(case, monkeypatch):
    prediction, _, bundle, _ = case
    assert sc.referral_statement(dataclasses.replace(prediction, referral=None), bundle) is None
    card = {**bundle.card, "referral": {"score": "melanoma", "threshold": 0.0, "target_sensitivity": 0.95,
                                        "chosen_on": "val"}}
    monkeypatch.setitem(bundle.__dict__, "card", card)
    statement = sc.referral_statement(dataclasses.replace(prediction, referral=ReferralRule("melanoma", 0.0)), bundle)
    assert statement.endswith("the threshold was chosen on validation for ≥ 95% melanoma sensitivity.")
