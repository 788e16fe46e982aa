"""`python -m skin_core predict` on a clinic's folder, as a batch job's log sees it: quiet, every skipped
file named, and a CSV with the referral, not-a-dermoscopy and uncertainty columns."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from synthetic import lesion_image

from skin_core.classifier import Prediction
from skin_core.predict import COLUMNS, prediction_row
from skin_core.referral import ReferralRule
from skin_core.vocab import CLASSES

ROOT = Path(__file__).resolve().parent.parent
TENSORFLOW_START_UP = ("cuInit", "oneDNN", "absl", "cudart_stub", "cpu_feature_guard")


def test_predict_folder_is_quiet_and_names_skipped_files(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name, dx in (("lesion_a", "mel"), ("lesion_b", "nv")):
        lesion_image(CLASSES.index(dx), rng).save(photos / f"{name}.jpg", quality=92)
    (photos / "report.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n")
    (photos / "notes.txt").write_text("biopsy booked for lesion_a\n")
    out = tmp_path / "preds.csv"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}  # the command must quiet TF itself
    result = subprocess.run([sys.executable, "-m", "skin_core", "predict", "--out", str(out), str(photos)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert len(output.splitlines()) <= 8, output
    assert not [word for word in TENSORFLOW_START_UP if word in output], output
    assert "\r" not in output, "no progress bar when stderr is not a terminal"
    assert "skipped notes.txt: not an image file (.txt)" in result.stderr
    assert "skipped report.pdf: not an image file (.pdf)" in result.stderr
    assert "2 predicted" in result.stdout and "2 non-image files skipped" in result.stdout

    with out.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["image", *CLASSES, "prediction", "refer", "referral_score", "referral_rule",
                                 "not_dermoscopy", "uncertain", "error"]
    assert [r["image"] for r in rows] == ["lesion_a", "lesion_b"], "non-image files get no row"
    for row in rows:
        probabilities = np.array([float(row[c]) for c in CLASSES])
        assert not row["error"] and abs(probabilities.sum() - 1) < 1e-5
        assert row["prediction"] == CLASSES[int(probabilities.argmax())]
        assert row["not_dermoscopy"] in {"0", "1"} and row["uncertain"] in {"0", "1"}
        if row["referral_rule"]:
            assert row["refer"] in {"0", "1"} and 0 <= float(row["referral_score"]) <= 1
        else:
            assert row["refer"] == row["referral_score"] == ""


def _prediction(referral):
    probabilities = np.array([0.02, 0.03, 0.05, 0.01, 0.40, 0.45, 0.04])
    return Prediction(probabilities=probabilities, attention_map=np.zeros((6, 6)), image=np.zeros((8, 8, 3)),
                      not_lesion_reasons=("too little skin colour",), referral=referral)


def test_prediction_row_leaves_refer_empty_without_a_rule():
    row = prediction_row(_prediction(None))
    assert set(row) <= set(COLUMNS) and row["prediction"] == "nv"
    assert "refer" not in row and "referral_score" not in row, "no rule: empty, never 0"
    assert row["not_dermoscopy"] == 1 and row["uncertain"] == 1  # 45 % top probability

    rule = ReferralRule("melanoma", 0.25)
    row = prediction_row(_prediction(rule))
    assert row["refer"] == 1 and row["referral_score"] == "0.400000" and row["referral_rule"] == rule.describe()
    assert prediction_row(_prediction(ReferralRule("melanoma", 0.5)))["refer"] == 0
