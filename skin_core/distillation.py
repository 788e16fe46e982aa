"""Knowledge distillation: a small student learns from the labels and from a trained teacher bundle.

Hinton et al. (2015): loss = (1 - w) * hard loss + w * T^2 * KL(teacher_T || student_T), where
``_T`` is the softmax at temperature T. The teacher sees the same augmented image and the same
(sometimes blanked) metadata as the student in every step (Beyer et al. 2022, "consistent teaching"),
each at its own input size. Only the student is saved; the wrapper exists for training.
"""

from __future__ import annotations

import keras
from keras import ops

from .losses import log_probabilities


def _resized(inputs: dict, size: int) -> dict:
    image = inputs["image"]
    if image.shape[1] == size and image.shape[2] == size:
        return inputs
    return {**inputs, "image": ops.image.resize(image, (size, size), interpolation="bilinear", antialias=True)}


class Distiller(keras.Model):
    """Wraps ``student`` for ``fit``; the frozen ``teacher`` only adds its term to the loss."""

    def __init__(self, student: keras.Model, teacher: keras.Model, hard_loss, weight: float, temperature: float):
        super().__init__(name="distiller")
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.hard_loss = hard_loss
        self.weight = float(weight)
        self.temperature = float(temperature)
        self.student_size = int(student.input_shape[0][1])
        self.teacher_size = int(teacher.input_shape[0][1])
        self.built = True  # both networks are built already (BackupAndRestore needs a built model)

    def call(self, inputs, training=False):
        return self.student(_resized(inputs, self.student_size), training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        hard = self.hard_loss(y, y_pred)  # a Keras Loss: already the batch mean
        teacher_p = self.teacher(_resized(x, self.teacher_size), training=False)
        t = self.temperature
        target_log_p_t = ops.stop_gradient(ops.log_softmax(log_probabilities(teacher_p, floor=1e-12) / t, axis=-1))
        student_log_p_t = ops.log_softmax(log_probabilities(y_pred, floor=1e-12) / t, axis=-1)
        kl = ops.sum(ops.exp(target_log_p_t) * (target_log_p_t - student_log_p_t), axis=-1)
        return (1.0 - self.weight) * hard + self.weight * (t * t) * ops.mean(kl)
