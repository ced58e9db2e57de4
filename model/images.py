"""Decoded image -> upright 8-bit RGB, defined once for training and serving.

How a PNG with alpha, a 16-bit TIFF or an EXIF-rotated phone photo becomes RGB is part of the
model's input contract: if the trainer and the service did it differently, the model would see
different pixels in production than in training.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def upright_rgb(img: Image.Image) -> Image.Image:
    """EXIF orientation applied, then any pixel mode -> 8-bit RGB (see ``to_rgb``)."""
    return to_rgb(ImageOps.exif_transpose(img))


def to_rgb(img: Image.Image) -> Image.Image:
    """Any pixel mode -> 8-bit RGB: 16-bit scaled down, alpha composited on white, CMYK/palette converted."""
    if img.mode in _SIXTEEN_BIT_MODES:
        img = _sixteen_to_eight_bit(img)
    elif img.mode == "F":
        img = img.convert("L")
    if img.mode == "RGB":
        return img
    if img.mode in _ALPHA_MODES or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _sixteen_to_eight_bit(img: Image.Image) -> Image.Image:
    # Pillow's own conversion clips 16-bit values at 255, which turns most pictures white.
    values = np.asarray(img).astype(np.float32)
    scaled = np.clip(values, 0, 65535) / 257.0
    return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L")
