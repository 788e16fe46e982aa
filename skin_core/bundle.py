"""A model bundle: one directory with everything needed to serve and judge a trained model.

    model.keras        weights and architecture, no optimizer state
    card.json          what the model is, how it was trained, how to feed it, its temperature
    history.csv        per-epoch training and validation curves
    metrics_val.json   metrics on the validation split (written by `evaluate`)
    metrics_test.json  metrics on the held-out test split (written by `evaluate`)

An ensemble bundle (`python -m skin_core ensemble`) has no model.keras: its card names its ``members``,
bundle folders beside it, and the app serves the mean of their calibrated probabilities.
"""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from .errors import BundleError
from .images import VIEWS
from .vocab import CLASSES

CARD_VERSION = 1
log = logging.getLogger(__name__)
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclass(frozen=True)
class ModelBundle:
    """A bundle directory on disk; the model itself is loaded lazily by the Classifier."""

    path: Path

    @classmethod
    def open(cls, path) -> "ModelBundle":
        path = Path(path)
        if not (path / "card.json").is_file():
            raise BundleError(f"{path} is not a model bundle: card.json is missing")
        bundle = cls(path)
        try:
            missing = [key for key in ("architecture", "input_size", "classes") if key not in bundle.card]
        except ValueError as error:  # json.JSONDecodeError
            raise BundleError(f"{path}: card.json is not valid JSON ({error})") from error
        if missing:
            raise BundleError(f"{path}: card.json lacks {', '.join(missing)}")
        if bundle.card.get("test_time_augmentation_views", 1) not in range(1, VIEWS + 1):
            raise BundleError(f"{path}: test_time_augmentation_views must be 1 to {VIEWS}")
        if not bundle.is_ensemble and not bundle.model_file.is_file():
            raise BundleError(f"{path} is not a model bundle: model.keras is missing")
        if tuple(bundle.card.get("classes", ())) != CLASSES:
            raise BundleError(f"{path}: its classes {bundle.card.get('classes')} are not {list(CLASSES)}")
        for member in bundle.members:
            if (member.input_size, member.detail_side) != (bundle.input_size, bundle.detail_side):
                raise BundleError(f"{path}: member {member.name} reads {member.input_size}px at detail "
                                  f"{member.detail_side}, the ensemble {bundle.input_size}px at {bundle.detail_side}")
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
    def views(self) -> int:
        """How many flips and turns of each photo its probabilities are averaged over (``images.dihedral``;
        1: the photo alone). Maps and the not-a-dermoscopy check always read the photo as given."""
        return int(self.card.get("test_time_augmentation_views", 1))

    @property
    def is_ensemble(self) -> bool:
        return "members" in self.card

    @cached_property
    def members(self) -> tuple["ModelBundle", ...]:
        """An ensemble's member bundles (folders beside it); () for a single model."""
        try:
            return tuple(ModelBundle.open(self.path.parent / name) for name in self.card.get("members", ()))
        except BundleError as error:
            raise BundleError(f"{self.path}: a member of this ensemble is missing or damaged ({error})") from error

    @property
    def model_file(self) -> Path:
        return self.path / "model.keras"

    @property
    def size_mb(self) -> float:
        """Megabytes of model files to serve it (an ensemble: its members')."""
        files = [m.model_file for m in self.members] if self.is_ensemble else [self.model_file]
        return sum(f.stat().st_size for f in files) / 1e6

    def load_network(self):
        """The trained network, uncompiled (bundles carry no optimizer or loss); for an ensemble, one network
        averaging its members' calibrated probabilities (``models.ensemble_network``)."""
        import keras  # the package's __init__ has registered the custom layers

        if self.is_ensemble:
            from .models import ensemble_network

            return ensemble_network([m.load_network() for m in self.members], [m.temperature for m in self.members])
        return keras.saving.load_model(self.model_file, compile=False)

    def load_model(self):
        """What the bundle serves, as one Keras model (image, metadata) -> probabilities before its temperature:
        the network, averaged over the card's test-time views (``models.view_mean``) when it has them."""
        from .models import view_mean

        network = self.load_network()
        return view_mean(network, self.views) if self.views > 1 else network

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
    """Every valid bundle under ``root`` (a folder of bundle folders), sorted by name.

    A folder that cannot be opened (half-copied, a missing member, an unreadable card) is logged and left
    out, so one damaged bundle does not take the app down for every doctor."""
    root = Path(root)
    if not root.is_dir():
        return []
    bundles = []
    for folder in sorted(root.iterdir()):
        if not (folder / "card.json").is_file():
            continue
        try:
            bundles.append(ModelBundle.open(folder))
        except (BundleError, OSError) as error:
            log.error("Model bundle %s left out: %s", folder, error)
    return bundles


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
