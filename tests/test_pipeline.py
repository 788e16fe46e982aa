"""train -> evaluate -> predict end to end on a synthetic HAM10000-shaped data set."""

import csv
import io
import json
import zipfile

import h5py

import numpy as np

from skin_core.cli import main
from skin_core.vocab import CLASSES


def test_train_evaluate_predict(synthetic_data, tmp_path):
    out = tmp_path / "bundle"
    common = ["--data", str(synthetic_data), "--split-file", str(synthetic_data / "split.csv")]
    assert main(["train", "--backbone", "MobileNetV3Small", "--out", str(out), "--image-size", "64",
                 "--epochs", "2", "--batch-size", "8", "--meta-units", "16", *common]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["architecture"] == "MobileNetV3Small" and card["input_size"] == 64
    assert card["classes"] == list(CLASSES) and card["temperature"] > 0
    history = list(csv.DictReader((out / "history.csv").open()))
    assert [int(r["epoch"]) for r in history] == [1, 2]
    assert {"loss", "val_loss", "balanced_accuracy", "val_balanced_accuracy", "learning_rate"} <= set(history[0])
    assert not (out / "training" / "backup").exists()  # finished runs leave no resume state
    with zipfile.ZipFile(out / "model.keras") as archive, archive.open("model.weights.h5") as weights:
        assert "optimizer" not in h5py.File(io.BytesIO(weights.read())), "bundles carry no optimizer state"

    assert main(["evaluate", str(out), "--split", "test", "--bootstrap", "20", *common]) == 0
    metrics = json.loads((out / "metrics_test.json").read_text())
    for variant in ("with_metadata", "without_metadata"):
        m = metrics[variant]
        assert 0 <= m["balanced_accuracy"] <= 1 and len(m["confusion_matrix"]) == 7
        assert set(m["per_class"]) == set(CLASSES)
        assert m["n_images"] == sum(map(sum, m["confusion_matrix"]))

    junk = tmp_path / "notes.jpg"
    junk.write_text("not an image")
    preds = tmp_path / "preds.csv"
    assert main(["predict", "--model", str(out), "--out", str(preds), "--age", "50", "--sex", "female",
                 "--quiet", str(synthetic_data / "images"), str(junk)]) == 0
    rows = list(csv.DictReader(preds.open()))
    assert len(rows) == 71
    good = [r for r in rows if not r["error"]]
    assert len(good) == 70 and rows[-1]["image"] == "notes" and "not an image" in rows[-1]["error"]
    probs = np.array([[float(r[c]) for c in CLASSES] for r in good])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert all(r["prediction"] == CLASSES[int(np.argmax(p))] for r, p in zip(good, probs))


def test_predict_refuses_bad_patient_fields(synthetic_data, tmp_path, capsys):
    code = main(["predict", "--out", str(tmp_path / "p.csv"), "--age", "-4", str(synthetic_data / "images")])
    assert code == 2 and "Age" in capsys.readouterr().err
