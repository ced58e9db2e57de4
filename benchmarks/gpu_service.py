"""The service on a GPU, end to end: real JPEG uploads over HTTP at several client counts.

    python -m benchmarks.gpu_service --out service.json

Starts ``python -m app`` on CUDA with a random-init 1000-class checkpoint (224-pixel crops, the cost
of real ImageNet weights), then drives it closed-loop from several load-generator processes so the
generator is not the bottleneck. Per point it records throughput, latency percentiles and, from the
service's own histograms, where the time went (decode, queue, batch). Runs with CPU decoding and
again with ``SERVE_DECODE=gpu``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from skimage import data

from benchmarks.cpu import start_server, stop_server
from benchmarks.images import benchmark_jpegs
from benchmarks.loadgen import Connection, Sample, _timed, build_requests, summarize
from model.convert import write_random_init

STEPS = ("inference_decode_duration_seconds", "inference_queue_wait_seconds", "inference_batch_duration_seconds")


def single_photo_jpeg() -> bytes:
    """A 500x375 photograph, the size the single-client latency target names."""
    buffer = io.BytesIO()
    Image.fromarray(data.coffee()).resize((500, 375), Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _clients(
    url: str, payloads: list[bytes], first: int, count: int, stride: int, begin: float, end: float
) -> list[Sample]:
    """One generator process: ``count`` keep-alive clients sending back to back until ``end``."""

    async def run() -> list[Sample]:
        await asyncio.sleep(max(0.0, begin - time.perf_counter()))  # perf_counter is system-wide on Linux
        samples: list[Sample] = []

        async def client(turn: int) -> None:
            conn = Connection(url)
            while (now := time.perf_counter()) < end:
                samples.append(await _timed(conn, payloads[turn % len(payloads)], now))
                turn += stride
            conn.close()

        await asyncio.gather(*(client(first + i) for i in range(count)))
        return samples

    return asyncio.run(run())


def closed_loop(
    url: str, payloads: list[bytes], clients: int, seconds: float, warmup: float, procs: int
) -> dict[str, Any]:
    """``clients`` connections spread over ``procs`` processes; only requests started after warm-up count."""
    procs = max(1, min(procs, clients))
    begin = time.perf_counter() + 1.0
    measure_from, end = begin + warmup, begin + warmup + seconds
    shares = [clients // procs + (i < clients % procs) for i in range(procs)]
    firsts = [sum(shares[:i]) for i in range(procs)]
    with ProcessPoolExecutor(procs) as pool:
        jobs = [
            pool.submit(_clients, url, payloads, f, n, clients, begin, end) for f, n in zip(firsts, shares, strict=True)
        ]
        samples = [s for job in jobs for s in job.result() if s.started >= measure_from]
    return summarize("closed", samples, measure_from, clients=clients).to_dict()


def step_totals(url: str) -> dict[str, float]:
    """Sums and counts of the service's step histograms (for per-point deltas)."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        for sample in family.samples:
            base = sample.name.removesuffix("_sum").removesuffix("_count")
            if base != sample.name and base in (*STEPS, "inference_batch_size"):
                totals[sample.name] = sample.value
    return totals


def breakdown(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Mean milliseconds per image of each step, and the mean batch size, between two scrapes."""

    def mean(name: str) -> float:
        count = after.get(f"{name}_count", 0) - before.get(f"{name}_count", 0)
        return (after.get(f"{name}_sum", 0) - before.get(f"{name}_sum", 0)) / count if count else 0.0

    out = {name.removeprefix("inference_").removesuffix("_seconds") + "_ms": mean(name) * 1000 for name in STEPS}
    out["mean_batch_size"] = mean("inference_batch_size")
    return out


def run_points(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    photos = build_requests(url, benchmark_jpegs())
    single = build_requests(url, [single_photo_jpeg()])
    points = []
    for clients in [1, *args.clients]:
        payloads = single if clients == 1 else photos
        before = step_totals(url)
        result = closed_loop(url, payloads, clients, args.seconds, args.warmup, args.procs)
        result.update(breakdown(before, step_totals(url)))
        print(json.dumps(result))
        points.append(result)
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="JSON results file")
    parser.add_argument("--clients", default="32,128,256", help="client counts besides 1 (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=5, help="measured seconds per point (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first (default: %(default)s)")
    parser.add_argument("--procs", type=int, default=max(1, (os.cpu_count() or 4) // 4), help="generator processes")
    parser.add_argument("--decodes", default="cpu,gpu", help="SERVE_DECODE values to run (default: %(default)s)")
    parser.add_argument("--device", default="cuda", help="SERVE_DEVICE; cpu for a dry run (default: %(default)s)")
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    threads = max(2, (os.cpu_count() or 4) - args.procs)
    env = {
        "SERVE_DEVICE": args.device,
        "SERVE_MAX_BATCH_SIZE": "128",
        "SERVE_MAX_BATCH_DELAY_MS": "2",
        "SERVE_MAX_QUEUE_SIZE": "4096",
        "SERVE_DECODE_THREADS": str(threads),
        "SERVE_LOG_LEVEL": "warning",
    }
    results: dict[str, Any] = {"settings": env, "generator_processes": args.procs, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "random.safetensors"
        write_random_init(model)
        for decode in args.decodes.split(","):
            process, url = start_server(model, "torch", env | {"SERVE_DECODE": decode}, Path(tmp) / f"{decode}.log")
            try:
                results["runs"][decode] = {"model": httpx.get(f"{url}/model").json(), "points": run_points(url, args)}
            finally:
                stop_server(process)
            args.out.write_text(json.dumps(results, indent=1))  # keep what was measured if a later run hangs


if __name__ == "__main__":
    main()
