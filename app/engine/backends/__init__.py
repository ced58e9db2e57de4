"""Inference backends behind one small interface, and the choice of device, backend and precision.

A backend takes a uint8 batch on the CPU and returns fp32 probabilities on the CPU; where the
normalisation and the forward pass run (torch eager on CPU/CUDA, ONNX Runtime on CPU) is its own
business. New execution paths (CUDA graphs, pinned buffers) go behind the same ``Backend`` seam.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from app.config import ConfigError, Settings
from app.engine.backends.onnx_backend import OnnxBackend
from app.engine.backends.torch_backend import TorchBackend
from model import Checkpoint, EvalPreset


class Backend(Protocol):
    """What the classifier needs from an execution path."""

    name: str  # "torch" | "onnxruntime"
    device: str  # "cpu", "cuda:0"
    precision: str  # "fp32" | "fp16" | "bf16"

    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) on the CPU (or a CUDA backend's device) -> fp32 probabilities (N, C) on the CPU."""
        ...

    def warmup(self, max_batch_size: int) -> None:
        """Run the shapes the service will see, so the first requests are not the slow ones."""
        ...


@dataclass(frozen=True)
class Runtime:
    """The resolved execution plan: no ``auto`` left in it."""

    device: str
    backend: str
    precision: str
    decode: str = "cpu"


def plan_runtime(settings: Settings) -> Runtime:
    """The plan for ``settings`` on this machine's CUDA devices (``resolve_runtime``)."""
    return resolve_runtime(
        device=settings.device,
        backend=settings.backend,
        precision=settings.precision,
        decode=settings.decode,
        cuda_devices=torch.cuda.device_count(),
    )


def resolve_runtime(*, device: str, backend: str, precision: str, decode: str, cuda_devices: int) -> Runtime:
    """Turn the ``auto`` settings into a concrete plan; refuse combinations that cannot run."""
    device = _resolve_device(device, cuda_devices)
    on_cuda = device.startswith("cuda")
    if backend == "auto":
        backend = "torch" if on_cuda else "onnxruntime"
    if precision == "auto":
        precision = "fp16" if on_cuda else "fp32"
    if backend == "onnxruntime" and on_cuda:
        raise ConfigError(
            f"SERVE_BACKEND=onnxruntime runs on the CPU only, but SERVE_DEVICE resolves to {device}: "
            "set SERVE_DEVICE=cpu or SERVE_BACKEND=torch"
        )
    if backend == "onnxruntime" and precision != "fp32":
        raise ConfigError(
            f"SERVE_BACKEND=onnxruntime runs fp32 only, but SERVE_PRECISION={precision}: "
            "set SERVE_PRECISION=fp32 (or auto), or SERVE_BACKEND=torch"
        )
    if decode == "gpu" and not on_cuda:
        raise ConfigError(
            "SERVE_DECODE=gpu needs a CUDA device, but SERVE_DEVICE resolves to cpu: set SERVE_DECODE=cpu"
        )
    return Runtime(device=device, backend=backend, precision=precision, decode=decode)


def _resolve_device(device: str, cuda_devices: int) -> str:
    if device == "auto":
        return "cuda:0" if cuda_devices else "cpu"
    if device == "cpu":
        return device
    index = int(device.partition(":")[2] or 0)
    if index >= cuda_devices:
        found = "no CUDA device is available" if not cuda_devices else f"only {cuda_devices} CUDA device(s) exist"
        raise ConfigError(f"SERVE_DEVICE={device}: {found}")
    return f"cuda:{index}"


def create_backend(
    runtime: Runtime,
    checkpoint: Checkpoint,
    preset: EvalPreset,
    *,
    threads: int,
    onnx_cache_dir: Path | None,
    cuda_graphs: bool = True,
) -> Backend:
    """Build the backend the plan names; it takes ownership of ``checkpoint.model``."""
    if runtime.backend == "onnxruntime":
        return OnnxBackend(checkpoint, preset, threads=threads, cache_dir=onnx_cache_dir)
    return TorchBackend(
        checkpoint.model,
        preset,
        device=runtime.device,
        precision=runtime.precision,
        threads=threads,
        cuda_graphs=cuda_graphs,
    )
