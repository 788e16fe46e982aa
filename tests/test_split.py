"""The committed split: lesion-grouped, every class in every split, about 70 / 15 / 15."""

import pandas as pd
import pytest
from conftest import HAM10000

from skin_core import data
from skin_core.vocab import CLASSES


@pytest.fixture(scope="module")
def split():
    return data.read_split()


def test_no_lesion_in_two_splits(split):
    assert split.groupby("lesion_id")["split"].nunique().max() == 1


def test_every_class_in_every_split(split):
    counts = split.groupby(["split", "dx"]).size().unstack(fill_value=0)
    assert set(counts.index) == {"train", "val", "test"}
    assert (counts[list(CLASSES)] > 0).all().all()


def test_fractions_of_lesions(split):
    shares = split.drop_duplicates("lesion_id")["split"].value_counts(normalize=True)
    assert abs(shares["train"] - 0.70) < 0.01 and abs(shares["val"] - 0.15) < 0.01 and abs(shares["test"] - 0.15) < 0.01


@pytest.mark.skipif(not (HAM10000 / data.METADATA_FILE).is_file(), reason="HAM10000 not present")
def test_split_matches_the_real_metadata(split):
    real = pd.read_csv(HAM10000 / data.METADATA_FILE)
    joined = real.merge(split, on="image_id", suffixes=("", "_split"))
    assert len(joined) == len(real) == len(split)
    assert (joined["lesion_id"] == joined["lesion_id_split"]).all()
    assert (joined["dx"] == joined["dx_split"]).all()
    assert joined.groupby("lesion_id")["split"].nunique().max() == 1


def test_split_is_reproducible_from_the_seed(split):
    if not (HAM10000 / data.METADATA_FILE).is_file():
        pytest.skip("HAM10000 not present")
    again = data.make_split(data.read_ham10000(HAM10000))
    pd.testing.assert_frame_equal(again.reset_index(drop=True), split.reset_index(drop=True), check_dtype=False)
