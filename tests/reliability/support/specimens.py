"""Image files in every shape the service must take or refuse: each format and pixel mode, animations,
EXIF rotations, and forged headers that claim sizes the pixels do not have."""

from __future__ import annotations

import io
import struct
import zlib
from functools import cache

import numpy as np
from PIL import Image
from skimage import data as skdata


@cache
def photo(size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A real photograph (scikit-image's coffee cup), small enough to keep every case cheap."""
    return Image.fromarray(skdata.coffee()).convert("RGB").resize(size)


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose valid header claims ``width`` x ``height`` over a few bytes of real pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\x80" * 3 * min(width, 64))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0) is rewritten to claim ``width`` x ``height``."""
    data = bytearray(encode(photo(), "JPEG", quality=80))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_claiming(width: int, height: int) -> bytes:
    """A real GIF whose logical screen claims ``width`` x ``height``."""
    data = bytearray(encode(photo(), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def solid_png(width: int, height: int, mode: str = "RGB") -> bytes:
    """A real, fully decodable PNG of one colour: any size at a few hundred bytes per megapixel."""
    return encode(Image.new(mode, (width, height), 90 if mode == "L" else (200, 120, 40)), "PNG", compress_level=9)


def animated(fmt: str) -> bytes:
    frames = [photo(), photo().transpose(Image.Transpose.FLIP_LEFT_RIGHT), Image.new("RGB", photo().size, "blue")]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=80, loop=0)


def exif_rotated() -> tuple[bytes, bytes]:
    """A JPEG stored sideways with orientation 6, and the same picture stored upright."""
    upright = photo((64, 96))
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # what orientation 6 turns back to upright
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(sideways, "JPEG", quality=95, exif=exif), encode(upright, "JPEG", quality=95)


def sixteen_bit_png() -> bytes:
    values = (np.asarray(photo().convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    return encode(Image.fromarray(values), "PNG")


def palette_png(transparent: bool) -> bytes:
    img = photo().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode(img, "PNG", transparency=0) if transparent else encode(img, "PNG")


@cache
def seeds() -> dict[str, bytes]:
    """Valid files of every allowed format and many modes: the starting points of mutation fuzzing."""
    img = photo()
    return {
        "jpeg": encode(img, "JPEG", quality=85),
        "jpeg-progressive": encode(img, "JPEG", quality=70, progressive=True),
        "jpeg-gray": encode(img.convert("L"), "JPEG"),
        "jpeg-cmyk": encode(img.convert("CMYK"), "JPEG"),
        "jpeg-exif": exif_rotated()[0],
        "png": encode(img, "PNG"),
        "png-rgba": encode(img.convert("RGBA"), "PNG"),
        "png-interlaced": encode(img, "PNG", interlace=1),
        "png-palette": palette_png(transparent=True),
        "png-16bit": sixteen_bit_png(),
        "png-animated": animated("PNG"),
        "webp": encode(img, "WEBP", quality=80),
        "webp-lossless": encode(img, "WEBP", lossless=True),
        "webp-animated": animated("WEBP"),
        "gif": encode(img, "GIF"),
        "gif-animated": animated("GIF"),
        "bmp": encode(img, "BMP"),
        "bmp-1bit": encode(img.convert("1"), "BMP"),
        "tiff": encode(img, "TIFF"),
        "tiff-lzw": encode(img, "TIFF", compression="tiff_lzw"),
        "tiff-cmyk": encode(img.convert("CMYK"), "TIFF"),
    }
