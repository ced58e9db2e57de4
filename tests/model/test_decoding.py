"""Reduced decoding: the exact path's geometry at a fraction of the pixels, and pixels close to the exact crop."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.decode_accuracy import Case, crop, difference, probabilities
from benchmarks.images import scikit_photo
from benchmarks.photos import add_camera_noise, encode_jpeg, phone_photo, texture_mosaic
from benchmarks.upload_costs import resize_whole_then_crop
from model import Checkpoint, EvalPreset, Preprocessing
from model.decoding import MARGIN, dct_scale, decode_for_eval
from model.images import upright_rgb

SERVED = EvalPreset(Preprocessing())  # resize 232, crop 224
MIN_PSNR_DB, MAX_MEAN_ABS_DIFF = 40.0, 1.5
# Largest difference between the two paths' probabilities: 0.0011 measured on the 12 phone photos
# (docs/benchmarks.md), asserted with room for other libjpeg builds.
MAX_PROB_DIFF = 0.005


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **params)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("size", "resize", "scale"),
    [((927, 2000), 232, 1), ((928, 928), 232, 2), ((1855, 2000), 232, 2), ((1856, 2000), 232, 4),
     ((4032, 3024), 232, 4), ((5664, 4248), 232, 8), ((1023, 1500), 256, 1), ((1024, 1500), 256, 2)],
)  # fmt: skip
def test_a_jpeg_is_reduced_only_when_it_keeps_twice_the_resize(size: tuple[int, int], resize: int, scale: int) -> None:
    assert dct_scale(size, resize) == scale
    assert min(size) // scale >= MARGIN * resize


@pytest.mark.parametrize("side", [63, 64, 127, 128, 255, 256, 400])
def test_the_scale_is_the_one_pillow_decodes_at(side: int) -> None:
    data = encode(Image.new("RGB", (side + 7, side), "teal"), "JPEG")
    with Image.open(io.BytesIO(data)) as img:
        drafted = img.draft(None, (MARGIN * 16, MARGIN * 16))  # what decode_for_eval asks for at resize 16
        assert drafted is not None
        assert (side + 7) / drafted[1][2] == dct_scale((side + 7, side), 16)  # the box is the full size / scale
        img.load()
        assert min(img.size) >= MARGIN * 16


@pytest.mark.parametrize(
    ("fmt", "size"),
    [("JPEG", (451, 300)), ("JPEG", (927, 1300)), ("PNG", (927, 1300)), ("PNG", (900, 600)), ("WEBP", (700, 520))],
)
def test_images_too_small_to_reduce_give_the_exact_pixels(fmt: str, size: tuple[int, int]) -> None:
    data = encode(scikit_photo("coffee").resize(size), fmt)
    assert torch.equal(crop(data, SERVED, reduced=True), crop(data, SERVED, reduced=False))


def test_the_exact_path_is_the_reference_decode_and_preset() -> None:
    data = phone_photo("chelsea", (1200, 900), orientation=6)
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        reference = SERVED.to_uint8(upright_rgb(img))
    assert torch.equal(decode_for_eval(Image.open(io.BytesIO(data)), SERVED, reduced=False), reference)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_keeps_the_exact_geometry(orientation: int) -> None:
    # 1637x1229 at 1/2 is 819x615 decoded pixels of which 818.5x614.5 are the image: the partial
    # column and row move to another edge when the image is turned, and the box must follow them.
    upright = add_camera_noise(scikit_photo("astronaut").resize((1637, 1229), Image.Resampling.LANCZOS), seed=1)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(upright, "JPEG", quality=92, exif=exif.tobytes())
    psnr, mad, _ = difference(crop(data, SERVED, reduced=True), crop(data, SERVED, reduced=False))
    assert psnr >= MIN_PSNR_DB and mad <= MAX_MEAN_ABS_DIFF, (psnr, mad)


@pytest.mark.parametrize(("photos", "count"), [("2MP", 4), ("12MP", 4), ("24MP", 4), ("textures", 3)])
def test_reduced_photos_match_the_exact_crops(phone_jpegs: list[Case], photos: str, count: int) -> None:
    cases = [case for case in phone_jpegs if photos in (case.size, case.photo)]
    assert len(cases) == count
    for case in cases:
        with Image.open(io.BytesIO(case.data)) as header:
            assert dct_scale(header.size, 232) > 1  # every one of them is reduced
        psnr, mad, _ = difference(crop(case.data, SERVED, reduced=True), crop(case.data, SERVED, reduced=False))
        assert psnr >= MIN_PSNR_DB and mad <= MAX_MEAN_ABS_DIFF, (case.photo, case.size, psnr, mad)


def test_without_the_margin_fine_textures_would_drift() -> None:
    """Why MARGIN is 2: decoding down to the resize size itself leaves the DCT scaling's aliasing in."""
    data = encode_jpeg(texture_mosaic((1237, 928)), quality=92)
    exact = crop(data, SERVED, reduced=False)
    kept = difference(crop(data, SERVED, reduced=True), exact)
    bare = difference(crop(data, SERVED, reduced=True, margin=1), exact)
    assert bare[1] > MAX_MEAN_ABS_DIFF > kept[1] and bare[0] < MIN_PSNR_DB < kept[0]


def test_a_trained_models_probabilities_agree(phone_jpegs: list[Case], served_size_model: Checkpoint) -> None:
    preset = EvalPreset(served_size_model.preprocessing)
    assert served_size_model.source == "training" and preset.preprocessing.resize_size == 232
    for case in phone_jpegs:
        exact, reduced = crop(case.data, preset, reduced=False), crop(case.data, preset, reduced=True)
        probs = probabilities(served_size_model.model, preset, [exact, reduced])
        largest = float((probs[0] - probs[1]).abs().max())
        assert largest <= MAX_PROB_DIFF, (case.photo, case.size, largest)


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grey_and_cmyk_jpegs_are_reduced_to_rgb(mode: str) -> None:
    data = encode(scikit_photo("rocket").resize((1300, 1000)).convert(mode), "JPEG", quality=92)
    reduced = crop(data, SERVED, reduced=True)
    psnr, mad, _ = difference(reduced, crop(data, SERVED, reduced=False))
    assert reduced.shape == (3, 224, 224) and psnr >= MIN_PSNR_DB and mad <= MAX_MEAN_ABS_DIFF


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_other_formats_are_resized_blockwise_and_stay_close(fmt: str) -> None:
    small = EvalPreset(Preprocessing(resize_size=72, crop_size=64))  # 1000x800 is 11x the resize: 5x5 blocks first
    data = encode(add_camera_noise(scikit_photo("coffee").resize((1000, 800)), seed=2), fmt)
    reduced, exact = crop(data, small, reduced=True), crop(data, small, reduced=False)
    psnr, mad, _ = difference(reduced, exact)
    assert not torch.equal(reduced, exact) and psnr >= MIN_PSNR_DB and mad <= MAX_MEAN_ABS_DIFF


def test_a_reduced_strip_is_resized_only_where_the_crop_is() -> None:
    # 40001x471 resizes to 19703x232, past MAX_RESIZED_PIXELS: only the kept region is resized. Its
    # half-size version (as a DCT decode at 1/2 makes it: 20001x236, of which 20000.5x235.5 are the
    # image) must give the full image's crop; fine stripes show a misplaced region.
    xs, ys = np.linspace(0, 6000, 40001, dtype=np.float32), np.linspace(0, 6, 471, dtype=np.float32)[:, None]
    waves = [128 + 100 * np.sin(xs * (1 + c) / 3 + ys * (2 - c)) for c in range(3)]
    strip = add_camera_noise(Image.fromarray(np.stack(waves, axis=-1).astype(np.uint8)), seed=3)
    assert not SERVED.resizes_whole(strip.size)
    half = strip.reduce(2)
    exact = SERVED.to_uint8(strip)
    reduced = SERVED.to_uint8_reduced(half, strip.size, (0.0, 0.0, strip.width / 2, strip.height / 2))
    misplaced = SERVED.to_uint8_reduced(half, strip.size, (0.0, 0.0, float(half.width), float(half.height)))
    psnr, mad, _ = difference(reduced, exact)
    assert psnr >= MIN_PSNR_DB and mad <= MAX_MEAN_ABS_DIFF, (psnr, mad)
    assert difference(misplaced, exact)[1] > 2 * mad


@pytest.mark.parametrize("size", [(1008, 756), (756, 1008), (817, 613), (466, 1601), (300, 232), (233, 240)])
def test_a_reduced_image_resized_where_the_crop_is_gives_the_whole_resize_cropped(size: tuple[int, int]) -> None:
    # A DCT decode at 1/4 of a (4w - 1) x (4h - 3) photo: the box is a little less than the image.
    img = add_camera_noise(scikit_photo("astronaut").resize(size), seed=5)
    full = (4 * size[0] - 1, 4 * size[1] - 3)
    box = (0.0, 0.0, full[0] / 4, full[1] / 4)
    expected = resize_whole_then_crop(img, full, box)  # the served preset's 232 resize and 224 crop
    differs = (SERVED.to_uint8_reduced(img, full, box).int() - expected.int()).abs()
    assert differs.max() <= 1 and (differs > 0).float().mean() < 1e-3  # a rounding, here and there


@pytest.mark.parametrize("reduced", [True, False])
def test_a_truncated_jpeg_raises_on_both_paths(reduced: bool) -> None:
    data = phone_photo("coffee", (1632, 1224))
    with pytest.raises(OSError, match="truncated"):
        crop(data[: len(data) // 2], SERVED, reduced=reduced)
