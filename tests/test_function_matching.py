"""Function matching (`python -m skin_core distill`): one shared strong view, a KL loss to the tempered
teacher, a warm-up-then-cosine schedule, and a run that resumes, refuses other settings and writes a bundle."""

import json

import keras
import numpy as np
import pytest
from keras import ops

from skin_core.cli import main
from skin_core.function_matching import FunctionMatching, StrongView, learning_rate
from skin_core.patient import META_DIM


def _inputs(size=32, n=6, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.uniform(0, 255, (n, size, size, 3)).astype("float32"),
            "metadata": rng.uniform(0, 1, (n, META_DIM)).astype("float32")}


def _tiny(seed, size=32):
    """A network with neither dropout nor batch norm: its training and inference outputs agree."""
    keras.utils.set_random_seed(seed)
    image, metadata = keras.Input((size, size, 3), name="image"), keras.Input((META_DIM,), name="metadata")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(image))
    x = keras.layers.Concatenate()([x, metadata])
    return keras.Model([image, metadata], keras.layers.Dense(7, activation="softmax")(x))


def test_schedule_warms_up_then_decays_to_zero():
    rates = [learning_rate(e, 100, 1e-3, 0.05) for e in range(100)]
    assert rates[0] == pytest.approx(2e-4) and rates[4] == pytest.approx(1e-3)  # 5 warm-up epochs
    assert all(a >= b for a, b in zip(rates[4:], rates[5:]))
    assert rates[-1] < 1e-6


def test_strong_view_is_seeded_and_keeps_shape_and_range():
    x = _inputs(48)["image"]
    a, b, c = (ops.convert_to_numpy(StrongView(seed)(x)) for seed in (7, 7, 8))
    assert a.shape == x.shape and np.isfinite(a).all() and a.min() >= 0 and a.max() <= 255.5
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert np.abs(a - c).mean() > 1.0 and np.abs(a - x).mean() > 1.0


def test_teacher_and_student_see_the_same_view():
    student, teacher = _tiny(1), _tiny(1)  # the same weights: only a different view could split them
    model = FunctionMatching(student, teacher, 1.0, blank_probability=0.5, mixup_alpha=1.0)
    out = ops.convert_to_numpy(model(_inputs(), training=True))
    np.testing.assert_allclose(out[:, 0], out[:, 1], atol=1e-5)
    assert float(model.compute_loss(y_pred=model(_inputs(), training=True))) == pytest.approx(0.0, abs=1e-5)


def test_loss_is_kl_to_the_tempered_teacher():
    student, teacher, t = _tiny(1), _tiny(2), 2.0
    model = FunctionMatching(student, teacher, t, blank_probability=0.0, mixup_alpha=0.0)
    x = _inputs()
    p_s, p_t = ops.convert_to_numpy(student(x)), ops.convert_to_numpy(teacher(x))
    z = np.log(p_t) / t
    target = np.exp(z - z.max(axis=1, keepdims=True))
    target /= target.sum(axis=1, keepdims=True)
    expected = np.sum(target * (np.log(target) - np.log(p_s)), axis=1).mean()
    assert expected > 0
    assert float(model.compute_loss(y_pred=model(x, training=False))) == pytest.approx(expected, rel=1e-4)


def test_distill_run_resumes_refuses_other_settings_and_writes_a_bundle(synthetic_data, tmp_path):
    split = ["--split-file", str(synthetic_data / "split.csv")]
    small = ["--meta-units", "16", "--heads", "2"]
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    assert main(["train", "--backbone", "MobileNetV3Small", "--image-size", "64", "--epochs", "1",
                 "--batch-size", "8", "--data", str(synthetic_data), "--out", str(teacher), *split, *small]) == 0

    def run(*extra, size="64", out=student):
        return main(["distill", "--teacher", str(teacher), "--backbone", "MobileNetV3Small", "--image-size", size,
                     "--data", str(synthetic_data), "--out", str(out), "--batch-size", "8", *split, *small, *extra])

    assert run("--epochs", "2", "--train-only") == 0
    history = (student / "training" / "history.csv").read_text()
    assert run("--epochs", "2") == 0  # trained already: only the bundle is written
    assert (student / "training" / "history.csv").read_text() == history
    # Another session with only the student's weights and the history continues the schedule from them.
    rows = history.splitlines()
    (student / "training" / "history.csv").write_text("\n".join(rows[:-1]) + "\n")
    before = (student / "training" / "student.weights.h5").read_bytes()
    assert run("--epochs", "2", "--train-only") == 0
    resumed = (student / "training" / "history.csv").read_text().splitlines()
    assert len(resumed) == 3 and resumed[-1].startswith("1,")
    assert (student / "training" / "student.weights.h5").read_bytes() != before
    with pytest.raises(ValueError, match="other settings"):
        run("--epochs", "3", "--train-only")
    with pytest.raises(ValueError, match="image-size 64"):  # teacher and student share one prepared photo
        run("--epochs", "2", "--train-only", size="80", out=tmp_path / "other")
    # A warm start begins from the bundle's weights (learning rate 0: they stay as they were).
    assert run("--epochs", "1", "--learning-rate", "0", "--colour-constancy", "0", "--warm-start", str(teacher),
               out=tmp_path / "warm") == 0
    warm = keras.saving.load_model(tmp_path / "warm" / "model.keras", compile=False)
    source = keras.saving.load_model(teacher / "model.keras", compile=False)
    for name in ("probabilities", "metadata_dense"):
        for a, b in zip(warm.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert json.loads((tmp_path / "warm" / "card.json").read_text())["lineage"]["warm_start"]["bundle"] == "teacher"
    card = json.loads((student / "card.json").read_text())
    assert card["training"]["method"] == "function matching" and card["training"]["epochs_run"] == 2
    assert card["data_source"]["labels_used"] is False and card["lineage"]["teacher"]["bundle"] == "teacher"
    assert card["input_size"] == 64 and card["temperature"] > 0
    model = keras.saving.load_model(student / "model.keras", compile=False)
    assert model.inputs[0].shape[1] == 64 and model.name != "function_matching"
