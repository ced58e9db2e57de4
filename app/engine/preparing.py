"""Where and how each image is decoded: on a CPU decode thread, reduced or exact, or left for the GPU.

The CPU path (``model.decoding.decode_for_eval``) gives the eval preset's uint8 crop. By default it decodes a
large JPEG at a reduced DCT scale (``SERVE_REDUCED_DECODE``); ``reduced=False`` is the exact reference path.
With ``SERVE_DECODE=gpu`` a JPEG is only checked on the CPU and decoded by nvJPEG together with its batch,
except where the GPU would waste work: extreme aspect ratios (the GPU would resize the whole strip) and
photos over ``GPU_DECODE_MAX_PIXELS``, which the reduced CPU path turns into a crop for a fraction of the
bytes a full-size GPU decode moves and holds. A batch's JPEGs are decoded on the GPU in groups of at most
``GPU_DECODE_PIXELS_PER_CALL`` pixels, so a batch of phone photos cannot take gigabytes of GPU memory at once.
``decode_threads`` sizes the thread pool the CPU side runs on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from app.engine.gpu_decode import decode_jpegs_on_device
from app.engine.imaging import decode_crop, open_image
from app.errors import ServiceError
from model import EvalPreset

MAX_AUTO_DECODE_THREADS = 32  # past this many, one process's interpreter lock is the bound, not the cores
_GPU_DECODABLE_MODES = ("RGB", "L")  # nvJPEG's RGB output; CMYK/YCCK JPEGs go through Pillow
# Past this a photo is decoded reduced on the CPU even when the GPU decodes. It splits what phones send in
# two: photos an app has already shrunk (about 2-3 MP; below it, on the GPU) and camera originals (12 MP and
# up). A 12 MP JPEG decoded at 1/4 scale costs 32-44 ms of one core on a decode thread (docs/benchmarks.md,
# "Reduced decoding"), while nvJPEG would decode its 36 MB of pixels inside the batch's call and resize them
# in float, holding up every other image of the batch. The GPU check's uploads stage measures both sides.
GPU_DECODE_MAX_PIXELS = 4_000_000
# One nvJPEG call decodes at most this many pixels (3 bytes each, plus the resize's float copies).
GPU_DECODE_PIXELS_PER_CALL = 64_000_000


@dataclass(frozen=True)
class EncodedJpeg:
    """A JPEG whose header passed the checks, left for the GPU to decode with its batch."""

    data: bytes
    pixels: int = 0


# What reaches the batcher: uint8 (3, crop, crop) pixels from the decode threads, a JPEG left for the GPU,
# or a float32 (3, crop, crop) tensor a client already normalised.
Item = torch.Tensor | EncodedJpeg
Result = torch.Tensor | ServiceError  # one probability vector (or pixels still to run), or the image's error


class ImagePreparer:
    """Decodes images for one checkpoint's eval preset, on the CPU or (JPEGs) on ``device``; ``gpu_max_pixels``
    and ``pixels_per_call`` default to ``GPU_DECODE_MAX_PIXELS`` and ``GPU_DECODE_PIXELS_PER_CALL``."""

    def __init__(
        self,
        preset: EvalPreset,
        *,
        max_image_pixels: int,
        reduced: bool = True,
        device: torch.device | None = None,
        gpu_max_pixels: int = GPU_DECODE_MAX_PIXELS,
        pixels_per_call: int = GPU_DECODE_PIXELS_PER_CALL,
    ) -> None:
        self.preset = preset
        self.max_image_pixels = max_image_pixels
        self.reduced = reduced
        self.device = device  # None: every image is decoded on the CPU
        self.gpu_max_pixels = gpu_max_pixels
        self.pixels_per_call = pixels_per_call

    def prepare(self, data: bytes) -> Item:
        """Image bytes -> uint8 (3, crop, crop) as the eval preset resizes and crops, or the checked JPEG for
        the GPU. Raises the image's ``ServiceError`` (invalid, unsupported, too large)."""
        header = open_image(data, self.max_image_pixels)
        if self.device is not None and self._for_gpu(header.format, header.mode, header.size):
            return EncodedJpeg(data, header.width * header.height)
        return decode_crop(header, self.preset, reduced=self.reduced)

    def _for_gpu(self, fmt: str | None, mode: str, size: tuple[int, int]) -> bool:
        if fmt != "JPEG" or mode not in _GPU_DECODABLE_MODES or not self.preset.resizes_whole(size):
            return False
        return not (self.reduced and size[0] * size[1] > self.gpu_max_pixels)

    def decode_batch(self, items: list[Item]) -> list[Result]:
        """The batch with its JPEGs decoded on the GPU (others as they are); a group nvJPEG refuses is decoded
        one by one on the CPU, so a bad file fails only its own slot."""
        jpegs = [item for item in items if isinstance(item, EncodedJpeg)]
        if not jpegs:
            return list(items)  # type: ignore[arg-type]  # without JPEGs every item is a tensor
        assert self.device is not None
        decoded: list[Result] = []
        for group in _groups(jpegs, self.pixels_per_call):
            try:
                batch = decode_jpegs_on_device([j.data for j in group], self.preset.preprocessing, self.device)
                decoded += batch.unbind(0)
            except RuntimeError:
                decoded += [self._on_cpu_or_error(j.data) for j in group]
        pending = iter(decoded)
        return [next(pending) if isinstance(item, EncodedJpeg) else item for item in items]

    def _on_cpu_or_error(self, data: bytes) -> Result:
        try:
            return decode_crop(open_image(data, self.max_image_pixels), self.preset, reduced=self.reduced)
        except ServiceError as exc:
            return exc


def _groups(jpegs: list[EncodedJpeg], max_pixels: int) -> Iterator[list[EncodedJpeg]]:
    """Consecutive groups whose pixels add up to at most ``max_pixels`` (a larger photo goes alone)."""
    group: list[EncodedJpeg] = []
    total = 0
    for jpeg in jpegs:
        if group and total + jpeg.pixels > max_pixels:
            yield group
            group, total = [], 0
        group.append(jpeg)
        total += jpeg.pixels
    if group:
        yield group


def decode_threads(requested: int, device: str, workers: int = 1, cores: int | None = None) -> int:
    """The decode pool's size for one server process: ``requested`` (``SERVE_DECODE_THREADS``), or for 0 one
    sized to the host, its usable ``cores`` (default: this process's CPU affinity) shared by ``workers``.

    With the model on the CPU (``device`` ``cpu``) the model's threads already use every core, and decode
    threads take cores from them: half the cores, and at least 2, which on 2 cores served 12 MP uploads at
    8 clients 3% faster than 1 thread with a lower p99, and 0.2 MP uploads the same (docs/benchmarks.md,
    "Decode threads"). With the model on a GPU the cores have little else to do: every one but one (the event
    loop's), at least 2 and at most ``MAX_AUTO_DECODE_THREADS``; a core decodes about 30 phone photos a second,
    so a GPU host with 2 threads would stop far below its model.
    """
    if requested:
        return requested
    per_worker = (cores or len(os.sched_getaffinity(0))) // max(workers, 1)
    if device.startswith("cuda"):
        return min(MAX_AUTO_DECODE_THREADS, max(2, per_worker - 1))
    return max(2, per_worker // 2)
