"""The melanoma referral rule: a score and a threshold chosen on validation, stored in the card.

A doctor must hear "melanoma cannot be excluded" whenever the model's melanoma evidence crosses a
threshold chosen for high sensitivity, whatever the top class is: the argmax alone named only a
fraction of melanomas on other clinics' photos although their ranking was fair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .vocab import CLASSES, MALIGNANT

TARGET_SENSITIVITY = 0.95
REFERRAL_MESSAGE = "Refer: melanoma cannot be excluded"
SCORES = {
    "melanoma": "calibrated melanoma probability p(mel)",
    "malignant": "calibrated malignant sum p(mel) + p(bcc) + p(akiec)",
}


def score(probabilities: np.ndarray, kind: str) -> np.ndarray:
    """The referral score of each row of (n, 7) probabilities (or of one (7,) vector)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if kind == "melanoma":
        return p[..., CLASSES.index("mel")]
    if kind == "malignant":
        return p[..., [CLASSES.index(c) for c in MALIGNANT]].sum(axis=-1)
    raise ValueError(f"Unknown referral score {kind!r}; expected one of {sorted(SCORES)}")


def threshold_for_sensitivity(scores: np.ndarray, positive: np.ndarray, sensitivity: float) -> float:
    """The largest threshold t with share(score >= t among positives) >= ``sensitivity``."""
    positives = np.sort(np.asarray(scores)[np.asarray(positive, bool)])
    if not len(positives):
        raise ValueError("No positive cases to choose a referral threshold on")
    allowed_misses = int(np.floor((1.0 - sensitivity) * len(positives) + 1e-9))
    return float(positives[allowed_misses])


def sensitivity_specificity(scores: np.ndarray, positive: np.ndarray, threshold: float) -> dict:
    positive = np.asarray(positive, bool)
    refer = np.asarray(scores) >= threshold
    return {
        "sensitivity": float(refer[positive].mean()) if positive.any() else None,
        "specificity": float((~refer[~positive]).mean()) if (~positive).any() else None,
        "referred": float(refer.mean()),
        "positives": int(positive.sum()),
        "negatives": int((~positive).sum()),
    }


@dataclass(frozen=True)
class ReferralRule:
    """Refer when ``score(probabilities, kind) >= threshold``."""

    kind: str
    threshold: float

    @classmethod
    def from_card(cls, card: dict) -> "ReferralRule | None":
        referral = card.get("referral")
        return None if not referral else cls(referral["score"], float(referral["threshold"]))

    def score(self, probabilities: np.ndarray) -> np.ndarray:
        return score(probabilities, self.kind)

    def refers(self, probabilities: np.ndarray) -> np.ndarray:
        return self.score(probabilities) >= self.threshold

    def describe(self) -> str:
        return f"{SCORES[self.kind]} >= {self.threshold:.3f}"

    def as_card(self) -> dict:
        return {"score": self.kind, "threshold": self.threshold}
