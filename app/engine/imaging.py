"""Image bytes -> an RGB PIL image, with the limits that keep hostile input from hurting the service.

Only JPEG, PNG, WebP, GIF, BMP and TIFF are decoded. The pixel count is checked from the header,
before any pixel is decoded, so a decompression bomb costs a few hundred bytes of parsing.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image, UnidentifiedImageError
from torch import Tensor

from app.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType
from model import EvalPreset
from model.decoding import decode_for_eval
from model.images import upright_rgb

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
# Formats Pillow cannot open at all but that clients commonly send: named so the answer is a 415.
_FOREIGN_SIGNATURES = (
    (4, b"ftypheic", "HEIC"),
    (4, b"ftypheix", "HEIC"),
    (4, b"ftypmif1", "HEIF"),
    (0, b"%PDF-", "PDF"),
)


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode the first frame of an allowed image as RGB, EXIF orientation applied.

    Raises ``InvalidImage`` (unreadable), ``UnsupportedMediaType`` (a format outside the allowed
    ones) or ``ImageTooLarge`` (more than ``max_pixels`` pixels, checked before decoding).
    """
    img = open_image(data, max_pixels)
    with _decoding(img):
        img.load()
        return upright_rgb(img)


def decode_crop(header: Image.Image, preset: EvalPreset, *, reduced: bool) -> Tensor:
    """An opened image (``open_image``) -> the eval preset's uint8 crop (``model.decoding.decode_for_eval``),
    reduced or exact; raises ``InvalidImage`` when its pixels cannot be decoded."""
    with _decoding(header):
        return decode_for_eval(header, preset, reduced=reduced)


@contextmanager
def _decoding(img: Image.Image) -> Iterator[None]:
    try:
        yield
    # Pillow reports corrupt data through many exception types (OSError, SyntaxError, struct.error,
    # ValueError, ...); all of them mean the same thing to the client.
    except Exception as exc:
        raise InvalidImage(f"the {img.format} image could not be decoded (truncated or corrupt)") from exc


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Parse only the header of an allowed image and check its pixel count; no pixel is decoded."""
    if not data:
        raise InvalidImage("the image is empty")
    img = _open(data)
    width, height = img.size
    if width * height > max_pixels:
        raise ImageTooLarge(f"the image is {width}x{height} pixels; the limit is {max_pixels} pixels")
    return img


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from None
    except UnidentifiedImageError:
        foreign = identify_format(data)
        if foreign is not None:
            raise UnsupportedMediaType(
                f"{foreign} is not a supported image format; send JPEG, PNG, WebP, GIF, BMP or TIFF"
            ) from None
        raise InvalidImage("the bytes are not a readable image (truncated, corrupt or not an image)") from None
    except Exception as exc:  # header parsing of a corrupt file, see decode_image
        raise InvalidImage("the image header could not be read (truncated or corrupt)") from exc


def identify_format(data: bytes) -> str | None:
    """Name the image format of ``data`` if it is one we refuse, else None (not an image at all)."""
    for offset, magic, name in _FOREIGN_SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return name
    head = data[:512].lstrip()
    if head.startswith((b"<svg", b"<?xml")) and b"<svg" in data[:4096]:
        return "SVG"
    try:
        with Image.open(io.BytesIO(data)) as img:  # header only: identifies, decodes nothing
            return img.format
    except Exception:
        return None
