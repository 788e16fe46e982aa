"""Labelled image sets on disk -> arrays -> tf.data pipelines.

One small reader per set, each returning the same table shape (image_id, dx, path, age, sex,
localization, and split where the set defines one):
- ``read_ham10000``: this project's reduced copy (one ``images/`` folder) and the original release
  (``HAM10000_images_part_1`` and ``_part_2``) alike; joins ``HAM10000_metadata.csv``.
- ``read_isic2017``: ISIC 2017 challenge images; its ``train`` and ``val`` may be trained on,
  ``test`` is an external test only (see its PROVENANCE.md).
- ``read_derm7pt``: the Derm7pt atlas; an external test only, never trained or tuned on.
The external sets carry no patient record: every field is unknown.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .images import image_size, load_image, resize_for_model
from .patient import UNKNOWN_PATIENT, Patient
from .vocab import CLASSES, UNKNOWN

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


def _read_labels_folder(data_dir, description: str, allowed: set[str]) -> pd.DataFrame:
    """A ``labels.csv`` (image_id, dx, ...) joined to ``images/<image_id>.jpg``, with an unknown patient."""
    data_dir = Path(data_dir)
    csv = data_dir / "labels.csv"
    if not csv.is_file():
        raise FileNotFoundError(f"{csv} not found: the {description} folder must hold labels.csv and images/")
    table = pd.read_csv(csv)
    table["path"] = [data_dir / "images" / f"{i}.jpg" for i in table["image_id"]]
    missing = ~table["path"].map(Path.is_file)
    if missing.any():
        raise FileNotFoundError(f"{missing.sum()} images listed in {csv} are missing, e.g. {table.image_id[missing].iloc[0]}")
    unknown = set(table["dx"]) - allowed
    if unknown:
        raise ValueError(f"Unexpected diagnoses in {csv}: {sorted(unknown)}")
    table["age"], table["sex"], table["localization"] = np.nan, UNKNOWN, UNKNOWN
    return table


def read_isic2017(data_dir) -> pd.DataFrame:
    """ISIC 2017 (nv, mel and seborrheic keratosis as bkl) with its own train / val / test column."""
    return _read_labels_folder(data_dir, "ISIC 2017", {"nv", "mel", "bkl"})


def read_derm7pt(data_dir) -> pd.DataFrame:
    """Derm7pt: HAM10000 diagnoses plus ``other`` (lentigo, melanosis, ...); external test only."""
    return _read_labels_folder(data_dir, "Derm7pt", set(CLASSES) | {"other"})


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


def detail_level(paths, percentile: float = 5.0) -> int:
    """The training images' level of detail: a low percentile of their shorter sides, in pixels.

    Served photos are brought down to it first (``images.match_detail``), so a sharp upload looks
    like what the model learnt from; a higher-resolution training set raises it by itself.
    """
    return int(np.percentile([min(image_size(p)) for p in paths], percentile))


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


class RobustAugmentation:
    """Augmentation for photos from other clinics and dermoscopes (batched, 0..255 float images).

    Random resized crop (scale 0.35-1, aspect 3/4-4/3) from the stored image (with ``crop=False``
    the paper's milder shift and zoom instead), every rotation and flip, colour jitter (brightness,
    contrast, saturation, hue), a random gamma (0.7-1.4), Gaussian blur, and, per image before
    batching, JPEG re-compression (quality 30-95) and a downscale to 40-80 % and back, each with
    probability 0.3. Keras 3's own layers where they exist. With ``vignette``, also a dark vignette
    (a dermoscope's round field) with probability 0.3: brightness falls towards the corners by up to
    0.2-0.9, centre moved by up to 10 %, falloff power 1.5-3.5.
    """

    SCALE = (0.35, 1.0)
    RATIO = (3 / 4, 4 / 3)
    GAMMA = (0.7, 1.4)
    P_JPEG = 0.3
    P_DOWNSCALE = 0.3
    DOWNSCALE = (0.4, 0.8)
    P_VIGNETTE = 0.3
    VIGNETTE_DEPTH = (0.2, 0.9)
    VIGNETTE_POWER = (1.5, 3.5)
    VIGNETTE_SHIFT = 0.1

    def __init__(self, seed=None, vignette: bool = False, crop: bool = True):
        import keras

        self.vignette = vignette
        self.crop = crop

        seeds = [None] * 4 if seed is None else [seed + k for k in range(4)]
        self.geometry = keras.Sequential([
            keras.layers.RandomFlip("horizontal_and_vertical", seed=seeds[0]),
            keras.layers.RandomRotation(0.5, fill_mode="reflect", seed=seeds[1]),
        ], name="geometry") if crop else augmenter(seed)
        self.colour = keras.Sequential([
            keras.layers.RandomColorJitter(value_range=(0, 255), brightness_factor=0.1, contrast_factor=0.25,
                                           saturation_factor=(0.3, 0.7), hue_factor=0.04, seed=seeds[2]),
            keras.layers.RandomGaussianBlur(factor=0.5, kernel_size=5, sigma=(0.1, 1.2), seed=seeds[3]),
        ], name="colour")

    def per_image(self, image):
        """JPEG re-compression and downscale-and-back for one uint8 image (h, w, 3)."""
        import tensorflow as tf

        size = tf.shape(image)[:2]
        image = tf.cond(tf.random.uniform(()) < self.P_JPEG,
                        lambda: tf.image.random_jpeg_quality(image, 30, 95), lambda: image)

        def downscale():
            factor = tf.random.uniform((), *self.DOWNSCALE)
            small = tf.cast(tf.cast(size, tf.float32) * factor, tf.int32)
            reduced = tf.image.resize(tf.cast(image, tf.float32), small, antialias=True)
            return tf.cast(tf.clip_by_value(tf.round(tf.image.resize(reduced, size)), 0, 255), tf.uint8)

        return tf.cond(tf.random.uniform(()) < self.P_DOWNSCALE, downscale, lambda: image)

    def __call__(self, images, training=True):
        import math

        import tensorflow as tf

        n = tf.shape(images)[0]
        size = tf.shape(images)[1:3]
        if self.crop:
            area = tf.random.uniform((n,), *self.SCALE)
            ratio = tf.exp(tf.random.uniform((n,), math.log(self.RATIO[0]), math.log(self.RATIO[1])))
            height, width = tf.minimum(tf.sqrt(area / ratio), 1.0), tf.minimum(tf.sqrt(area * ratio), 1.0)
            top, left = tf.random.uniform((n,)) * (1 - height), tf.random.uniform((n,)) * (1 - width)
            boxes = tf.stack([top, left, top + height, left + width], axis=1)
            images = tf.image.crop_and_resize(images, boxes, tf.range(n), size)
        images = self.geometry(images, training=True)
        images = self.colour(images, training=True)
        gamma = tf.exp(tf.random.uniform((n, 1, 1, 1), math.log(self.GAMMA[0]), math.log(self.GAMMA[1])))
        images = 255.0 * tf.pow(tf.clip_by_value(images / 255.0, 0.0, 1.0), gamma)
        return images * self.vignette_falloff(n, size) if self.vignette else images

    def vignette_falloff(self, n, size):
        """Per-image multiplicative falloff (n, h, w, 1): 1 for images without a vignette."""
        import math

        import tensorflow as tf

        def uniform(bounds):
            return tf.random.uniform((n, 1, 1, 1), *bounds)

        h, w = tf.cast(size[0], tf.float32), tf.cast(size[1], tf.float32)
        y = (tf.range(h) + 0.5) / h * 2 - 1
        x = (tf.range(w) + 0.5) / w * 2 - 1
        cy = uniform((-self.VIGNETTE_SHIFT, self.VIGNETTE_SHIFT))
        cx = uniform((-self.VIGNETTE_SHIFT, self.VIGNETTE_SHIFT))
        radius = tf.minimum(tf.sqrt((y[None, :, None, None] - cy) ** 2 + (x[None, None, :, None] - cx) ** 2)
                            / math.sqrt(2), 1.0)
        depth = uniform(self.VIGNETTE_DEPTH) * tf.cast(uniform((0, 1)) < self.P_VIGNETTE, tf.float32)
        return 1.0 - depth * radius ** uniform(self.VIGNETTE_POWER)


@dataclass(frozen=True)
class Augmentation:
    """A training augmentation: ``options`` None is the paper's (``augmenter``), a dict is RobustAugmentation's."""

    options: dict | None
    description: str


AUGMENTATIONS = {
    "paper": Augmentation(None, "rotation, shifts, zoom, flips (Nguyen et al.)"),
    "robust": Augmentation({}, "random resized crop, every rotation and flip, colour jitter, gamma, blur, "
                               "downscale, JPEG (for photos from other clinics)"),
    "robust-vignette": Augmentation({"vignette": True}, "robust + a dark vignette"),
    "paper-photometric": Augmentation({"vignette": True, "crop": False},
                                      "the paper's geometry with robust-vignette's photometric changes"),
}


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
                 seed: int | None = None, mixup_alpha: float = 0.0, augmentation: str = "paper"):
    """A tf.data pipeline of ``({"image", "metadata"}, one-hot label)`` batches.

    Training shuffles, augments images (``augmentation``: a name in AUGMENTATIONS), blanks metadata
    fields and, with ``mixup_alpha`` > 0, applies mixup; evaluation does none of these.
    """
    import tensorflow as tf

    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {tuple(AUGMENTATIONS)}, not {augmentation!r}")
    options = AUGMENTATIONS[augmentation].options
    robust = RobustAugmentation(seed, **options) if training and options is not None else None
    onehot = np.eye(len(CLASSES), dtype=np.float32)[y]
    ds = tf.data.Dataset.from_tensor_slices((images, metadata.astype(np.float32), onehot))
    if training:
        ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
        if robust is not None:
            ds = ds.map(lambda image, meta, label: (robust.per_image(image), meta, label),
                        num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size)
    if training:
        augment = augmenter(seed) if robust is None else robust

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
