"""A model bundle: one directory with everything needed to serve and judge a trained model.

    model.keras        weights and architecture, no optimizer state
    card.json          what the model is, how it was trained, how to feed it, its temperature
    history.csv        per-epoch training and validation curves
    metrics_val.json   metrics on the validation split (written by `evaluate`)
    metrics_test.json  metrics on the held-out test split (written by `evaluate`)
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from .errors import BundleError
from .vocab import CLASSES

CARD_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclass(frozen=True)
class ModelBundle:
    """A bundle directory on disk; the model itself is loaded lazily by the Classifier."""

    path: Path

    @classmethod
    def open(cls, path) -> "ModelBundle":
        path = Path(path)
        for required in ("model.keras", "card.json"):
            if not (path / required).is_file():
                raise BundleError(f"{path} is not a model bundle: {required} is missing")
        bundle = cls(path)
        if tuple(bundle.card.get("classes", ())) != CLASSES:
            raise BundleError(f"{path}: its classes {bundle.card.get('classes')} are not {list(CLASSES)}")
        return bundle

    @property
    def name(self) -> str:
        return self.path.name

    @cached_property
    def card(self) -> dict:
        return json.loads((self.path / "card.json").read_text())

    @property
    def architecture(self) -> str:
        return self.card["architecture"]

    @property
    def input_size(self) -> int:
        return int(self.card["input_size"])

    @property
    def detail_side(self) -> int | None:
        """Shorter side (px) of the training images' detail level; photos are brought down to it first."""
        side = self.card.get("detail_side")
        return int(side) if side else None

    @property
    def temperature(self) -> float:
        return float(self.card.get("temperature", 1.0))

    @property
    def model_file(self) -> Path:
        return self.path / "model.keras"

    def load_model(self):
        """The bundle's Keras model, uncompiled (bundles carry no optimizer or loss)."""
        import keras  # the package's __init__ has registered the custom layers

        return keras.saving.load_model(self.model_file, compile=False)

    def history(self) -> pd.DataFrame | None:
        file = self.path / "history.csv"
        return pd.read_csv(file) if file.is_file() else None

    def metrics(self, split: str) -> dict | None:
        file = self.path / f"metrics_{split}.json"
        return json.loads(file.read_text()) if file.is_file() else None

    def update_card(self, **fields) -> None:
        """Set top-level card fields, re-reading the file first so that another command's fields survive."""
        card = {**json.loads((self.path / "card.json").read_text()), **fields}
        write_json(self.path / "card.json", card)
        self.__dict__.pop("card", None)


def list_bundles(root=WEIGHTS_DIR) -> list[ModelBundle]:
    """Every valid bundle under ``root`` (a folder of bundle folders), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [ModelBundle.open(p) for p in sorted(root.iterdir()) if (p / "card.json").is_file()]


def software_versions() -> dict:
    import keras
    import numpy
    import sklearn
    import tensorflow

    return {
        "python": platform.python_version(),
        "tensorflow": tensorflow.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
    }


def write_json(path: Path, data) -> None:
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
