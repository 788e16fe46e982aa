"""Hostile and broken uploads through the API: a correct image or InvalidImage, never anything else."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from image_cases import BLUE, CASES, RED, encode
from PIL import Image

from skin_core.errors import InvalidImage
from skin_core.images import WORKING_SIDE, load_image


@pytest.mark.parametrize("name", list(CASES))
def test_every_upload_case(name):
    make, expected = CASES[name]
    data = make()
    if expected is None:
        image = load_image(data)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert max(image.shape[:2]) <= WORKING_SIDE
    else:
        with pytest.raises(InvalidImage, match=expected):
            load_image(data)


def near(pixel, colour, tolerance=40):
    return np.abs(np.asarray(pixel, int) - colour).max() < tolerance


def test_exif_orientation_is_applied():
    image = load_image(CASES["exif rotated"][0]())
    assert image.shape[:2] == (120, 80)  # portrait after the 90 degree turn
    assert near(image[5, 40], RED) and near(image[-5, 40], BLUE)


def test_colour_survives_mode_conversions():
    for name in ("png", "palette", "rgba", "cmyk jpeg", "heic"):
        image = load_image(CASES[name][0]())
        assert near(image[40, 10], RED) and near(image[40, -10], BLUE), name


def test_first_frame_is_used():
    assert near(load_image(CASES["animated gif"][0]())[10, 10], RED)
    assert near(load_image(CASES["multi-page tiff"][0]())[10, 10], RED)


def test_sixteen_bit_range_is_kept():
    image = load_image(CASES["16-bit png"][0]())
    assert image[..., 0].min() == 0 and image[..., 0].max() == 255


def test_large_image_is_downscaled_keeping_aspect():
    image = load_image(CASES["very large image"][0]())
    assert image.shape[:2] == (683, 1024)


def test_paths_and_file_objects(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(CASES["jpeg"][0]())
    assert load_image(path).shape == load_image(path.open("rb")).shape
    with pytest.raises(InvalidImage, match="No image file"):
        load_image(tmp_path / "missing.jpg")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes_never_escape(data):
    """Any bytes at all: an RGB image or InvalidImage, nothing else."""
    try:
        image = load_image(data)
    except InvalidImage:
        return
    assert image.dtype == np.uint8 and image.shape[2] == 3


# Every mode each format can write and read back (Pillow writes YCbCr TIFFs that it cannot read itself;
# such a file gets InvalidImage, which test_random_bytes_never_escape-style checks already allow).
FORMATS = {"PNG": ["1", "L", "P", "RGB", "RGBA", "I;16", "LA"], "JPEG": ["L", "RGB", "CMYK", "YCbCr"],
           "TIFF": ["1", "L", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"], "BMP": ["1", "L", "P", "RGB"],
           "WEBP": ["RGB", "RGBA"], "GIF": ["L", "P"]}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(FORMATS)), st.data(), st.integers(1, 300), st.integers(1, 300), st.integers(0, 2**31))
def test_random_images_of_every_mode_and_size(fmt, data, width, height, seed):
    mode = data.draw(st.sampled_from(FORMATS[fmt]))
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(rgb).convert(mode) if mode not in ("I;16", "I", "F") else \
        Image.fromarray(rgb[..., 0].astype({"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]))
    try:
        loaded = load_image(encode(image, fmt))
    except InvalidImage as error:
        assert min(width, height) < 32, f"{fmt}/{mode} {width}x{height}: {error}"
        return
    assert loaded.dtype == np.uint8 and loaded.ndim == 3 and loaded.shape[2] == 3
    assert min(width, height) >= 32


def test_unreadable_tiff_variant_is_refused_cleanly():
    """A YCbCr TIFF (which Pillow writes but cannot read back) gets the project's error, not a crash."""
    image = Image.fromarray(np.zeros((64, 64, 3), np.uint8)).convert("YCbCr")
    with pytest.raises(InvalidImage, match="damaged"):
        load_image(encode(image, "TIFF"))
