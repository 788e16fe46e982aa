"""The class-weighted loss of the paper and a streaming balanced-accuracy metric for training logs."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from .layers import PACKAGE


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """W_c = N / (C * N_c) from the training labels (the paper's formula)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    if (counts == 0).any():
        raise ValueError(f"Every class needs training examples; counts were {counts.tolist()}")
    return (len(y) / (n_classes * counts)).astype(np.float32)


def log_probabilities(probabilities, floor: float | None = None):
    """log p of a softmax output: from its logits when Keras kept them (set by Keras's softmax), so the
    gradient never vanishes even when a fresh network saturates; else log of p clipped at ``floor``."""
    logits = getattr(probabilities, "_keras_logits", None)
    if logits is not None:
        return ops.log_softmax(logits, axis=-1)
    return ops.log(ops.clip(probabilities, keras.config.epsilon() if floor is None else floor, 1.0))


@keras.saving.register_keras_serializable(package=PACKAGE)
class WeightedCategoricalCrossentropy(keras.losses.Loss):
    """-sum_c W_c y_c log p_c per example, averaged over the batch."""

    def __init__(self, class_weights, label_smoothing: float = 0.0, name="weighted_categorical_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_weights = [float(w) for w in class_weights]
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        if self.label_smoothing:
            n = ops.cast(ops.shape(y_true)[-1], y_pred.dtype)
            y_true = y_true * (1.0 - self.label_smoothing) + self.label_smoothing / n
        log_p = log_probabilities(y_pred)
        weights = ops.convert_to_tensor(self.class_weights, dtype=y_pred.dtype)
        return -ops.sum(weights * y_true * log_p, axis=-1)

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights, "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package=PACKAGE)
class BalancedAccuracy(keras.metrics.Metric):
    """Mean per-class recall over the epoch (classes absent from the data are skipped)."""

    def __init__(self, n_classes: int = 7, name="balanced_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.n_classes = n_classes
        self.hits = self.add_variable(shape=(n_classes,), initializer="zeros", name="hits")
        self.totals = self.add_variable(shape=(n_classes,), initializer="zeros", name="totals")

    def update_state(self, y_true, y_pred, sample_weight=None):
        true = ops.one_hot(ops.argmax(y_true, axis=-1), self.n_classes)
        pred = ops.one_hot(ops.argmax(y_pred, axis=-1), self.n_classes)
        self.hits.assign_add(ops.sum(true * pred, axis=0))
        self.totals.assign_add(ops.sum(true, axis=0))

    def result(self):
        present = ops.cast(self.totals > 0, "float32")
        recall = self.hits / ops.maximum(self.totals, 1.0)
        return ops.sum(recall * present) / ops.maximum(ops.sum(present), 1.0)

    def reset_state(self):
        self.hits.assign(ops.zeros_like(self.hits))
        self.totals.assign(ops.zeros_like(self.totals))

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes}
