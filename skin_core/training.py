"""`python -m skin_core train`: the paper's recipe, resumable, writing a model bundle."""

from __future__ import annotations

import csv
import hashlib
import math
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from . import data
from .bundle import CARD_VERSION, ModelBundle, software_versions, write_json
from .evaluation import apply_temperature, expected_calibration_error, fit_temperature
from .images import DETAIL_SOFTENING
from .patient import AGE_SCALE, UNKNOWN_PATIENT
from .registry import get_architecture
from .vocab import CLASSES, SEXES, SITES


@dataclass
class TrainConfig:
    backbone: str
    data: str
    out: str
    init: str = "none"  # imagenet | none | path to a .weights.h5 file
    preprocessing: str | None = None  # override the registry's (e.g. torch for torchvision weights)
    image_size: int | None = None
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    adam_epsilon: float = 0.1
    patience: int = 8  # early stopping on validation balanced accuracy
    lr_patience: int = 3
    min_learning_rate: float = 1e-7
    meta_units: int = 4096
    heads: int = 16
    blank_probability: float = 0.1
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0  # 0: no mixup
    bn_momentum: float | None = None  # override batch-norm momentum (useful when training from scratch)
    zero_head: bool = False  # start the classifier at zero (models.zero_classifier)
    warm_start: str | None = None  # a bundle of the same architecture and size whose weights start training
    teacher: str | None = None  # a bundle to distil from (see distillation.py)
    distill_weight: float = 0.7
    distill_temperature: float = 2.0
    lr_schedule: str = "plateau"  # plateau: x0.2 when val BA stalls | cosine: decay to 0 over the epochs
    augmentation: str = "paper"  # a name in data.AUGMENTATIONS
    colour_constancy: float = 0.0  # Minkowski power of a Shades of Gray input layer (0: none; 6 as ISIC winners)
    detail_side: int | None = None  # training images' detail level (shorter side, px); None: measured from the data
    isic2017: str | None = None  # an ISIC 2017 folder whose train split is trained on beside HAM10000
    monitor_metadata: str = "patients"  # validation for checkpoints with the patients' records or all "unknown"
    split_file: str = str(data.SPLIT_FILE)
    seed: int = 1
    verbose: int | None = None  # Keras verbosity; default: bar on a terminal, one line per epoch otherwise


class EpochEta:
    """Prints one line per epoch with its duration and the time left at that pace."""

    def __init__(self, total_epochs: int):
        import keras

        class _Callback(keras.callbacks.Callback):
            def on_epoch_begin(cb, epoch, logs=None):
                cb.started = time.time()

            def on_epoch_end(cb, epoch, logs=None):
                took = time.time() - cb.started
                left = (total_epochs - epoch - 1) * took
                shown = " ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items() if isinstance(v, (int, float)))
                print(f"epoch {epoch + 1}/{total_epochs} took {took:.0f}s, ETA {left / 60:.0f} min | {shown}", flush=True)

        self.callback = _Callback()


def _sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _best_so_far(history_file: Path) -> float | None:
    if not history_file.is_file():
        return None
    with history_file.open() as f:
        values = [float(r["val_balanced_accuracy"]) for r in csv.DictReader(f) if r.get("val_balanced_accuracy")]
    return max(values) if values else None


def train(config: TrainConfig) -> ModelBundle:
    if config.zero_head and config.warm_start:
        raise ValueError("zero_head has no effect with warm_start: the warm start's weights replace the zeroed "
                         "classifier")
    import keras

    from .distillation import Distiller
    from .losses import BalancedAccuracy, WeightedCategoricalCrossentropy, class_weights
    from .models import build_model, zero_classifier

    keras.utils.set_random_seed(config.seed)
    spec = get_architecture(config.backbone)
    size = int(config.image_size or spec.input_size)
    out = Path(config.out)
    work = out / "training"
    work.mkdir(parents=True, exist_ok=True)

    table = data.read_ham10000(config.data)
    sources = {"ham10000": data.split_table(table, "train", config.split_file)}
    if config.isic2017:
        isic = data.read_isic2017(config.isic2017)
        sources["isic2017"] = isic[isic["split"] == "train"].reset_index(drop=True)
    train_rows = pd.concat(list(sources.values()), ignore_index=True)
    val_rows = data.split_table(table, "val", config.split_file)
    detail_side = config.detail_side or data.detail_level(train_rows["path"])
    started = time.time()
    teacher = ModelBundle.open(config.teacher).load_network() if config.teacher else None
    # A larger teacher gets the training images at its own size; the student sees them resized down.
    train_size = max(size, int(teacher.input_shape[0][1])) if teacher is not None else size
    x_train = data.load_images(train_rows["path"], train_size, detail_side)
    x_val = data.load_images(val_rows["path"], size, detail_side)
    print(f"loaded {len(x_train)} train images at {train_size}px / {len(x_val)} val at {size}px "
          f"(detail level {detail_side}px) in {time.time() - started:.0f}s", flush=True)
    y_train, y_val = data.labels(train_rows), data.labels(val_rows)
    m_train, m_val = data.encode_metadata(train_rows), data.encode_metadata(val_rows)
    if config.monitor_metadata == "unknown":
        m_monitor = np.repeat(UNKNOWN_PATIENT.encode()[None], len(y_val), axis=0)
    elif config.monitor_metadata == "patients":
        m_monitor = m_val
    else:
        raise ValueError(f"monitor_metadata must be patients or unknown, not {config.monitor_metadata!r}")
    weights = class_weights(y_train, len(CLASSES))

    train_ds = data.make_dataset(x_train, m_train, y_train, config.batch_size, True, config.blank_probability,
                                 config.seed, config.mixup_alpha, config.augmentation)
    val_ds = data.make_dataset(x_val, m_monitor, y_val, config.batch_size, False)

    student = build_model(spec.name, size, config.init, config.preprocessing, config.meta_units, config.heads,
                          bn_momentum=config.bn_momentum, colour_constancy=config.colour_constancy or None)
    if config.zero_head:
        zero_classifier(student)
    if config.warm_start:
        student.set_weights(ModelBundle.open(config.warm_start).load_network().get_weights())
    hard_loss = WeightedCategoricalCrossentropy(weights, config.label_smoothing)
    learning_rate = config.learning_rate
    if config.lr_schedule == "cosine":
        steps = config.epochs * math.ceil(len(y_train) / config.batch_size)
        learning_rate = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps)
    elif config.lr_schedule != "plateau":
        raise ValueError(f"lr_schedule must be plateau or cosine, not {config.lr_schedule!r}")
    if teacher is not None:
        model = Distiller(student, teacher, hard_loss, config.distill_weight, config.distill_temperature)
        loss = None  # Distiller.compute_loss
    else:
        model, loss = student, hard_loss
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate, epsilon=config.adam_epsilon),
        loss=loss,
        metrics=["accuracy", BalancedAccuracy(len(CLASSES))],
    )
    history_file = work / "history.csv"
    best_file = work / "best.weights.h5"
    callbacks = [
        keras.callbacks.BackupAndRestore(str(work / "backup")),  # resume after an interruption
        keras.callbacks.ModelCheckpoint(
            str(best_file), monitor="val_balanced_accuracy", mode="max", save_best_only=True,
            save_weights_only=True, initial_value_threshold=_best_so_far(history_file),
        ),
        *([keras.callbacks.ReduceLROnPlateau(
            monitor="val_balanced_accuracy", mode="max", factor=0.2, patience=config.lr_patience,
            min_lr=config.min_learning_rate,
        )] if config.lr_schedule == "plateau" else []),
        keras.callbacks.EarlyStopping(monitor="val_balanced_accuracy", mode="max", patience=config.patience),
        keras.callbacks.CSVLogger(str(history_file), append=True),
        EpochEta(config.epochs).callback,
    ]
    verbose = config.verbose if config.verbose is not None else (1 if sys.stdout.isatty() else 0)
    model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, callbacks=callbacks, verbose=verbose)

    model.load_weights(str(best_file))
    served = keras.Model.from_config(student.get_config())  # uncompiled: the bundle carries no optimizer state
    served.set_weights(student.get_weights())
    served.save(out / "model.keras")
    epochs_run = len(write_history(history_file, out / "history.csv"))

    val_probabilities = served.predict({"image": x_val.astype(np.float32), "metadata": m_val}, batch_size=64, verbose=0)
    temperature = fit_temperature(val_probabilities, y_val)
    best_epoch, best_value = _best_epoch(out / "history.csv")
    card = {
        **network_card(spec, size, config.preprocessing or spec.preprocessing, detail_side, config.colour_constancy,
                       int(served.count_params())),
        "augmentation": config.augmentation,
        **calibration_card(val_probabilities, y_val, temperature),
        "data_source": {"sets": {name: {"folder": Path(folder).name, "train_images": int(len(rows))}
                                 for (name, rows), folder in zip(sources.items(), (config.data, config.isic2017))},
                        "train_images": int(len(y_train)), "val_images": int(len(y_val)), "val_set": "ham10000"},
        "split_file": Path(config.split_file).name,
        "split_sha256": _sha256(config.split_file),
        "training": {**asdict(config), "split_file": Path(config.split_file).name, "image_size": size, "class_weights": [float(w) for w in weights],
                     "best_epoch": best_epoch, "best_val_balanced_accuracy": best_value,
                     "epochs_run": epochs_run},
        "lineage": lineage(config.warm_start, config.teacher),
        "software": software_versions(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(out / "card.json", card)
    print(f"bundle written to {out} (best epoch {best_epoch}, val balanced accuracy {best_value:.4f}, T={temperature:.3f})")
    return ModelBundle.open(out)


def network_card(spec, size: int, preprocessing: str, detail_side: int, colour_constancy: float, parameters: int) -> dict:
    """The card fields that say what a trained single network is and how it is fed."""
    return {
        "card_version": CARD_VERSION,
        "architecture": spec.name,
        "family": spec.family,
        "attention_module": spec.attach_reason or "ARL blocks (Zhang et al. 2019)",
        "attach_layer": spec.attach_layer,
        "input_size": size,
        "preprocessing": preprocessing,
        "input": f"RGB, 0..255, brought down to detail_side (shorter side, antialiased, Gaussian sigma {DETAIL_SOFTENING} px) "
                 "when sharper, then resized (bilinear, aspect not kept) to input_size x input_size",
        "detail_side": detail_side,
        "colour_constancy": ({"method": "Shades of Gray (Finlayson & Trezzi 2004), layer colour_constancy",
                              "power": colour_constancy} if colour_constancy else None),
        "classes": list(CLASSES),
        "metadata": {"layout": "age/100, age-missing, sex one-hot, site one-hot", "age_scale": AGE_SCALE,
                     "sexes": list(SEXES), "sites": list(SITES)},
        "layers": {"attention": "attention", "gradcam": "features", "output": "probabilities"},
        "parameters": parameters,
    }


def calibration_card(val_probabilities, y_val, temperature: float) -> dict:
    """The temperature fitted on validation and what it did to the calibration error there."""
    return {
        "temperature": temperature,
        "calibration": {
            "fitted_on": "val",
            "val_ece_before": expected_calibration_error(val_probabilities, y_val),
            "val_ece_after": expected_calibration_error(apply_temperature(val_probabilities, temperature), y_val),
        },
    }


def lineage(warm_start: str | None, teacher: str | None) -> dict:
    """What a bundle was built from, copied from those bundles' cards (their folders may change later)."""
    def summary(path):
        if not path:
            return None
        card = ModelBundle.open(path).card
        return {"bundle": Path(path).name, "architecture": card["architecture"], "input_size": card["input_size"],
                "date": card.get("date"), "training": card.get("training"), "lineage": card.get("lineage")}

    return {"warm_start": summary(warm_start), "teacher": summary(teacher)}


def _read_rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def epoch_rows(path: Path) -> list[dict]:
    """A Keras CSVLogger file as one row per epoch, in order (a resumed run may have logged an epoch twice:
    the last is kept); none when the file does not exist yet."""
    if not path.is_file():
        return []
    rows = {int(r["epoch"]): r for r in _read_rows(path)}
    return [rows[k] for k in sorted(rows)]


HISTORY_FIELDS = ["epoch", "loss", "val_loss", "accuracy", "val_accuracy", "balanced_accuracy",
                  "val_balanced_accuracy", "learning_rate"]


def write_history(source: Path, target: Path, fields=HISTORY_FIELDS) -> list[dict]:
    """The bundle's history.csv: one row per epoch, epochs counted from 1; returns the rows."""
    rows = epoch_rows(source)
    with target.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "epoch": int(row["epoch"]) + 1})
    return rows


def _best_epoch(history: Path) -> tuple[int, float]:
    rows = _read_rows(history)
    best = max(rows, key=lambda r: float(r["val_balanced_accuracy"]))
    value = float(best["val_balanced_accuracy"])
    return int(best["epoch"]), (value if math.isfinite(value) else float("nan"))
