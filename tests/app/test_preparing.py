"""Where ``SERVE_DECODE=gpu`` decodes each image (big photos on the CPU's reduced path, bounded nvJPEG calls, order),
and how many decode threads a host gets.

The device here is the CPU: torchvision decodes the JPEGs left for the "GPU" with libjpeg, so these tests
pin the routing and the grouping, not nvJPEG's numerics (the ``gpu``-marked tests check those).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from app.config import Settings
from app.engine import preparing
from app.engine.preparing import (
    GPU_DECODE_MAX_PIXELS,
    EncodedJpeg,
    ImagePreparer,
    Item,
    Result,
    _groups,
    decode_threads,
)
from app.errors import InvalidImage
from model import EvalPreset
from model.decoding import decode_for_eval
from tests.conftest import TINY_PREPROCESSING, encode, photo

PRESET = EvalPreset(TINY_PREPROCESSING)  # resize 72, crop 64
CPU = torch.device("cpu")


def preparer(*, reduced: bool = True, **limits: int) -> ImagePreparer:
    return ImagePreparer(PRESET, max_image_pixels=50_000_000, reduced=reduced, device=CPU, **limits)


def flat_jpeg(width: int, height: int) -> bytes:
    """A JPEG of ``width`` x ``height``: one colour, so even 4 MP encodes and decodes in milliseconds."""
    return encode(Image.new("RGB", (width, height), (40, 120, 200)), "JPEG", quality=80)


def test_a_photo_over_the_gpu_limit_takes_the_reduced_cpu_path() -> None:
    assert GPU_DECODE_MAX_PIXELS == 2000 * 2000
    at_limit, over = flat_jpeg(2000, 2000), flat_jpeg(2001, 2000)
    assert preparer().prepare(at_limit) == EncodedJpeg(at_limit, 2000 * 2000)
    prepared = preparer().prepare(over)
    assert isinstance(prepared, torch.Tensor)
    assert prepared.dtype == torch.uint8 and prepared.shape == (3, 64, 64)
    assert prepared[:, 32, 32].tolist() == pytest.approx([40, 120, 200], abs=3)


def test_the_big_photos_crop_is_the_reduced_paths() -> None:
    data = encode(photo("astronaut").resize((2048, 2048)), "JPEG", quality=90)  # 4.2 MP: over the limit
    prepared = preparer().prepare(data)
    assert isinstance(prepared, torch.Tensor)
    assert torch.equal(prepared, decode_for_eval(Image.open(io.BytesIO(data)), PRESET, reduced=True))


def test_with_reduced_decoding_off_every_jpeg_is_left_for_the_gpu() -> None:
    big = flat_jpeg(4032, 3024)
    assert preparer(reduced=False).prepare(big) == EncodedJpeg(big, 4032 * 3024)


def test_the_limit_is_a_setting_of_the_preparer() -> None:
    data = flat_jpeg(640, 480)
    assert isinstance(preparer(gpu_max_pixels=640 * 480).prepare(data), EncodedJpeg)
    assert isinstance(preparer(gpu_max_pixels=640 * 480 - 1).prepare(data), torch.Tensor)


def jpeg_of(pixels: int) -> EncodedJpeg:
    return EncodedJpeg(b"", pixels)


@pytest.mark.parametrize(
    ("pixels", "groups"),
    [
        ([10, 20, 30], [[10, 20, 30]]),  # all fit in one call
        ([30, 30, 10, 40], [[30, 30], [10, 40]]),  # a call is closed before it would pass the bound
        ([50, 50], [[50], [50]]),  # exactly the bound fits
        ([10, 80, 10], [[10], [80], [10]]),  # a photo over the bound goes alone, and its neighbours apart
        ([], []),
    ],
)
def test_groups_bound_the_pixels_of_each_call(pixels: list[int], groups: list[list[int]]) -> None:
    found = [[jpeg.pixels for jpeg in group] for group in _groups([jpeg_of(p) for p in pixels], 60)]
    assert found == groups


def recording(calls: list[int]) -> Callable[..., torch.Tensor]:
    """The real ``decode_jpegs_on_device``, noting how many JPEGs each call decodes."""
    real = preparing.decode_jpegs_on_device

    def decode(jpegs: list[bytes], *args: object) -> torch.Tensor:
        calls.append(len(jpegs))
        return real(jpegs, *args)  # type: ignore[arg-type]

    return decode


def test_a_mixed_batch_keeps_its_order_across_calls_and_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(preparing, "decode_jpegs_on_device", recording(calls))
    sizes = {"chelsea": (451, 300), "coffee": (600, 400), "rocket": (427, 640), "camera": (512, 512)}
    jpegs = {name: encode(photo(name).resize(size), "JPEG", quality=90) for name, size in sizes.items()}
    big = encode(photo("astronaut").resize((600, 600)), "JPEG", quality=90)  # over this preparer's GPU limit
    png = encode(photo("immunohistochemistry").resize((300, 300)), "PNG")
    truncated = jpegs["chelsea"][: len(jpegs["chelsea"]) // 2]  # its header passes; its data ends early
    gpu = preparer(gpu_max_pixels=300_000, pixels_per_call=400_000)
    sent = [jpegs["chelsea"], big, jpegs["coffee"], png, jpegs["rocket"], jpegs["camera"], truncated]
    items = [gpu.prepare(data) for data in sent]
    kinds = [type(item).__name__ for item in items]
    assert kinds == ["EncodedJpeg", "Tensor", "EncodedJpeg", "Tensor", "EncodedJpeg", "EncodedJpeg", "EncodedJpeg"]

    results = gpu.decode_batch(items)

    # 400,000 pixels a call: chelsea + coffee (375,300), rocket (rocket + camera would be 535,424), then
    # camera + the truncated chelsea, which the decoder refuses: that group is decoded one by one on the CPU.
    assert calls == [2, 1, 2]
    assert results[1] is items[1] and results[3] is items[3]  # pixels decoded on the CPU pass through
    for i in (0, 2, 4):
        assert_same_picture(results[i], alone(gpu, sent[i]))
    assert_same_picture(results[5], preparer(gpu_max_pixels=0).prepare(sent[5]))  # the CPU's reduced path
    assert isinstance(results[6], InvalidImage)


def alone(gpu: ImagePreparer, data: bytes) -> Result:
    """The image decoded in a batch of its own."""
    (result,) = gpu.decode_batch([gpu.prepare(data)])
    return result


def assert_same_picture(got: Result, want: Result | Item) -> None:
    assert isinstance(got, torch.Tensor) and isinstance(want, torch.Tensor)
    assert got.shape == want.shape == (3, 64, 64)
    assert torch.equal(got, want)  # a group's decode and resize are a lone image's, so only the order could differ


def test_a_batch_without_jpegs_for_the_gpu_makes_no_call(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(preparing, "decode_jpegs_on_device", recording(calls))
    gpu = preparer()
    items = [gpu.prepare(encode(photo("coffee"), "PNG")), gpu.prepare(flat_jpeg(2400, 1800))]
    results = gpu.decode_batch(items)
    assert len(results) == 2 and all(got is item for got, item in zip(results, items, strict=True))
    assert calls == []


@pytest.mark.parametrize(
    ("device", "workers", "cores", "threads"),
    [
        ("cpu", 1, 1, 2),
        ("cpu", 1, 2, 2),  # 2 served 12 MP photos better than 1: docs/benchmarks.md
        ("cpu", 1, 16, 8),  # half: the model's threads need the rest
        ("cpu", 2, 16, 4),  # each worker's share
        ("cuda", 1, 16, 15),  # all but the event loop's core
        ("cuda:1", 4, 16, 3),
        ("cuda", 1, 2, 2),  # never fewer than 2 beside a GPU
        ("cuda", 1, 128, 32),  # past that, the interpreter lock is the bound
    ],
)
def test_the_default_decode_pool_follows_the_host(device: str, workers: int, cores: int, threads: int) -> None:
    assert decode_threads(0, device, workers, cores) == threads


def test_a_set_decode_pool_size_is_kept_and_the_default_is_this_hosts() -> None:
    assert decode_threads(3, "cuda", 4, 16) == 3
    assert decode_threads(0, "cpu") == max(2, len(os.sched_getaffinity(0)) // 2)
    assert Settings.model_fields["decode_threads"].default == 0
    with pytest.raises(ValidationError):
        Settings(decode_threads=-1)
