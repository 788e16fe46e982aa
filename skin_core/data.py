"""HAM10000 on disk -> arrays -> tf.data pipelines.

The reader accepts this project's reduced copy (one ``images/`` folder) and the original release
(``HAM10000_images_part_1`` and ``_part_2``) alike: it indexes every JPEG under the data folder by
its image id and joins ``HAM10000_metadata.csv``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from .images import load_image, resize_for_model
from .patient import UNKNOWN_PATIENT, Patient
from .vocab import CLASSES

METADATA_FILE = "HAM10000_metadata.csv"
SPLIT_FILE = Path(__file__).parent / "splits" / "ham10000_lesion_split.csv"
SPLIT_SEED = 20190101
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)


def read_ham10000(data_dir) -> pd.DataFrame:
    """The metadata table with a ``path`` column; rows whose image is missing are an error."""
    data_dir = Path(data_dir)
    csv = data_dir / METADATA_FILE
    if not csv.is_file():
        raise FileNotFoundError(f"{csv} not found: --data must be a HAM10000 folder with {METADATA_FILE}")
    table = pd.read_csv(csv)
    paths = {p.stem: p for p in data_dir.rglob("*.jpg")}
    table["path"] = table["image_id"].map(paths)
    missing = table["path"].isna()
    if missing.any():
        raise FileNotFoundError(f"{missing.sum()} images listed in {csv} are missing, e.g. {table.image_id[missing].iloc[0]}")
    unknown = set(table["dx"]) - set(CLASSES)
    if unknown:
        raise ValueError(f"Unexpected diagnoses in {csv}: {sorted(unknown)}")
    return table


def make_split(table: pd.DataFrame, seed: int = SPLIT_SEED, fractions=SPLIT_FRACTIONS) -> pd.DataFrame:
    """Assign whole lesions to train / val / test, stratified by diagnosis (one row per image)."""
    from sklearn.model_selection import train_test_split

    lesions = table.groupby("lesion_id")["dx"].first()
    _, val_frac, test_frac = fractions
    rest, test = train_test_split(lesions.index, test_size=test_frac, stratify=lesions, random_state=seed)
    train, val = train_test_split(
        rest, test_size=val_frac / (1 - test_frac), stratify=lesions[rest], random_state=seed
    )
    split_of = {**{l: "train" for l in train}, **{l: "val" for l in val}, **{l: "test" for l in test}}
    out = table[["image_id", "lesion_id", "dx"]].copy()
    out["split"] = out["lesion_id"].map(split_of)
    return out.sort_values("image_id").reset_index(drop=True)


def read_split(path=SPLIT_FILE) -> pd.DataFrame:
    return pd.read_csv(path)


def split_table(table: pd.DataFrame, split: str, split_file=SPLIT_FILE) -> pd.DataFrame:
    """Rows of the HAM10000 table that the committed split puts in ``split``."""
    assignment = read_split(split_file)[["image_id", "split"]]
    joined = table.merge(assignment, on="image_id", how="inner")
    if len(joined) != len(table):
        raise ValueError(f"The split file {split_file} does not cover all {len(table)} images of this data set")
    return joined[joined["split"] == split].reset_index(drop=True)


def patients(table: pd.DataFrame) -> list[Patient]:
    return [Patient(age=a, sex=s, site=l) for a, s, l in zip(table["age"], table["sex"], table["localization"])]


def encode_metadata(table: pd.DataFrame) -> np.ndarray:
    return np.stack([p.encode() for p in patients(table)])


def labels(table: pd.DataFrame) -> np.ndarray:
    """Integer class indices in CLASSES order."""
    return table["dx"].map(CLASSES.index).to_numpy(dtype=np.int64)


def load_images(paths, size: int, detail_side: int | None = None, workers: int = 4) -> np.ndarray:
    """Decode and resize every image the way the served path does, as uint8 (n, size, size, 3)."""
    def one(path):
        return resize_for_model(load_image(path), size, detail_side).round().astype(np.uint8)

    with ThreadPoolExecutor(workers) as pool:
        return np.stack(list(pool.map(one, paths)))


def blank_metadata(metadata, probability: float, seed=None):
    """Set a whole record (age, sex and site together) to unknown with ``probability`` (tf, batched).

    Teaches the model the no-metadata case that external test sets and many uploads present.
    """
    import tensorflow as tf

    unknown = tf.constant(UNKNOWN_PATIENT.encode(), dtype=metadata.dtype)
    blank = tf.random.uniform((tf.shape(metadata)[0], 1), seed=seed) < probability
    return tf.where(blank, unknown[None, :], metadata)


def augmenter(seed=None):
    """The paper's augmentation: rotation, width/height shift, zoom, horizontal and vertical flips."""
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
            keras.layers.RandomRotation(0.5, fill_mode="reflect", seed=seed),
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed),
            keras.layers.RandomZoom(0.1, fill_mode="reflect", seed=seed),
        ],
        name="augment",
    )


def mixup(image, metadata, label, alpha: float, seed=None):
    """Mixup (Zhang et al. 2018): each example blended with another of the batch, lambda ~ Beta(alpha, alpha).

    Images, metadata and one-hot labels are blended with the same lambda, so a distillation teacher
    sees exactly the input the student learns from.
    """
    import tensorflow as tf

    n = tf.shape(image)[0]
    # Distinct op seeds: in a traced graph, two random ops with one seed draw the same numbers.
    seeds = [None] * 3 if seed is None else [seed, seed + 1, seed + 2]
    a = tf.random.gamma((n,), alpha, seed=seeds[0])
    b = tf.random.gamma((n,), alpha, seed=seeds[1])
    lam = a / (a + b)
    other = tf.random.shuffle(tf.range(n), seed=seeds[2])

    def blend(x):
        w = tf.reshape(tf.cast(lam, x.dtype), [-1] + [1] * (len(x.shape) - 1))
        return w * x + (1.0 - w) * tf.gather(x, other)

    return blend(image), blend(metadata), blend(label)


def make_dataset(images, metadata, y, batch_size: int, training: bool, blank_probability: float = 0.1,
                 seed: int | None = None, mixup_alpha: float = 0.0):
    """A tf.data pipeline of ``({"image", "metadata"}, one-hot label)`` batches.

    Training shuffles, augments images, blanks metadata fields and, with ``mixup_alpha`` > 0,
    applies mixup; evaluation does none of these.
    """
    import tensorflow as tf

    onehot = np.eye(len(CLASSES), dtype=np.float32)[y]
    ds = tf.data.Dataset.from_tensor_slices((images, metadata.astype(np.float32), onehot))
    if training:
        ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training:
        augment = augmenter(seed)

        def train_map(image, meta, label):
            image = augment(tf.cast(image, tf.float32), training=True)
            meta = blank_metadata(meta, blank_probability, seed)
            if mixup_alpha > 0:
                image, meta, label = mixup(image, meta, label, mixup_alpha, seed)
            return {"image": image, "metadata": meta}, label

        ds = ds.map(train_map, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda image, meta, label: ({"image": tf.cast(image, tf.float32), "metadata": meta}, label))
    return ds.prefetch(tf.data.AUTOTUNE)
