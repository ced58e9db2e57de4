"""One decode for training and serving: the tricky pixel modes, and the two callers agreeing."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.engine.imaging import decode_image
from model.images import to_rgb, upright_rgb
from tests.conftest import encode, photo
from training.data import read_rgb


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    img = Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16))
    assert np.asarray(to_rgb(img))[0, 0].tolist() == [128, 128, 128]


def test_alpha_is_composited_on_white() -> None:
    img = Image.new("RGBA", (2, 2), (255, 0, 0, 0))
    assert np.asarray(to_rgb(img))[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    data = encode(Image.new("RGB", (40, 20), "red"), "JPEG", exif=exif.tobytes())
    assert upright_rgb(Image.open(io.BytesIO(data))).size == (20, 40)


@pytest.mark.parametrize(
    ("mode", "fmt"), [("RGBA", "PNG"), ("P", "PNG"), ("L", "JPEG"), ("CMYK", "JPEG"), ("I;16", "PNG"), ("LA", "PNG")]
)
def test_training_reads_what_the_service_decodes(tmp_path: Path, mode: str, fmt: str) -> None:
    cat = photo("chelsea")
    img = Image.fromarray(np.asarray(cat.convert("L"), dtype=np.uint16) * 257) if mode == "I;16" else cat.convert(mode)
    path = tmp_path / f"cat.{fmt.lower()}"
    img.save(path, format=fmt)
    served = decode_image(path.read_bytes(), max_pixels=10_000_000)
    assert served.mode == "RGB"
    assert np.array_equal(np.asarray(read_rgb(str(path))), np.asarray(served))
