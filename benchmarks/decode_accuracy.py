"""Reduced decoding against the exact path: pixel differences, time, and what a model answers.

    python -m benchmarks.decode_accuracy                                  # pixels and time
    python -m benchmarks.decode_accuracy --model O/model.safetensors      # and the model's probabilities

Per photo (scikit-image's, made into 2, 12 and 24 MP phone JPEGs by ``benchmarks.photos``, and mosaics
of its finest textures at the smallest size each DCT scale is used at): the DCT scale the reduced path
decodes at, the 224 crops' PSNR and mean absolute difference, the CPU time of
each path (best of ``--repeats``; Pillow decodes and resizes in the calling thread, and its CPU time,
unlike wall time, barely moves with other load on a shared machine), and with ``--model`` the largest
difference between the two paths' class probabilities; "margin 1" is what a reduction that kept only
the resize size itself would give (``model.decoding.MARGIN``). Then the same for PNG, WebP and TIFF, whose
reduced path only resizes block-wise first. The tests in tests/model/test_decoding.py assert the bounds
on the same photos.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from benchmarks.images import PHOTOS
from benchmarks.photos import QUALITIES, add_camera_noise, encode_jpeg, phone_photo, scikit_photo, texture_mosaic
from model import EvalPreset, Preprocessing, load_checkpoint
from model.decoding import MARGIN, dct_scale, decode_for_eval

SIZES = {"2MP": (1632, 1224), "12MP": (4032, 3024), "24MP": (5664, 4248)}
# The smallest images decoded at 1/2, 1/4 and 1/8 for resize 232: the least margin each scale leaves.
TEXTURE_SIZES = {"1/2": (1237, 928), "1/4": (2475, 1856), "1/8": (4949, 3712)}
OTHER_FORMATS = ("PNG", "WEBP", "TIFF")


@dataclass(frozen=True)
class Case:
    """One test photo: which picture, its size class, and the JPEG bytes."""

    photo: str
    size: str
    quality: int
    orientation: int
    data: bytes


def jpeg_cases(sizes: tuple[str, ...] = tuple(SIZES)) -> Iterator[Case]:
    """Every photo at every size (every other one stored sideways with an EXIF orientation), then the
    texture mosaics at the sizes each DCT scale starts at."""
    for label in sizes:
        for i, photo in enumerate(PHOTOS):
            quality, orientation = QUALITIES[i], 6 if i % 2 else 1
            data = phone_photo(photo, SIZES[label], quality=quality, orientation=orientation, seed=i)
            yield Case(photo, label, quality, orientation, data)
    for size in TEXTURE_SIZES.values():
        data = encode_jpeg(texture_mosaic(size), quality=92)
        yield Case("textures", f"{size[0]}x{size[1]}", 92, 1, data)


def other_format(photo: str, size: tuple[int, int], fmt: str) -> bytes:
    """``photo`` at ``size`` with camera noise, losslessly (PNG, TIFF) or at WebP quality 90."""
    buffer = io.BytesIO()
    params = {"quality": 90} if fmt == "WEBP" else {}
    add_camera_noise(scikit_photo(photo).resize(size, Image.Resampling.LANCZOS), seed=0).save(buffer, fmt, **params)
    return buffer.getvalue()


def crop(data: bytes, preset: EvalPreset, reduced: bool, margin: int = MARGIN) -> Tensor:
    """The uint8 crop the service would make of ``data`` (another ``margin`` only to compare)."""
    return decode_for_eval(Image.open(io.BytesIO(data)), preset, reduced=reduced, margin=margin)


def difference(a: Tensor, b: Tensor) -> tuple[float, float, int]:
    """PSNR (dB), mean absolute difference and largest difference (grey levels) of two uint8 crops."""
    diff = a.to(torch.float64) - b.to(torch.float64)
    mse = float(diff.square().mean())
    psnr = 10 * np.log10(255**2 / mse) if mse else float("inf")
    return psnr, float(diff.abs().mean()), int(diff.abs().max())


def best_ms(data: bytes, preset: EvalPreset, reduced: bool, repeats: int) -> float:
    """The least CPU time of ``repeats`` decodes (open, decode, resize, crop), in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        crop(data, preset, reduced)
        times.append(time.thread_time() - start)
    return 1000 * min(times)


@torch.inference_mode()
def probabilities(model: torch.nn.Module, preset: EvalPreset, crops: list[Tensor]) -> Tensor:
    """The model's class probabilities for uint8 crops, as the service computes them (fp32)."""
    return torch.softmax(model(preset.normalize(torch.stack(crops))), dim=1)


def jpeg_row(case: Case, preset: EvalPreset, repeats: int, model: torch.nn.Module | None) -> str:
    exact, reduced = crop(case.data, preset, False), crop(case.data, preset, True)
    psnr, mad, largest = difference(reduced, exact)
    bare_psnr, bare_mad, _ = difference(crop(case.data, preset, True, margin=1), exact)
    with Image.open(io.BytesIO(case.data)) as header:
        scale = dct_scale(header.size, preset.preprocessing.resize_size)
    exact_ms, reduced_ms = best_ms(case.data, preset, False, repeats), best_ms(case.data, preset, True, repeats)
    row = (
        f"| {case.photo} | {case.size} | {len(case.data) / 1e6:.2f} | q{case.quality}, o{case.orientation} | 1/{scale} "
        f"| {exact_ms:.1f} | {reduced_ms:.1f} | {psnr:.1f} | {mad:.2f} | {largest} | {bare_psnr:.1f}, {bare_mad:.2f} |"
    )
    if model is not None:
        probs = probabilities(model, preset, [exact, reduced])
        same = int(probs[0].argmax()) == int(probs[1].argmax())
        row += f" {float((probs[0] - probs[1]).abs().max()):.5f} | {'yes' if same else 'no'} |"
    return row


def format_row(fmt: str, label: str, preset: EvalPreset, repeats: int) -> str:
    data = other_format("coffee", SIZES[label], fmt)
    psnr, mad, largest = difference(crop(data, preset, True), crop(data, preset, False))
    exact_ms, reduced_ms = best_ms(data, preset, False, repeats), best_ms(data, preset, True, repeats)
    times = f"{exact_ms:.1f} | {reduced_ms:.1f}"
    return f"| {fmt} | {label} | {len(data) / 1e6:.1f} | {times} | {psnr:.1f} | {mad:.2f} | {largest} |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a checkpoint whose probabilities to compare, with its own preprocessing")
    parser.add_argument("--sizes", default=",".join(SIZES), help="size classes (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed decodes per path, best kept (default: 3)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    checkpoint = load_checkpoint(args.model) if args.model else None
    preset = EvalPreset(checkpoint.preprocessing if checkpoint else Preprocessing())
    model = checkpoint.model if checkpoint else None
    print(f"preprocessing: resize {preset.preprocessing.resize_size}, crop {preset.preprocessing.crop_size}")
    header = (
        "| photo | size | MB | JPEG | scale | exact CPU ms | reduced CPU ms | PSNR dB | mean abs diff | max diff "
        "| margin 1: dB, mean |"
    )
    print(header + (" max prob diff | same top-1 |" if model else ""))
    print("|---" * (header.count("|") - 1 + (2 if model else 0)) + "|")
    sizes = tuple(args.sizes.split(","))
    for case in jpeg_cases(sizes):
        print(jpeg_row(case, preset, args.repeats, model), flush=True)
    print("\n| format | size | MB | exact CPU ms | reduced CPU ms | PSNR dB | mean abs diff | max diff |")
    print("|---|---|---|---|---|---|---|---|")
    for fmt in OTHER_FORMATS:
        for label in sizes[:2]:
            print(format_row(fmt, label, preset, args.repeats), flush=True)


if __name__ == "__main__":
    main()
