"""The model-only limit: the backend's forward pass in process (no HTTP, no decode) per batch size.

This is the ceiling the service is measured against: uint8 batch in, probabilities out, through
the same backend class and thread settings the service uses.

    python -m benchmarks.model_limit --model .bench/random.safetensors --backend onnxruntime
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from app.engine.backends import Backend, Runtime, create_backend
from model import EvalPreset, load_checkpoint

BATCH_SIZES = (1, 2, 4, 8, 16, 32)


@dataclass(frozen=True)
class LimitPoint:
    batch_size: int
    median_ms: float
    images_per_s: float
    cpu_ms_per_image: float  # CPU time of all the process's threads: robust to other load on the machine


def load_backend(model_path: Path, backend: str, cache_dir: Path | None = None) -> tuple[Backend, int]:
    """The backend the service would build on the CPU, and its crop size."""
    checkpoint = load_checkpoint(model_path)
    preset = EvalPreset(checkpoint.preprocessing)
    runtime = Runtime(device="cpu", backend=backend, precision="fp32")
    built = create_backend(runtime, checkpoint, preset, threads=0, onnx_cache_dir=cache_dir)
    return built, checkpoint.preprocessing.crop_size


def measure(backend: Backend, crop: int, batch_size: int, min_time_s: float = 2.0, min_runs: int = 5) -> LimitPoint:
    """Median time of one forward pass at ``batch_size`` after one warm-up pass."""
    batch = torch.randint(0, 256, (batch_size, 3, crop, crop), dtype=torch.uint8)
    backend.infer(batch)
    times: list[float] = []
    began, cpu_began = time.perf_counter(), time.process_time()
    while len(times) < min_runs or time.perf_counter() - began < min_time_s:
        start = time.perf_counter()
        backend.infer(batch)
        times.append(time.perf_counter() - start)
    cpu_ms = (time.process_time() - cpu_began) * 1000 / (len(times) * batch_size)
    median = statistics.median(times)
    return LimitPoint(batch_size, median * 1000, batch_size / median, cpu_ms)


def model_limit(backend: Backend, crop: int, batch_sizes: tuple[int, ...] = BATCH_SIZES) -> list[LimitPoint]:
    return [measure(backend, crop, size) for size in batch_sizes]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a .safetensors checkpoint")
    parser.add_argument(
        "--backend", choices=["torch", "onnxruntime"], default="onnxruntime", help="default: %(default)s"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    backend, crop = load_backend(args.model, args.backend)
    print(json.dumps([asdict(point) for point in model_limit(backend, crop)], indent=2))


if __name__ == "__main__":
    main()
