"""The ``SERVE_DECODE=gpu`` flow on the CPU: which images defer decoding, batching, fallback, order.

torchvision decodes the deferred JPEGs here with libjpeg instead of nvJPEG, so these tests pin the
flow; the GPU numerics are checked by the ``gpu``-marked tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from app.engine.backends.torch_backend import TorchBackend
from app.engine.classifier import Classifier, EncodedJpeg
from app.engine.preparing import ImagePreparer
from app.errors import ImageTooLarge, InvalidImage
from model import EvalPreset, load_checkpoint
from tests.conftest import encode, photo


@pytest.fixture(scope="module")
def classifier(calibrated_checkpoint: Path) -> Classifier:
    checkpoint = load_checkpoint(calibrated_checkpoint)
    backend = TorchBackend(
        checkpoint.model, EvalPreset(checkpoint.preprocessing), device="cpu", precision="fp32", threads=0
    )
    # The exact CPU path, so GPU decoding is compared with the reference (reduced decoding has its own tests).
    return Classifier(checkpoint, backend, max_image_pixels=10_000_000, decode_on_device=True, reduced_decode=False)


def test_only_rgb_and_grey_jpegs_are_left_for_the_device(classifier: Classifier) -> None:
    cat = photo("chelsea")
    assert isinstance(classifier.prepare(encode(cat, "JPEG")), EncodedJpeg)
    assert isinstance(classifier.prepare(encode(cat.convert("L"), "JPEG")), EncodedJpeg)
    for other in (encode(cat.convert("CMYK"), "JPEG"), encode(cat, "PNG"), encode(cat, "WEBP")):
        prepared = classifier.prepare(other)
        assert isinstance(prepared, torch.Tensor) and prepared.dtype == torch.uint8


def test_an_extreme_aspect_ratio_takes_the_cpu_path(classifier: Classifier) -> None:
    strip = encode(Image.new("RGB", (60_000, 8), "red"), "JPEG")
    prepared = classifier.prepare(strip)
    assert isinstance(prepared, torch.Tensor) and prepared.shape == (3, 64, 64)


def test_header_limits_still_apply_before_deferring(classifier: Classifier) -> None:
    small = Classifier(classifier.checkpoint, classifier.backend, max_image_pixels=1000, decode_on_device=True)
    with pytest.raises(ImageTooLarge):
        small.prepare(encode(photo("chelsea"), "JPEG"))
    with pytest.raises(InvalidImage):
        classifier.prepare(b"\xff\xd8\xff")


def test_a_mixed_batch_keeps_order_and_agrees_with_the_cpu_path(classifier: Classifier) -> None:
    names = ("chelsea", "coffee", "rocket")
    jpegs = [encode(photo(name), "JPEG", quality=95) for name in names]
    png = encode(photo("astronaut"), "PNG")
    items = [
        classifier.prepare(jpegs[0]),
        classifier.prepare(png),
        classifier.prepare(jpegs[1]),
        classifier.prepare(jpegs[2]),
    ]
    results = classifier.predict_batch(items)
    on_cpu = ImagePreparer(classifier.preset, max_image_pixels=10_000_000, reduced=False)  # without the GPU
    reference = classifier.predict_batch([on_cpu.prepare(data) for data in (jpegs[0], png, jpegs[1], jpegs[2])])
    assert len(results) == 4
    for got, want in zip(results, reference, strict=True):
        assert isinstance(got, torch.Tensor)
        assert (got - want).abs().max() < 0.02  # libjpeg + tensor resize against Pillow's
    torch.testing.assert_close(results[1], reference[1])  # the PNG took the CPU path in both


def test_a_jpeg_the_decoder_rejects_fails_alone(classifier: Classifier) -> None:
    good = encode(photo("chelsea"), "JPEG")
    truncated = good[: len(good) // 2]  # the header parses; the entropy data ends early
    items = [classifier.prepare(good), classifier.prepare(truncated)]
    assert all(isinstance(item, EncodedJpeg) for item in items)
    results = classifier.predict_batch(items)
    assert isinstance(results[0], torch.Tensor) and results[0].shape == (10,)
    assert isinstance(results[1], InvalidImage)


def test_a_batch_of_only_failures_never_reaches_the_model(classifier: Classifier) -> None:
    whole = encode(photo("coffee"), "JPEG")
    truncated = whole[: len(whole) // 3]
    assert isinstance(classifier.prepare(truncated), EncodedJpeg)
    (result,) = classifier.predict_batch([EncodedJpeg(truncated)])
    assert isinstance(result, InvalidImage)
