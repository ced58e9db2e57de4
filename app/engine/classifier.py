"""The served model: a checkpoint, its own preprocessing, and a backend to run it.

Work is split by where it runs: ``prepare`` (decode + resize + crop to uint8, app/engine/preparing.py) on the
decode threads, ``predict_batch`` (normalise + forward + softmax) on the model thread. Clients that send
tensors already normalised (the Open Inference Protocol's FP32 input) skip ``prepare``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from app.engine.backends import Backend, Runtime, create_backend
from app.engine.preparing import EncodedJpeg, ImagePreparer, Item, Result
from model import Checkpoint, EvalPreset, load_checkpoint
from model.checkpoint import MAX_CHECKPOINT_BYTES

log = logging.getLogger(__name__)
__all__ = ["Classifier", "EncodedJpeg", "Item", "Result", "load_classifier"]


class Classifier:
    """Bytes -> uint8 tensor -> probabilities -> ranked labels, for one checkpoint."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        backend: Backend,
        *,
        max_image_pixels: int,
        decode_on_device: bool = False,
        reduced_decode: bool = True,
    ) -> None:
        self.checkpoint = checkpoint
        self.backend = backend
        self.preset = EvalPreset(checkpoint.preprocessing)
        device = torch.device(backend.device) if decode_on_device else None
        self.preparer = ImagePreparer(
            self.preset, max_image_pixels=max_image_pixels, reduced=reduced_decode, device=device
        )

    @property
    def version(self) -> str:
        return self.checkpoint.version

    def prepare(self, data: bytes) -> Item:
        """Image bytes -> what the batcher takes (see ``ImagePreparer.prepare``); runs on a decode thread."""
        return self.preparer.prepare(data)

    def predict_batch(self, items: list[Item]) -> list[Result]:
        """Prepared images -> one fp32 probability vector each (or that image's error), in order."""
        results = self.preparer.decode_batch(items)
        inputs = {i: r for i, r in enumerate(results) if isinstance(r, torch.Tensor)}  # the rest: images' errors
        # uint8 pixels and client-normalised floats run apart; both in one batch happens only when both kinds
        # of client arrive within one batch window.
        for floating in (False, True):
            rows = {i: tensor for i, tensor in inputs.items() if tensor.is_floating_point() == floating}
            if rows:
                for i, row in zip(rows, self.backend.infer(_stack(list(rows.values()))).unbind(0), strict=True):
                    results[i] = row
        return results


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """One batch; where GPU decoding left some images on the device, all of them go there."""
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        device = next(d for d in devices if d.type != "cpu")
        tensors = [t.to(device) for t in tensors]
    return torch.stack(tensors)


def load_classifier(
    model_path: Path,
    runtime: Runtime,
    *,
    max_batch_size: int,
    max_image_pixels: int,
    threads: int,
    onnx_cache_dir: Path | None,
    cuda_graphs: bool = True,
    reduced_decode: bool = True,
    max_model_bytes: int = MAX_CHECKPOINT_BYTES,
) -> Classifier:
    """Load the checkpoint (at most ``max_model_bytes``), build its backend and warm it up; slow (seconds), so
    run it off the loop."""
    checkpoint = load_checkpoint(model_path, max_bytes=max_model_bytes)
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
    return Classifier(
        checkpoint,
        backend,
        max_image_pixels=max_image_pixels,
        decode_on_device=runtime.decode == "gpu",
        reduced_decode=reduced_decode,
    )
