"""The served model: a checkpoint, its own preprocessing, and a backend to run it.

Work is split by where it runs: ``prepare`` (decode + resize + crop to uint8) on the decode threads,
``predict_batch`` (normalise + forward + softmax) on the model thread, ``top_k`` on the event loop.
With ``SERVE_DECODE=gpu`` ``prepare`` only checks a JPEG's header and ``predict_batch`` decodes the
batch's JPEGs together on the GPU; other formats, and JPEGs nvJPEG rejects, take the CPU path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from app.backends import Backend, Runtime, create_backend
from app.errors import ServiceError
from app.gpu_decode import decode_jpegs_on_device
from app.imaging import decode_image, open_image
from model import Checkpoint, EvalPreset, load_checkpoint

log = logging.getLogger(__name__)
_GPU_DECODABLE_MODES = ("RGB", "L")  # nvJPEG's RGB output; CMYK/YCCK JPEGs go through Pillow


@dataclass(frozen=True)
class EncodedJpeg:
    """A JPEG whose header passed the checks, left for the GPU to decode with its batch."""

    data: bytes


Item = torch.Tensor | EncodedJpeg  # what the decode threads hand to the batcher
Result = torch.Tensor | ServiceError  # one probability vector, or the error that image alone caused


@dataclass(frozen=True)
class Prediction:
    """One ranked class with its softmax probability."""

    rank: int
    class_id: int
    label: str
    score: float


class Classifier:
    """Bytes -> uint8 tensor -> probabilities -> ranked labels, for one checkpoint."""

    def __init__(
        self, checkpoint: Checkpoint, backend: Backend, *, max_image_pixels: int, decode_on_device: bool = False
    ) -> None:
        self.checkpoint = checkpoint
        self.backend = backend
        self.preset = EvalPreset(checkpoint.preprocessing)
        self.max_image_pixels = max_image_pixels
        self.decode_on_device = decode_on_device

    @property
    def version(self) -> str:
        return self.checkpoint.version

    def prepare(self, data: bytes) -> Item:
        """Image bytes -> uint8 (3, crop, crop), exactly as the checkpoint's eval preset resizes and crops;
        or, when decoding on the GPU, the checked JPEG itself."""
        if self.decode_on_device:
            header = open_image(data, self.max_image_pixels)
            # An extreme aspect ratio would make the GPU resize the whole strip: the CPU path resizes
            # only the region the crop keeps.
            if (
                header.format == "JPEG"
                and header.mode in _GPU_DECODABLE_MODES
                and self.preset.resizes_whole(header.size)
            ):
                return EncodedJpeg(data)
        return self.decode_on_cpu(data)

    def decode_on_cpu(self, data: bytes) -> torch.Tensor:
        """The reference path: Pillow decode, then the eval preset's resize and crop."""
        return self.preset.to_uint8(decode_image(data, self.max_image_pixels))

    def predict_batch(self, items: list[Item]) -> list[Result]:
        """Prepared images -> one fp32 probability vector each (or that image's error), in order."""
        tensors = [item for item in items if isinstance(item, torch.Tensor)]
        if len(tensors) == len(items):  # the CPU-decode path: one stack, one forward
            return list(self.backend.infer(torch.stack(tensors)).unbind(0))
        results = self._decode_encoded(items)
        live = [i for i, pixels in enumerate(results) if isinstance(pixels, torch.Tensor)]
        if live:
            device = torch.device(self.backend.device)
            batch = torch.stack([r.to(device) for r in results if isinstance(r, torch.Tensor)])
            for i, row in zip(live, self.backend.infer(batch).unbind(0), strict=True):
                results[i] = row
        return results

    def _decode_encoded(self, items: list[Item]) -> list[Result]:
        """Decode the batch's JPEGs together on the GPU; if nvJPEG refuses the lot, one by one on the CPU."""
        blobs = [item.data for item in items if isinstance(item, EncodedJpeg)]
        try:
            device = torch.device(self.backend.device)
            decoded: list[Result] = list(decode_jpegs_on_device(blobs, self.checkpoint.preprocessing, device))
        except RuntimeError:
            decoded = [self._decode_or_error(blob) for blob in blobs]
        pending = iter(decoded)
        return [next(pending) if isinstance(item, EncodedJpeg) else item for item in items]

    def _decode_or_error(self, data: bytes) -> Result:
        try:
            return self.decode_on_cpu(data)
        except ServiceError as exc:
            return exc

    def top_k(self, probs: torch.Tensor, k: int) -> list[Prediction]:
        """The ``k`` most probable classes, best first."""
        scores, ids = probs.topk(min(k, probs.numel()))
        labels = self.checkpoint.labels
        return [
            Prediction(rank=rank, class_id=int(i), label=labels[int(i)], score=float(s))
            for rank, (s, i) in enumerate(zip(scores.tolist(), ids.tolist(), strict=True), start=1)
        ]

    def describe(self) -> dict[str, Any]:
        """The model's metadata for ``GET /model``."""
        ckpt = self.checkpoint
        return {
            "name": ckpt.arch,
            "version": ckpt.version,
            "arch": ckpt.arch,
            "num_classes": ckpt.num_classes,
            "trained": ckpt.trained,
            "source": ckpt.source,
            "created_at": ckpt.created_at,
            "device": self.backend.device,
            "precision": self.backend.precision,
            "backend": self.backend.name,
            "preprocessing": {
                "resize_size": ckpt.preprocessing.resize_size,
                "crop_size": ckpt.preprocessing.crop_size,
                "mean": list(ckpt.preprocessing.mean),
                "std": list(ckpt.preprocessing.std),
                "interpolation": ckpt.preprocessing.interpolation,
            },
            "metrics": ckpt.metrics,
        }


def load_classifier(
    model_path: Path,
    runtime: Runtime,
    *,
    max_batch_size: int,
    max_image_pixels: int,
    threads: int,
    onnx_cache_dir: Path | None,
    cuda_graphs: bool = True,
) -> Classifier:
    """Load the checkpoint, build its backend and warm it up; slow (seconds), so run it off the loop."""
    checkpoint = load_checkpoint(model_path)
    if not checkpoint.trained:
        log.warning(
            "SERVING AN UNTRAINED MODEL: %s has trained=false (source %s); its predictions are meaningless",
            model_path,
            checkpoint.source,
        )
    preset = EvalPreset(checkpoint.preprocessing)
    backend = create_backend(
        runtime, checkpoint, preset, threads=threads, onnx_cache_dir=onnx_cache_dir, cuda_graphs=cuda_graphs
    )
    backend.warmup(max_batch_size)
    return Classifier(checkpoint, backend, max_image_pixels=max_image_pixels, decode_on_device=runtime.decode == "gpu")
