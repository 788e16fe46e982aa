"""`python -m skin_core distill`: patient, consistent distillation ("function matching", Beyer et al. 2022).

A student (from scratch or warm-started) learns nothing but to match a trained teacher's probabilities (KL, the
teacher's own temperature applied), with teacher and student seeing the same strongly augmented, mixed
view of every image in every step, over a long schedule. No labels are used, so the student can see far
more distinct inputs than the 7k training photos give. The views are made inside the model from Keras
layers and ``keras.ops`` only, so the same code runs on TensorFlow (this CPU machine) and on JAX (a lent
GPU, where TensorFlow is not installed); tf.data is not used.

Training writes ``OUT/training`` (the student's weights, history and plan) and stops; with ``--epochs``
it resumes from ``OUT/training/backup`` after an interruption (CPU runs across sessions). A second call on
a machine with the validation images (``--finish``) fits the temperature and writes the bundle.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import keras
import numpy as np
from keras import ops

from . import data
from .bundle import ModelBundle, write_json
from .losses import log_probabilities
from .patient import UNKNOWN_PATIENT
from .registry import get_architecture
from .vocab import CLASSES


@dataclass
class DistillConfig:
    teacher: str
    backbone: str
    data: str
    out: str
    image_size: int = 192
    epochs: int | None = 300  # the cosine schedule's length; or None with ``minutes``
    minutes: float | None = None  # fit the schedule to this much wall time (measured after two epochs)
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 0.02
    warmup: float = 0.03  # share of the schedule spent warming up
    blank_probability: float = 0.5  # whole metadata record set to unknown
    mixup_alpha: float = 1.0
    colour_constancy: float = 6.0
    warm_start: str | None = None  # a bundle of the student's architecture whose weights start the run
    bn_momentum: float = 0.99
    meta_units: int = 4096
    heads: int = 16
    split_file: str = str(data.SPLIT_FILE)
    seed: int = 1
    verbose: int = 0


class StrongView(keras.layers.Layer):
    """One strongly augmented view of a batch of 0..255 images, from Keras layers and ops only.

    Random resized crop (scale 0.35-1, aspect 3/4-4/3), every rotation and flip, colour jitter, a random
    gamma (0.7-1.4), Gaussian blur and, with probability 0.3, a dark vignette: the shifts of
    ``data.RobustAugmentation`` that need no TensorFlow (its JPEG and downscale steps do).
    """

    def __init__(self, seed: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.flip = keras.layers.RandomFlip("horizontal_and_vertical", seed=seed + 1)
        self.rotate = keras.layers.RandomRotation(0.5, fill_mode="reflect", seed=seed + 2)
        self.jitter = keras.layers.RandomColorJitter(value_range=(0, 255), brightness_factor=0.1, contrast_factor=0.25,
                                                     saturation_factor=(0.3, 0.7), hue_factor=0.04, seed=seed + 3)
        self.blur = keras.layers.RandomGaussianBlur(factor=0.5, kernel_size=5, sigma=(0.1, 1.2), seed=seed + 4)

    def _uniform(self, shape, low, high):
        return keras.random.uniform(shape, low, high, seed=self.seed_generator)

    def call(self, images):
        a = data.RobustAugmentation
        n, size = ops.shape(images)[0], images.shape[1]
        area = self._uniform((n,), *a.SCALE)
        ratio = ops.exp(self._uniform((n,), math.log(a.RATIO[0]), math.log(a.RATIO[1])))
        height = ops.minimum(ops.sqrt(area / ratio), 1.0)
        width = ops.minimum(ops.sqrt(area * ratio), 1.0)
        top = self._uniform((n,), 0.0, 1.0) * (1.0 - height) * size
        left = self._uniform((n,), 0.0, 1.0) * (1.0 - width) * size
        zero = ops.zeros_like(height)
        # Output pixel (x, y) reads input (left + w x, top + h y): a crop resized back to the full size.
        crop = ops.stack([width, zero, left, zero, height, top, zero, zero], axis=1)
        images = ops.image.affine_transform(images, crop, interpolation="bilinear", fill_mode="reflect")
        images = self.rotate(self.flip(images, training=True), training=True)
        images = self.blur(self.jitter(images, training=True), training=True)
        gamma = ops.exp(self._uniform((n, 1, 1, 1), math.log(a.GAMMA[0]), math.log(a.GAMMA[1])))
        images = 255.0 * ops.power(ops.clip(images / 255.0, 1e-6, 1.0), gamma)
        return images * self._vignette(n, size)

    def _vignette(self, n, size):
        a = data.RobustAugmentation
        grid = (ops.arange(size, dtype="float32") + 0.5) / size * 2.0 - 1.0
        cy = self._uniform((n, 1, 1, 1), -a.VIGNETTE_SHIFT, a.VIGNETTE_SHIFT)
        cx = self._uniform((n, 1, 1, 1), -a.VIGNETTE_SHIFT, a.VIGNETTE_SHIFT)
        radius = ops.minimum(ops.sqrt((grid[None, :, None, None] - cy) ** 2 + (grid[None, None, :, None] - cx) ** 2)
                             / math.sqrt(2.0), 1.0)
        on = ops.cast(self._uniform((n, 1, 1, 1), 0.0, 1.0) < a.P_VIGNETTE, "float32")
        depth = self._uniform((n, 1, 1, 1), *a.VIGNETTE_DEPTH) * on
        return 1.0 - depth * radius ** self._uniform((n, 1, 1, 1), *a.VIGNETTE_POWER)


class FunctionMatching(keras.Model):
    """Wraps ``student`` for ``fit``: each step makes one view, shown to both networks; the loss is
    KL(teacher || student). ``call`` returns both outputs stacked, so ``compute_loss`` sees the same view."""

    def __init__(self, student: keras.Model, teacher: keras.Model, teacher_temperature: float,
                 blank_probability: float, mixup_alpha: float, seed: int = 1):
        super().__init__(name="function_matching")
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.teacher_temperature = float(teacher_temperature)
        self.blank_probability = float(blank_probability)
        self.mixup_alpha = float(mixup_alpha)
        self.view = StrongView(seed)
        self.seed_generator = keras.random.SeedGenerator(seed + 10)
        self.unknown = ops.convert_to_tensor(UNKNOWN_PATIENT.encode()[None, :])
        self.built = True

    def call(self, inputs, training=False):
        image = ops.cast(inputs["image"], "float32")
        metadata = ops.cast(inputs["metadata"], "float32")
        if training:
            n = ops.shape(image)[0]
            image = self.view(image)
            if self.mixup_alpha > 0:  # each image mixed with its neighbour in the batch; the first's record kept
                lam = keras.random.beta((n, 1, 1, 1), self.mixup_alpha, self.mixup_alpha, seed=self.seed_generator)
                image = lam * image + (1.0 - lam) * ops.roll(image, 1, axis=0)
            blank = keras.random.uniform((n, 1), seed=self.seed_generator) < self.blank_probability
            metadata = ops.where(blank, self.unknown, metadata)
        inputs = {"image": image, "metadata": metadata}
        return ops.stack([self.student(inputs, training=training), self.teacher(inputs, training=False)], axis=1)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        student, teacher = y_pred[:, 0], y_pred[:, 1]
        target = ops.stop_gradient(ops.log_softmax(log_probabilities(teacher, floor=1e-12) / self.teacher_temperature,
                                                   axis=-1))
        learnt = log_probabilities(student, floor=1e-12)
        return ops.mean(ops.sum(ops.exp(target) * (target - learnt), axis=-1))


def learning_rate(epoch: int, epochs: int, peak: float, warmup: float) -> float:
    """Linear warm-up to ``peak`` over the first ``warmup`` share of the epochs, then cosine to zero."""
    warm = max(1, round(warmup * epochs))
    if epoch < warm:
        return peak * (epoch + 1) / warm
    return 0.5 * peak * (1.0 + math.cos(math.pi * min(1.0, (epoch - warm) / max(1, epochs - warm))))


class _Schedule(keras.callbacks.Callback):
    """Sets the learning rate each epoch; with a time budget, fixes the schedule's length after two
    epochs from the second one's duration (the first includes compilation), and stops at the budget."""

    def __init__(self, config: DistillConfig, plan_file: Path):
        super().__init__()
        self.config, self.plan_file = config, plan_file
        self.epochs = config.epochs
        self.started = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.time()
        epochs = self.epochs or 1000  # until the plan is fixed: warm-up as for a long schedule
        self.model.optimizer.learning_rate = learning_rate(epoch, epochs, self.config.learning_rate, self.config.warmup)

    def on_epoch_end(self, epoch, logs=None):
        took = time.time() - self.epoch_started
        if self.epochs is None and epoch == 1:
            left = self.config.minutes * 60 - (time.time() - self.started)
            self.epochs = 2 + max(0, int(left / took))
            write_json(self.plan_file, {"epochs": self.epochs, "seconds_per_epoch": took})
            print(f"plan: {self.epochs} epochs at {took:.2f}s each", flush=True)
        if logs is not None:
            logs["learning_rate"] = float(ops.convert_to_numpy(self.model.optimizer.learning_rate))
            logs["seconds"] = took
            print(f"epoch {epoch + 1}/{self.epochs or '?'}: loss {logs.get('loss', float('nan')):.4f}, "
                  f"learning rate {logs['learning_rate']:.2e}, {took:.0f}s", flush=True)
        if self.epochs is not None and epoch + 1 >= self.epochs:
            self.model.stop_training = True
        if self.config.minutes and time.time() - self.started > self.config.minutes * 60:
            self.model.stop_training = True


class _FullBatches(keras.utils.PyDataset):
    """Shuffled full batches only: one input shape, so XLA (JAX on a GPU) compiles the step once, where a
    last short batch would cost a second compilation of minutes."""

    def __init__(self, images, metadata, batch_size: int, seed: int, first_epoch: int = 0):
        super().__init__()
        self.images, self.metadata, self.batch_size, self.seed = images, metadata, batch_size, seed
        self.epoch = first_epoch
        self.on_epoch_end()

    def __len__(self):
        return len(self.images) // self.batch_size

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]  # shuffled: mixup pairs neighbours
        return {"image": self.images[rows], "metadata": self.metadata[rows]}, np.zeros((len(rows), len(CLASSES)), "float32")

    def on_epoch_end(self):
        self.order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.images))
        self.epoch += 1


class _SaveStudent(keras.callbacks.Callback):
    """The student's weights every ``seconds`` and at the end (a stopped run keeps its last save)."""

    def __init__(self, student: keras.Model, path: Path, seconds: float = 60.0):
        super().__init__()
        self.student, self.path, self.seconds, self.saved = student, path, seconds, time.time()

    def on_epoch_end(self, epoch, logs=None):
        if time.time() - self.saved > self.seconds:
            self.student.save_weights(self.path)
            self.saved = time.time()

    def on_train_end(self, logs=None):
        self.student.save_weights(self.path)


def build_student(config: DistillConfig) -> keras.Model:
    from .models import build_model

    return build_model(get_architecture(config.backbone).name, config.image_size, "none", None, config.meta_units,
                       config.heads, bn_momentum=config.bn_momentum, colour_constancy=config.colour_constancy or None)


def distill(config: DistillConfig) -> Path:
    """Train the student (no validation is read); return the training folder."""
    if (config.epochs is None) == (config.minutes is None):
        raise ValueError("give exactly one of epochs and minutes")
    from .training import epoch_rows

    keras.utils.set_random_seed(config.seed)
    work = Path(config.out) / "training"
    work.mkdir(parents=True, exist_ok=True)
    history = epoch_rows(work / "history.csv")
    if config.epochs and len(history) >= config.epochs and (work / "student.weights.h5").is_file():
        print(f"{work} already holds {config.epochs} trained epochs", flush=True)
        return work
    saved = work / "config.json"
    if saved.is_file():  # a resumed run must continue the same schedule
        before = {k: v for k, v in json.loads(saved.read_text()).items() if k not in ("verbose", "data")}
        if before != {k: v for k, v in asdict(config).items() if k not in ("verbose", "data")}:
            raise ValueError(f"{work} holds a run with other settings ({saved}); use a new --out")
    teacher_bundle = ModelBundle.open(config.teacher)
    if teacher_bundle.input_size != config.image_size or teacher_bundle.detail_side is None:
        raise ValueError("teacher and student share one prepared photo: give --image-size "
                         f"{teacher_bundle.input_size}")
    rows = data.split_table(data.read_ham10000(config.data), "train", config.split_file)
    if len(rows) < config.batch_size:
        raise ValueError(f"{len(rows)} training images make no batch of {config.batch_size}")
    write_json(saved, asdict(config))
    started = time.time()
    images = data.load_images(rows["path"], config.image_size, teacher_bundle.detail_side)
    metadata = data.encode_metadata(rows)
    print(f"loaded {len(images)} train images at {config.image_size}px in {time.time() - started:.0f}s "
          f"(backend {keras.backend.backend()})", flush=True)
    student = build_student(config)
    first_epoch = 0
    backed_up = (work / "backup" / "latest.weights.h5").is_file()
    if config.epochs and not backed_up and (work / "student.weights.h5").is_file():
        # The backup (with the teacher, ~60 MB) stays on this machine; a later session that has only the
        # student's weights and the history continues the schedule from them, with fresh optimizer moments.
        first_epoch = len(history)
        student.load_weights(work / "student.weights.h5")
        print(f"continuing at epoch {first_epoch + 1} from the student's weights (optimizer state starts afresh)",
              flush=True)
    elif config.warm_start and not backed_up:
        student.set_weights(ModelBundle.open(config.warm_start).load_network().get_weights())
    model = FunctionMatching(student, teacher_bundle.load_network(), teacher_bundle.temperature,
                             config.blank_probability, config.mixup_alpha, config.seed)
    model.compile(optimizer=keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay,
                                                   clipnorm=1.0))
    model.fit(_FullBatches(images, metadata.astype(np.float32), config.batch_size, config.seed, first_epoch),
              epochs=config.epochs or 100000, initial_epoch=first_epoch, verbose=config.verbose,
              callbacks=[*([keras.callbacks.BackupAndRestore(str(work / "backup"))] if config.epochs else []),
                         _Schedule(config, work / "plan.json"), _SaveStudent(student, work / "student.weights.h5"),
                         keras.callbacks.CSVLogger(str(work / "history.csv"), append=True)])
    print(f"trained in {time.time() - started:.0f}s; student weights in {work / 'student.weights.h5'}", flush=True)
    return work


def finish(out, data_dir, split_file=data.SPLIT_FILE) -> ModelBundle:
    """Write the bundle from a finished training folder: the student, its temperature fitted on
    validation (with the patients' records, as ``train`` does), and a card."""
    from .bundle import software_versions
    from .evaluation import fit_temperature
    from .training import calibration_card, lineage, network_card, write_history

    out = Path(out)
    work = out / "training"
    config = DistillConfig(**json.loads((work / "config.json").read_text()))
    teacher = ModelBundle.open(config.teacher)
    student = build_student(config)
    student.load_weights(work / "student.weights.h5")
    student.save(out / "model.keras")
    table = data.read_ham10000(data_dir)
    train_images = int(len(data.split_table(table, "train", split_file)))
    val_rows = data.split_table(table, "val", split_file)
    x_val = data.load_images(val_rows["path"], config.image_size, teacher.detail_side)
    y_val, m_val = data.labels(val_rows), data.encode_metadata(val_rows)
    probabilities = student.predict({"image": x_val.astype(np.float32), "metadata": m_val}, batch_size=64, verbose=0)
    temperature = fit_temperature(probabilities, y_val)
    history = write_history(work / "history.csv", out / "history.csv", ["epoch", "loss", "learning_rate"])
    spec = get_architecture(config.backbone)
    plan = json.loads((work / "plan.json").read_text()) if (work / "plan.json").is_file() else {}
    card = {
        **network_card(spec, config.image_size, spec.preprocessing, teacher.detail_side, config.colour_constancy,
                       int(student.count_params())),
        "augmentation": "function matching: StrongView + mixup, the same view for teacher and student",
        **calibration_card(probabilities, y_val, temperature),
        "data_source": {"sets": {"ham10000": {"folder": Path(config.data).name, "train_images": train_images}},
                        "labels_used": False, "val_images": int(len(y_val)), "val_set": "ham10000"},
        "split_file": Path(config.split_file).name,
        "training": {**asdict(config), "split_file": Path(config.split_file).name, "method": "function matching",
                     "epochs_run": len(history), "planned_epochs": config.epochs or plan.get("epochs"),
                     "final_loss": float(history[-1]["loss"]) if history else None},
        "lineage": lineage(config.warm_start, config.teacher),
        "software": software_versions(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(out / "card.json", card)
    return ModelBundle.open(out)
