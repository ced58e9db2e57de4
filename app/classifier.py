"""The served model: a checkpoint, its own preprocessing, and a backend to run it.

Work is split by where it runs: ``prepare`` (decode + resize + crop to uint8) on the decode threads,
``predict_batch`` (normalise + forward + softmax) on the model thread, ``top_k`` on the event loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from app.backends import Backend, Runtime, create_backend
from app.imaging import decode_image
from model import Checkpoint, EvalPreset, load_checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One ranked class with its softmax probability."""

    rank: int
    class_id: int
    label: str
    score: float


class Classifier:
    """Bytes -> uint8 tensor -> probabilities -> ranked labels, for one checkpoint."""

    def __init__(self, checkpoint: Checkpoint, backend: Backend, *, max_image_pixels: int) -> None:
        self.checkpoint = checkpoint
        self.backend = backend
        self.preset = EvalPreset(checkpoint.preprocessing)
        self.max_image_pixels = max_image_pixels

    @property
    def version(self) -> str:
        return self.checkpoint.version

    def prepare(self, data: bytes) -> torch.Tensor:
        """Image bytes -> uint8 (3, crop, crop), exactly as the checkpoint's eval preset resizes and crops.

        This is the CPU decode path; a GPU decoder (``SERVE_DECODE=gpu``) would branch here.
        """
        return self.preset.to_uint8(decode_image(data, self.max_image_pixels))

    def predict_batch(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        """uint8 images -> one fp32 probability vector each, in order."""
        probs = self.backend.infer(torch.stack(images))
        return list(probs.unbind(0))

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
    backend = create_backend(runtime, checkpoint, preset, threads=threads, onnx_cache_dir=onnx_cache_dir)
    backend.warmup(max_batch_size)
    return Classifier(checkpoint, backend, max_image_pixels=max_image_pixels)
