"""The training pipeline's input transforms: metadata blanking, mixup and the augmentations."""

import numpy as np
import pytest
import tensorflow as tf

from skin_core import data
from skin_core.patient import Patient, UNKNOWN_PATIENT
from skin_core.vocab import CLASSES


def _metadata(n):
    patients = [Patient.from_fields(20 + 5 * (i % 20), "female" if i % 2 else "male", "back") for i in range(n)]
    return np.stack([p.encode() for p in patients]).astype("float32")


def test_blanking_all_or_nothing():
    meta = _metadata(6)
    np.testing.assert_array_equal(data.blank_metadata(tf.constant(meta), 0.0).numpy(), meta)
    everything_unknown = np.tile(UNKNOWN_PATIENT.encode(), (6, 1))
    np.testing.assert_array_equal(data.blank_metadata(tf.constant(meta), 1.0).numpy(), everything_unknown)


def test_mixup_blends_image_metadata_and_label_with_one_lambda():
    n = 16
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (n, 8, 8, 3)).astype("float32")
    meta = _metadata(n)
    labels = np.eye(len(CLASSES), dtype="float32")[rng.integers(0, len(CLASSES), n)]
    mixed_images, mixed_meta, mixed_labels = (t.numpy() for t in data.mixup(images, meta, labels, 0.4, seed=1))
    np.testing.assert_allclose(mixed_labels.sum(axis=1), 1.0, atol=1e-6)
    changed = 0
    for i in range(n):
        assert any(_is_blend(i, j, (images, meta, labels), (mixed_images, mixed_meta, mixed_labels))
                   for j in range(n)), f"example {i} is not one blend of two examples"
        changed += not np.allclose(mixed_images[i], images[i])
    assert changed > n // 2  # mixup does mix


def _is_blend(i, j, originals, mixed):
    """mixed[i] == lam * x[i] + (1 - lam) * x[j] for images, metadata and labels with one lambda."""
    x, m = originals[0], mixed[0]
    d = (x[i] - x[j]).ravel()
    lam = 1.0 if i == j else float(np.dot(d, (m[i] - x[j]).ravel()) / np.dot(d, d))
    return 0 <= lam <= 1 and all(np.allclose(b[i], lam * a[i] + (1 - lam) * a[j], atol=1e-3 * max(1, a.max()))
                                 for a, b in zip(originals, mixed))


def test_training_batches_with_mixup_have_soft_labels():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (12, 16, 16, 3)).astype("uint8")
    y = np.arange(12) % len(CLASSES)
    ds = data.make_dataset(images, _metadata(12), y, 12, True, 0.1, seed=2, mixup_alpha=0.4)
    inputs, labels = next(iter(ds))
    assert inputs["image"].shape == (12, 16, 16, 3) and inputs["metadata"].shape == (12, _metadata(1).shape[1])
    labels = labels.numpy()
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-6)
    assert (labels.max(axis=1) < 1 - 1e-3).any()
    assert len(np.unique(labels.max(axis=1).round(3))) > 3, "lambda must vary (Beta), not be one fixed value"


def test_training_batches_blank_whole_records():
    n = 400
    meta = _metadata(n)
    images = np.zeros((n, 8, 8, 3), "uint8")
    ds = data.make_dataset(images, meta, np.arange(n) % len(CLASSES), n, True, 0.5, seed=2)
    seen = dict(zip(map(bytes, meta), meta))  # shuffled: compare each row with its own original set
    blanked = next(iter(ds))[0]["metadata"].numpy()
    unknown = UNKNOWN_PATIENT.encode()
    is_unknown = np.all(np.isclose(blanked, unknown), axis=1)
    untouched = np.array([bytes(row) in seen for row in blanked])
    assert (is_unknown | untouched).all(), "a record is either kept or set unknown as a whole"
    assert 0.4 < is_unknown.mean() < 0.6


def test_vignette_darkens_corners_of_about_its_share_of_images():
    augmentation = data.RobustAugmentation(seed=3, vignette=True)
    falloff = augmentation.vignette_falloff(400, tf.constant([30, 40])).numpy()[..., 0]
    assert falloff.shape == (400, 30, 40) and falloff.min() >= 1 - data.RobustAugmentation.VIGNETTE_DEPTH[1] - 1e-6
    vignetted = falloff.min(axis=(1, 2)) < 1
    assert abs(vignetted.mean() - data.RobustAugmentation.P_VIGNETTE) < 0.08
    corners = falloff[vignetted][:, [0, 0, -1, -1], [0, -1, 0, -1]].mean(axis=1)
    assert (falloff[vignetted][:, 15, 20] > corners + 0.1).all(), "darker towards the corners"
    np.testing.assert_array_equal(falloff[~vignetted], 1.0)


@pytest.mark.parametrize("augmentation", list(data.AUGMENTATIONS))
def test_augmented_batches_stay_in_range(augmentation):
    images = np.full((8, 32, 32, 3), 200, "uint8")
    ds = data.make_dataset(images, _metadata(8), np.arange(8) % len(CLASSES), 8, True, seed=4,
                           augmentation=augmentation)
    batch = next(iter(ds))[0]["image"].numpy()
    assert batch.shape == (8, 32, 32, 3) and batch.min() >= 0 and batch.max() <= 255.001


def test_paper_photometric_changes_colour_where_the_paper_recipe_only_moves_pixels():
    images = np.full((16, 32, 32, 3), 200, "uint8")  # uniform: geometry alone cannot change a value

    def batch(augmentation):
        ds = data.make_dataset(images, _metadata(16), np.arange(16) % len(CLASSES), 16, True, seed=5,
                               augmentation=augmentation)
        return next(iter(ds))[0]["image"].numpy()

    np.testing.assert_allclose(batch("paper"), 200, atol=1e-3)
    means = batch("paper-photometric").mean(axis=(1, 2, 3))
    assert np.abs(means - 200).max() > 5 and means.std() > 1, "brightness, gamma or vignette vary per image"
