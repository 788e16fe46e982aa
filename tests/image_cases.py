"""Every kind of file a clinic might upload, built in memory: (bytes, expected outcome).

Expected outcome: ``None`` for a usable image, else a phrase the InvalidImage message must contain.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

RED, BLUE = (220, 30, 30), (30, 30, 220)


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def halves(size=(120, 80)) -> Image.Image:
    """Left half red, right half blue: orientation and colour survive only if handled right."""
    image = Image.new("RGB", size, RED)
    image.paste(Image.new("RGB", (size[0] // 2, size[1]), BLUE), (size[0] // 2, 0))
    return image


def png_bomb(width=30000, height=30000) -> bytes:
    """A few-KB PNG that declares width x height pixels (an all-zero 1-bit image)."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(200)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def exif_rotated() -> bytes:
    """A landscape image whose EXIF says 'rotate 90 degrees clockwise to display' (orientation 6)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(halves(), "JPEG", exif=exif.tobytes(), quality=95)


def animated_gif() -> bytes:
    frames = [Image.new("P", (64, 64), 1), Image.new("P", (64, 64), 2)]
    for frame in frames:
        frame.putpalette([0, 0, 0, *RED, *BLUE] + [0] * (256 * 3 - 9))
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def multipage_tiff() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), RED).save(buffer, format="TIFF", save_all=True,
                                         append_images=[Image.new("RGB", (64, 64), BLUE)])
    return buffer.getvalue()


def sixteen_bit() -> bytes:
    ramp = (np.linspace(0, 65535, 96 * 64).reshape(64, 96)).astype(np.uint16)
    return encode(Image.fromarray(ramp), "PNG")


def corrupt_png() -> bytes:
    """A noisy PNG with a run of its compressed pixel data overwritten."""
    noise = np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8)
    data = bytearray(encode(Image.fromarray(noise), "PNG"))
    middle = len(data) // 2
    data[middle:middle + 400] = bytes(400)
    return bytes(data)


def heic() -> bytes:
    import pillow_heif  # noqa: F401  (skin_core registers the opener)

    return encode(halves(), "HEIF")


CASES = {
    "jpeg": (lambda: encode(halves(), "JPEG"), None),
    "png": (lambda: encode(halves(), "PNG"), None),
    "empty file": (lambda: b"", "empty"),
    "pdf renamed": (lambda: b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF", "not an image"),
    "text renamed": (lambda: b"patient notes: lesion on back, 5 mm", "not an image"),
    "html renamed": (lambda: b"<!doctype html><html><body>hello</body></html>", "not an image"),
    "truncated jpeg": (lambda: (lambda d: d[: len(d) // 2])(encode(halves((400, 300)), "JPEG")), "damaged"),
    "corrupt png": (corrupt_png, "damaged"),
    "decompression bomb": (png_bomb, "far more pixels"),
    "tiny image": (lambda: encode(Image.new("RGB", (20, 20), RED), "PNG"), "at least 32"),
    "very large image": (lambda: encode(halves((6000, 4000)), "JPEG", quality=70), None),
    "grayscale": (lambda: encode(halves().convert("L"), "PNG"), None),
    "palette": (lambda: encode(halves().convert("P"), "PNG"), None),
    "rgba": (lambda: encode(halves().convert("RGBA"), "PNG"), None),
    "cmyk jpeg": (lambda: encode(halves().convert("CMYK"), "JPEG"), None),
    "16-bit png": (sixteen_bit, None),
    "exif rotated": (exif_rotated, None),
    "animated gif": (animated_gif, None),
    "multi-page tiff": (multipage_tiff, None),
    "heic": (heic, None),
}
