"""Image decoding: every pixel mode to RGB, EXIF orientation, first frames, refused formats, bombs."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from app.engine.imaging import decode_image
from app.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType
from tests.conftest import encode, photo

LIMIT = 10_000_000


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming ``width`` x ``height`` whose pixel data is garbage that cannot be decoded."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"not zlib data")


def test_a_jpeg_photo_decodes_to_rgb_at_its_size(cat_jpeg: bytes) -> None:
    img = decode_image(cat_jpeg, LIMIT)
    assert img.mode == "RGB" and img.size == (451, 300)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_each_allowed_format_decodes(fmt: str) -> None:
    img = decode_image(encode(photo("coffee").resize((60, 40)), fmt), LIMIT)
    assert img.mode == "RGB" and img.size == (60, 40)


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (40, 20), "red")
    img.paste((0, 0, 255), (20, 0, 40, 20))  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    decoded = decode_image(encode(img, "JPEG", quality=95, exif=exif), LIMIT)
    assert decoded.size == (20, 40)
    top, bottom = decoded.getpixel((10, 5)), decoded.getpixel((10, 35))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60  # red half now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_grayscale_palette_and_cmyk_become_rgb() -> None:
    gray = decode_image(encode(Image.new("L", (8, 8), 77), "PNG"), LIMIT)
    assert gray.getpixel((0, 0)) == (77, 77, 77)
    indexed = Image.new("P", (8, 8), 1)
    indexed.putpalette([0, 0, 0, 10, 200, 30])
    palette = decode_image(encode(indexed, "PNG"), LIMIT)
    assert palette.mode == "RGB" and palette.getpixel((0, 0)) == (10, 200, 30)
    cmyk = decode_image(encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=100), LIMIT)
    red = cmyk.getpixel((4, 4))
    assert isinstance(red, tuple) and red[0] > 240 and red[1] < 20 and red[2] < 20


def test_transparency_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.putpixel((1, 1), (0, 0, 255, 255))
    rgba.putpixel((2, 2), (0, 0, 0, 128))
    img = decode_image(encode(rgba, "PNG"), LIMIT)
    assert img.getpixel((0, 0)) == (255, 255, 255)
    assert img.getpixel((1, 1)) == (0, 0, 255)
    assert img.getpixel((2, 2)) == (127, 127, 127)
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.info["transparency"] = 0
    assert decode_image(encode(palette, "PNG", transparency=0), LIMIT).getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_grayscale_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    img = decode_image(encode(Image.fromarray(values), "PNG"), LIMIT)
    assert [img.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_animated_images_use_their_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), color) for color in ("red", "blue")]
    for fmt in ("GIF", "WEBP"):
        data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
        pixel = decode_image(data, LIMIT).getpixel((4, 4))
        assert isinstance(pixel, tuple) and pixel[0] > 200 and pixel[2] < 60, fmt


@pytest.mark.parametrize("fmt", ["ICO", "PPM", "TGA"])
def test_formats_outside_the_allowed_ones_are_unsupported(fmt: str) -> None:
    with pytest.raises(UnsupportedMediaType, match=f"{fmt} is not a supported image format"):
        decode_image(encode(Image.new("RGB", (16, 16), "red"), fmt), LIMIT)


def test_svg_and_pdf_are_unsupported_and_text_is_invalid() -> None:
    with pytest.raises(UnsupportedMediaType, match="SVG"):
        decode_image(b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', LIMIT)
    with pytest.raises(UnsupportedMediaType, match="PDF is not a supported image format"):
        decode_image(b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n", LIMIT)
    with pytest.raises(InvalidImage):
        decode_image(b"hello, this is not an image", LIMIT)


@pytest.mark.parametrize("data", [b"", b"\xff\xd8\xff", "truncated"])
def test_empty_corrupt_and_truncated_images_are_invalid(data: bytes | str, cat_jpeg: bytes) -> None:
    payload = cat_jpeg[: len(cat_jpeg) // 2] if data == "truncated" else data
    assert isinstance(payload, bytes)
    with pytest.raises(InvalidImage):
        decode_image(payload, LIMIT)


def test_a_bomb_is_refused_from_its_header_before_any_pixel_is_decoded() -> None:
    # The pixel data is garbage: had the decoder run, this would be an InvalidImage.
    with pytest.raises(ImageTooLarge, match="8000x8000"):
        decode_image(png_header_only(8000, 8000), max_pixels=1_000_000)
    with pytest.raises(ImageTooLarge):
        decode_image(png_header_only(100_000, 100_000), max_pixels=LIMIT)  # past Pillow's own bomb guard


def test_the_pixel_limit_is_inclusive() -> None:
    data = encode(Image.new("RGB", (100, 50)), "PNG")
    assert decode_image(data, max_pixels=5000).size == (100, 50)
    with pytest.raises(ImageTooLarge):
        decode_image(data, max_pixels=4999)


def test_a_decoded_image_is_independent_of_its_buffer(cat_jpeg: bytes) -> None:
    buffer = bytearray(cat_jpeg)
    img = decode_image(bytes(buffer), LIMIT)
    buffer[:] = b"\0" * len(buffer)
    assert np.asarray(img).std() > 10
