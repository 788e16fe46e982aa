import math

import numpy as np

from skin_core.evaluation import apply_temperature, classification_metrics, expected_calibration_error, fit_temperature
from skin_core.losses import WeightedCategoricalCrossentropy, class_weights


def test_class_weights_follow_the_paper_formula():
    y = np.array([0, 0, 0, 1])  # N = 4, C = 2: W_0 = 4 / (2 * 3), W_1 = 4 / (2 * 1)
    np.testing.assert_allclose(class_weights(y, 2), [4 / 6, 2.0], rtol=1e-6)


def test_weighted_loss_equals_hand_computation():
    loss = WeightedCategoricalCrossentropy([0.5, 2.0, 1.0])
    y_true = np.array([[1, 0, 0], [0, 1, 0]], "float32")
    y_pred = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1]], "float32")
    expected = (0.5 * -math.log(0.7) + 2.0 * -math.log(0.6)) / 2
    assert abs(float(loss(y_true, y_pred)) - expected) < 1e-6


def test_ece_on_a_hand_example():
    # Two confident-right (0.9) and two confident-wrong (0.9) predictions: ECE = |0.5 - 0.9| = 0.4.
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.9, 0.1]])
    y = np.array([0, 0, 1, 1])
    assert abs(expected_calibration_error(p, y) - 0.4) < 1e-9


def test_temperature_softens_overconfidence_and_keeps_ranking():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 400)
    logits = rng.normal(0, 1, (400, 7))
    logits[np.arange(400), y] += 1.0
    overconfident = apply_temperature(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 0.25)
    t = fit_temperature(overconfident, y)
    assert t > 1.5
    calibrated = apply_temperature(overconfident, t)
    assert expected_calibration_error(calibrated, y) < expected_calibration_error(overconfident, y)
    np.testing.assert_array_equal(calibrated.argmax(1), overconfident.argmax(1))


def test_metrics_report_balanced_figures():
    y = np.array([0, 1, 2, 3, 4, 5, 6] * 3)
    p = np.full((21, 7), 0.01)
    p[np.arange(21), y] = 0.94
    p[0] = np.roll(p[0], 1)  # one akiec mistaken for bcc
    m = classification_metrics(y, p, bootstrap=50)
    assert abs(m["per_class"]["akiec"]["recall"] - 2 / 3) < 1e-9
    assert abs(m["balanced_accuracy"] - (6 + 2 / 3) / 7) < 1e-9
    assert m["confusion_matrix"][0][1] == 1
    lo, hi = m["balanced_accuracy_95ci"]
    assert 0 <= lo <= hi <= 1


def test_weighted_loss_keeps_its_gradient_when_the_softmax_saturates():
    import keras
    import tensorflow as tf

    logits = tf.Variable([[60.0, -60.0, 0.0]])
    loss = WeightedCategoricalCrossentropy([1.0, 2.0, 1.0])
    with tf.GradientTape() as tape:
        value = loss(tf.constant([[0.0, 1.0, 0.0]]), keras.activations.softmax(logits))
    gradient = tape.gradient(value, logits).numpy()
    assert abs(float(value) - 2.0 * 120.0) < 1e-3  # W_1 * -log softmax = 2 * (60 + 60 + log(1 + e^-60 + e^-60))
    np.testing.assert_allclose(gradient, [[2.0, -2.0, 0.0]], atol=1e-5)  # W_1 * (p - y)
