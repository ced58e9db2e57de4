"""PyTorch on the CPU or a CUDA device (channels_last, fp32/fp16/bf16).

uint8 pixels travel to the device and are normalised there: a quarter of the bytes of a float batch.
On CUDA every batch bucket (1, 2, 4, …, max) is captured once as a CUDA graph at warm-up and batches
are padded up to their bucket; if capture fails the backend says so and stays eager.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from app.engine.backends.buckets import batch_buckets
from app.engine.backends.cuda_graphs import GraphedForward
from model import EvalPreset

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
log = logging.getLogger(__name__)


class TorchBackend:
    """PyTorch; the model is moved to ``device`` and cast to ``precision`` in place."""

    name = "torch"

    def __init__(
        self,
        model: nn.Module,
        preset: EvalPreset,
        *,
        device: str,
        precision: str,
        threads: int,
        cuda_graphs: bool = True,
    ) -> None:
        self.device = device
        self.precision = precision
        self._device = torch.device(device)
        self._dtype = DTYPES[precision]
        self._preset = preset
        self._use_graphs = cuda_graphs and self._device.type == "cuda"
        self._graphed: GraphedForward | None = None
        if self._device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
        elif threads:
            torch.set_num_threads(threads)
        model = model.to(device=self._device, dtype=self._dtype)
        self._model = model.to(memory_format=torch.channels_last).eval()

    @property
    def graphs(self) -> bool:
        """Whether batches run as captured CUDA graphs."""
        return self._graphed is not None

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) on the device -> fp32 probabilities (N, C) on the device."""
        return self._classify(self._preset.normalize(batch, self._dtype))

    def _classify(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images on the device -> fp32 probabilities (N, C) on the device."""
        images = images.to(self._dtype).contiguous(memory_format=torch.channels_last)
        return torch.softmax(self._model(images).float(), dim=1)

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W), or float32 already normalised, on the CPU or the device -> fp32 probabilities
        (N, C) on the CPU. Normalised input runs eager: the CUDA graphs are captured for uint8 input."""
        try:
            if batch.is_floating_point():
                return self._classify(batch.to(self._device, non_blocking=True)).cpu()
            if self._graphed is not None:
                return self._graphed(batch)
            return self.forward(batch.to(self._device, non_blocking=True)).cpu()
        except torch.cuda.OutOfMemoryError:
            # Give cached blocks back so the next batch can succeed; this one fails its own requests.
            torch.cuda.empty_cache()
            raise

    def warmup(self, max_batch_size: int) -> None:
        """CUDA: capture (or tune, if eager) every bucket; CPU: run the extremes once."""
        crop = self._preset.preprocessing.crop_size
        if self._use_graphs:
            self._capture(max_batch_size, crop)
        sizes = batch_buckets(max_batch_size) if self._device.type == "cuda" else sorted({1, max_batch_size})
        for size in sizes:
            self.infer(torch.zeros(size, 3, crop, crop, dtype=torch.uint8))
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    def _capture(self, max_batch_size: int, crop: int) -> None:
        head = self._model.fc
        assert isinstance(head, nn.Linear)
        graphed = GraphedForward(
            self.forward,
            device=self._device,
            image_shape=(3, crop, crop),
            num_classes=head.out_features,
            max_batch_size=max_batch_size,
        )
        try:
            graphed.capture()
        except RuntimeError as exc:  # e.g. out of memory while capturing the largest bucket
            log.warning("CUDA graph capture failed, serving eager instead: %s", exc)
            torch.cuda.empty_cache()
            return
        self._graphed = graphed
