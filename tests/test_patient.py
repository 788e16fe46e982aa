import math

import numpy as np
import pytest

from skin_core.errors import InvalidPatient
from skin_core.patient import META_DIM, Patient
from skin_core.vocab import SITES


@pytest.mark.parametrize("age", [None, "", "unknown", float("nan"), "  "])
def test_unknown_age(age):
    assert Patient.from_fields(age=age).age is None


@pytest.mark.parametrize("age", [-1, 121, "abc", "1e9", True, math.inf])
def test_bad_age_is_refused_with_a_message(age):
    with pytest.raises(InvalidPatient, match="Age"):
        Patient.from_fields(age=age)


def test_aliases_and_unknowns():
    p = Patient.from_fields(age="45", sex="F", site="Lower_Extremity")
    assert (p.age, p.sex, p.site) == (45.0, "female", "lower extremity")
    assert Patient.from_fields().is_unknown


@pytest.mark.parametrize("field", ["sex", "site"])
def test_unrecognised_choice_is_refused(field):
    with pytest.raises(InvalidPatient, match="not recognised"):
        Patient.from_fields(**{field: "elbow-ish"})


def test_encoding_layout():
    v = Patient(age=50, sex="male", site="back").encode()
    assert v.shape == (META_DIM,) and v.dtype == np.float32
    assert v[0] == 0.5 and v[1] == 0 and v[2] == 1 and v[2 + 3 + SITES.index("back")] == 1
    unknown = Patient().encode()
    assert unknown[1] == 1 and unknown[4] == 1 and unknown[-1] == 1 and unknown.sum() == 3
