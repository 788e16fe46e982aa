"""Knowledge distillation: the loss is Hinton's formula, and a distilled run writes a plain student bundle."""

import json

import keras
import numpy as np
import pytest
from keras import ops

from skin_core.cli import main
from skin_core.distillation import Distiller
from skin_core.losses import WeightedCategoricalCrossentropy
from skin_core.models import build_model
from skin_core.patient import META_DIM


def _inputs(size, n=4, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.uniform(0, 255, (n, size, size, 3)).astype("float32"),
            "metadata": rng.uniform(0, 1, (n, META_DIM)).astype("float32")}


@pytest.fixture(scope="module")
def pair():
    keras.utils.set_random_seed(3)
    student = build_model("MobileNetV3Small", 64, meta_units=8, heads=2)
    teacher = build_model("MobileNetV3Small", 80, meta_units=8, heads=2)
    return student, teacher


def test_loss_is_hinton_formula(pair):
    student, teacher = pair
    weights = np.linspace(0.5, 2.0, 7).astype("float32")
    hard = WeightedCategoricalCrossentropy(weights)
    x = _inputs(80)  # the teacher's size: the student's view is resized down inside the wrapper
    y = np.eye(7, dtype="float32")[[0, 3, 5, 6]]
    w, t = 0.7, 2.0
    distiller = Distiller(student, teacher, hard, w, t)
    p_s = ops.convert_to_numpy(distiller(x))
    p_t = ops.convert_to_numpy(teacher(x))
    assert p_s.shape == (4, 7)

    def soft(p):
        z = np.log(p) / t
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    kl = np.sum(soft(p_t) * (np.log(soft(p_t)) - np.log(soft(p_s))), axis=1).mean()
    expected = (1 - w) * float(hard(y, p_s)) + w * t * t * kl
    got = float(distiller.compute_loss(x, y, distiller(x)))
    assert got == pytest.approx(expected, rel=1e-3)
    assert kl > 0  # two different networks disagree

    same = Distiller(student, student, hard, w, t)  # a teacher identical to the student adds nothing
    x64 = _inputs(64)
    assert float(same.compute_loss(x64, y, same(x64))) == pytest.approx((1 - w) * float(hard(y, same(x64))), rel=1e-4)


def test_distilled_run_writes_a_student_bundle(synthetic_data, tmp_path):
    common = ["--data", str(synthetic_data), "--split-file", str(synthetic_data / "split.csv"),
              "--batch-size", "8", "--meta-units", "16", "--heads", "2"]
    teacher, student, warm = tmp_path / "teacher", tmp_path / "student", tmp_path / "warm"
    assert main(["train", "--backbone", "MobileNetV3Small", "--image-size", "80", "--epochs", "1",
                 "--out", str(teacher), *common]) == 0
    assert main(["train", "--backbone", "MobileNetV3Small", "--image-size", "64", "--epochs", "2",
                 "--teacher", str(teacher), "--lr-schedule", "cosine", "--out", str(student), *common]) == 0
    card = json.loads((student / "card.json").read_text())
    assert card["input_size"] == 64 and card["training"]["teacher"] == str(teacher)
    assert card["lineage"]["teacher"]["input_size"] == 80 and card["lineage"]["warm_start"] is None
    model = keras.saving.load_model(student / "model.keras", compile=False)
    assert model.inputs[0].shape[1] == 64 and model.name != "distiller"

    # Warm start: the new run begins from the student's weights, not from a fresh initialisation.
    assert main(["train", "--backbone", "MobileNetV3Small", "--image-size", "64", "--epochs", "1",
                 "--learning-rate", "0", "--warm-start", str(student), "--out", str(warm), *common]) == 0
    started_from = json.loads((warm / "card.json").read_text())["lineage"]["warm_start"]
    assert started_from["bundle"] == "student" and started_from["lineage"]["teacher"]["bundle"] == "teacher"
    restarted = keras.saving.load_model(warm / "model.keras", compile=False)
    x = _inputs(64)
    np.testing.assert_allclose(ops.convert_to_numpy(restarted(x)), ops.convert_to_numpy(model(x)), atol=1e-4)
