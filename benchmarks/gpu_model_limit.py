"""The GPU model-only limit: the service's torch backend by batch, precision and mode, no HTTP.

    python -m benchmarks.gpu_model_limit --out model_limit.json

Each point times ``TorchBackend.infer`` on uint8 images already on the device (normalise, forward,
softmax, probabilities back on the host), i.e. the batch step of the service once a batch is on the
GPU. ``eager`` runs the module; ``graphs`` replays the per-bucket CUDA graphs the service captures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from app.engine.backends.torch_backend import TorchBackend
from model import EvalPreset, Preprocessing, build_model

PRESET = EvalPreset(Preprocessing())  # 224-pixel crops, as ImageNet weights are served


def time_point(backend: TorchBackend, size: int, seconds: float) -> dict[str, float]:
    """Median wall time of one batch of ``size``, after three unmeasured runs."""
    batch = torch.randint(0, 256, (size, 3, 224, 224), dtype=torch.uint8, device=backend.device)
    for _ in range(3):
        backend.infer(batch)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(latencies) < 5:
        start = time.perf_counter()
        backend.infer(batch)  # returns host memory, so it has waited for the GPU
        latencies.append(time.perf_counter() - start)
    median = statistics.median(latencies)
    return {"batch": size, "median_ms": median * 1e3, "images_per_s": size / median}


def measure(precision: str, mode: str, batches: list[int], seconds: float, device: str) -> list[dict[str, Any]]:
    backend = TorchBackend(
        build_model(1000), PRESET, device=device, precision=precision, threads=0, cuda_graphs=mode == "graphs"
    )
    backend.warmup(max(batches))
    if mode == "graphs" and device != "cpu" and not backend.graphs:
        raise RuntimeError("CUDA graph capture failed; see the warning above")
    points = []
    for size in batches:
        point = time_point(backend, size, seconds)
        points.append({"precision": precision, "mode": mode, **point})
        print(f"{precision:5} {mode:6} batch {size:4}: {point['images_per_s']:9.0f} img/s {point['median_ms']:8.2f} ms")
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="JSON results file")
    parser.add_argument("--batches", default="1,2,4,8,16,32,64,128,256", help="batch sizes (default: %(default)s)")
    parser.add_argument("--precisions", default="fp16,bf16,fp32", help="(default: %(default)s)")
    parser.add_argument("--modes", default="graphs,eager", help="(default: %(default)s)")
    parser.add_argument("--device", default="cuda:0", help="cpu for a dry run (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=0.2, help="timed seconds per point (default: %(default)s)")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    points: list[dict[str, Any]] = []
    for precision in args.precisions.split(","):
        for mode in args.modes.split(","):
            try:
                points += measure(precision, mode, batches, args.seconds, args.device)
            except RuntimeError as exc:  # one failed configuration must not hide the others
                print(f"{precision} {mode}: FAILED: {exc}")
                points.append({"precision": precision, "mode": mode, "error": str(exc)})
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            # Write after every configuration: a stage killed by its time limit keeps what it measured.
            args.out.write_text(json.dumps({"device": device_info(), "points": points}, indent=1))


def device_info() -> dict[str, Any]:
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda}


if __name__ == "__main__":
    main()
