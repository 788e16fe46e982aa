"""Patient metadata: validation and the fixed-length encoding the models' metadata branch reads.

Rules (the same for the API, the command line and the app):
- every field may be unknown: ``None``, ``""``, ``"unknown"`` (any case) or NaN age all mean unknown;
- age must be a number from 0 to 120 (years); anything else is refused with a message;
- sex must be male / female (``m`` / ``f`` accepted); site must be one of ``vocab.SITES``;
  an unrecognised value is refused with a message listing the allowed ones, never guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InvalidPatient
from .vocab import SEXES, SITES, UNKNOWN

AGE_SCALE = 100.0
MAX_AGE = 120.0

# Layout of the encoded vector: [age / 100, age missing, sex one-hot (3), site one-hot (15)].
AGE_SLICE = slice(0, 2)
SEX_SLICE = slice(2, 2 + len(SEXES))
SITE_SLICE = slice(SEX_SLICE.stop, SEX_SLICE.stop + len(SITES))
META_DIM = SITE_SLICE.stop

_SEX_ALIASES = {"m": "male", "f": "female", "man": "male", "woman": "female"}


def _is_unknown(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in ("", UNKNOWN, "nan", "none")


def _parse_age(value) -> float | None:
    if _is_unknown(value):
        return None
    if isinstance(value, bool):
        raise InvalidPatient("Age must be a number of years from 0 to 120, or unknown.")
    try:
        age = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise InvalidPatient(f"Age '{value}' is not a number. Enter years from 0 to 120, or leave it unknown.") from None
    if math.isnan(age):
        return None
    if not 0 <= age <= MAX_AGE:
        raise InvalidPatient(f"Age {age:g} is outside 0 to 120 years. Correct it, or leave it unknown.")
    return age


def _parse_choice(value, allowed: tuple[str, ...], field: str, aliases: dict | None = None) -> str:
    if _is_unknown(value):
        return UNKNOWN
    text = str(value).strip().lower().replace("_", " ")
    text = (aliases or {}).get(text, text)
    if text not in allowed:
        raise InvalidPatient(f"{field} '{value}' is not recognised. Choose one of: {', '.join(allowed)}.")
    return text


@dataclass(frozen=True)
class Patient:
    """What the doctor knows about the patient; every field may be unknown."""

    age: float | None = None
    sex: str = UNKNOWN
    site: str = UNKNOWN

    @classmethod
    def from_fields(cls, age=None, sex=None, site=None) -> "Patient":
        """Validate raw user input (strings, numbers, None) into a Patient, or raise InvalidPatient."""
        return cls(
            age=_parse_age(age),
            sex=_parse_choice(sex, SEXES, "Sex", _SEX_ALIASES),
            site=_parse_choice(site, SITES, "Body site"),
        )

    def __post_init__(self):
        # Direct construction gets the same checks as from_fields.
        object.__setattr__(self, "age", _parse_age(self.age))
        object.__setattr__(self, "sex", _parse_choice(self.sex, SEXES, "Sex", _SEX_ALIASES))
        object.__setattr__(self, "site", _parse_choice(self.site, SITES, "Body site"))

    @property
    def is_unknown(self) -> bool:
        return self.age is None and self.sex == UNKNOWN and self.site == UNKNOWN

    def encode(self) -> np.ndarray:
        """The float32 vector of length META_DIM that the metadata branch reads."""
        vector = np.zeros(META_DIM, dtype=np.float32)
        if self.age is None:
            vector[AGE_SLICE.start + 1] = 1.0
        else:
            vector[AGE_SLICE.start] = self.age / AGE_SCALE
        vector[SEX_SLICE.start + SEXES.index(self.sex)] = 1.0
        vector[SITE_SLICE.start + SITES.index(self.site)] = 1.0
        return vector


UNKNOWN_PATIENT = Patient()
