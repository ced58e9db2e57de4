"""PyTorch eager execution on the CPU or a CUDA device (channels_last, fp32/fp16/bf16).

uint8 pixels travel to the device and are normalised there: a quarter of the bytes of a float batch.
"""

from __future__ import annotations

import torch
from torch import nn

from model import EvalPreset

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchBackend:
    """Eager PyTorch; the model is moved to ``device`` and cast to ``precision`` in place."""

    name = "torch"

    def __init__(self, model: nn.Module, preset: EvalPreset, *, device: str, precision: str, threads: int) -> None:
        self.device = device
        self.precision = precision
        self._device = torch.device(device)
        self._dtype = DTYPES[precision]
        self._preset = preset
        if self._device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
        elif threads:
            torch.set_num_threads(threads)
        model = model.to(device=self._device, dtype=self._dtype)
        self._model = model.to(memory_format=torch.channels_last).eval()

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) on the CPU -> fp32 probabilities (N, C) on the CPU."""
        images = batch.to(self._device, non_blocking=True)
        images = self._preset.normalize(images, self._dtype).contiguous(memory_format=torch.channels_last)
        logits = self._model(images)
        return torch.softmax(logits.float(), dim=1).cpu()

    def warmup(self, max_batch_size: int) -> None:
        """One pass per batch size on CUDA (cuDNN tunes each shape once); the extremes on the CPU."""
        if self._device.type == "cuda":
            sizes = sorted({1 << i for i in range(max_batch_size.bit_length())} | {max_batch_size})
        else:
            sizes = sorted({1, max_batch_size})
        crop = self._preset.preprocessing.crop_size
        for size in sizes:
            self.infer(torch.zeros(size, 3, crop, crop, dtype=torch.uint8))
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)
