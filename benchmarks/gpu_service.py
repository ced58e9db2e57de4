"""The service on a GPU, end to end: real JPEG uploads over HTTP at several client counts.

    python -m benchmarks.gpu_service --out service.json

Starts ``python -m app`` on CUDA with a random-init 1000-class checkpoint (224-pixel crops, the cost
of real ImageNet weights), then drives it closed-loop from several load-generator processes so the
generator is not the bottleneck. Per point it records throughput, latency percentiles and, from the
service's own histograms, where the time went (decode, queue, batch). Runs with CPU decoding and
again with ``SERVE_DECODE=gpu``. ``--workers N`` serves with ``SERVE_WORKERS=N`` (N processes on one
port); ``--instances N`` runs N separate servers on their own ports, the generator processes spread
over them. Both measure how far one process's Python (the GIL) bounds the service.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.cpu import start_server, stop_server
from benchmarks.images import benchmark_jpegs, scikit_photo
from benchmarks.loadgen import Connection, Sample, _timed, build_requests, summarize
from model.convert import write_random_init

STEPS = ("inference_decode_duration_seconds", "inference_queue_wait_seconds", "inference_batch_duration_seconds")


def single_photo_jpeg() -> bytes:
    """A 500x375 photograph, the size the single-client latency target names."""
    buffer = io.BytesIO()
    scikit_photo("coffee").resize((500, 375), Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=90)
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
    targets: list[tuple[str, list[bytes]]], clients: int, seconds: float, warmup: float, procs: int
) -> dict[str, Any]:
    """``clients`` connections spread over ``procs`` processes, and the processes over the servers in
    ``targets`` (url, requests); only requests started after warm-up count."""
    procs = max(len(targets), min(procs, clients))
    begin = time.perf_counter() + 1.0
    measure_from, end = begin + warmup, begin + warmup + seconds
    shares = [clients // procs + (i < clients % procs) for i in range(procs)]
    firsts = [sum(shares[:i]) for i in range(procs)]
    with ProcessPoolExecutor(procs) as pool:
        jobs = [
            pool.submit(_clients, *targets[i % len(targets)], f, n, clients, begin, end)
            for i, (f, n) in enumerate(zip(firsts, shares, strict=True))
        ]
        samples = [s for job in jobs for s in job.result() if s.started >= measure_from]
    return summarize("closed", samples, measure_from, clients=clients).to_dict()


def step_totals(urls: list[str]) -> dict[str, float]:
    """Sums and counts of the step histograms, over every server (for per-point deltas)."""
    totals: dict[str, float] = {}
    for url in urls:
        for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
            for sample in family.samples:
                base = sample.name.removesuffix("_sum").removesuffix("_count")
                if base != sample.name and base in (*STEPS, "inference_batch_size"):
                    totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def breakdown(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Mean milliseconds per image of each step, and the mean batch size, between two scrapes."""

    def mean(name: str) -> float:
        count = after.get(f"{name}_count", 0) - before.get(f"{name}_count", 0)
        return (after.get(f"{name}_sum", 0) - before.get(f"{name}_sum", 0)) / count if count else 0.0

    out = {name.removeprefix("inference_").removesuffix("_seconds") + "_ms": mean(name) * 1000 for name in STEPS}
    out["mean_batch_size"] = mean("inference_batch_size")
    return out


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """CPU seconds used so far by the servers' main threads (their event loops) and by the whole processes."""

    def ticks(stat: Path) -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    return (
        sum(ticks(Path(f"/proc/{pid}/task/{pid}/stat")) for pid in pids),
        sum(ticks(Path(f"/proc/{pid}/stat")) for pid in pids),
    )


def run_points(urls: list[str], pids: list[int], args: argparse.Namespace) -> list[dict[str, Any]]:
    photos = [(url, build_requests(url, benchmark_jpegs())) for url in urls]
    single = [(urls[0], build_requests(urls[0], [single_photo_jpeg()]))]
    points = []
    for clients in [1, *args.clients]:
        targets = single if clients == 1 else photos
        before, cpu_before, wall_before = step_totals(urls), cpu_seconds(pids), time.perf_counter()
        result = closed_loop(targets, clients, args.seconds, args.warmup, args.procs)
        result.update(breakdown(before, step_totals(urls)))
        # A busy event loop near 1.0 core per server means HTTP handling, not decode or the GPU, sets the pace.
        wall = time.perf_counter() - wall_before
        cpu_after = cpu_seconds(pids)
        result["loop_cores"] = (cpu_after[0] - cpu_before[0]) / wall
        result["server_cores"] = (cpu_after[1] - cpu_before[1]) / wall
        print(json.dumps(result))
        points.append(result)
    return points


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="JSON results file")
    parser.add_argument("--clients", default="32,128,256", help="client counts besides 1 (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=5, help="measured seconds per point (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first (default: %(default)s)")
    parser.add_argument("--procs", type=int, default=max(1, (os.cpu_count() or 4) // 4), help="generator processes")
    parser.add_argument("--decodes", default="cpu,gpu", help="SERVE_DECODE values to run (default: %(default)s)")
    parser.add_argument("--device", default="cuda", help="SERVE_DEVICE; cpu for a dry run (default: %(default)s)")
    parser.add_argument("--instances", type=int, default=1, help="servers sharing the GPU (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="SERVE_WORKERS of each server (default: %(default)s)")
    return parser


def main() -> None:
    args = get_args_parser().parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    threads = max(2, ((os.cpu_count() or 4) - args.procs) // (args.instances * args.workers))
    env = {
        "SERVE_DEVICE": args.device,
        "SERVE_MAX_BATCH_SIZE": "128",
        "SERVE_MAX_BATCH_DELAY_MS": "2",
        "SERVE_MAX_QUEUE_SIZE": "4096",
        "SERVE_DECODE_THREADS": str(threads),
        "SERVE_WORKERS": str(args.workers),
        "SERVE_GRPC_PORT": "0",  # HTTP only: several instances must not share one gRPC port
        "SERVE_LOG_LEVEL": "warning",
    }
    results: dict[str, Any] = {
        "settings": env,
        "instances": args.instances,
        "workers": args.workers,
        "generator_processes": args.procs,
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "random.safetensors"
        write_random_init(model)
        for decode in args.decodes.split(","):
            servers = start_servers(model, env | {"SERVE_DECODE": decode}, args.instances, args.out, decode)
            urls = [url for _, url in servers]
            for url in urls:
                wait_all_workers_ready(url, args.workers)
            pids = [pid for process, _ in servers for pid in server_pids(process.pid)]
            try:
                results["runs"][decode] = {
                    "model": httpx.get(f"{urls[0]}/model").json(),
                    "points": run_points(urls, pids, args),
                }
            finally:
                for process, _ in servers:
                    stop_server(process)
            args.out.write_text(json.dumps(results, indent=1))  # keep what was measured if a later run hangs


def server_pids(pid: int) -> list[int]:
    """The server's pid and, with SERVE_WORKERS > 1, its workers' (whose main threads run the event loops)."""
    children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    return [pid, *children]


def wait_all_workers_ready(url: str, workers: int, timeout_s: float = 300) -> None:
    """``/health/ready`` answers for one worker; ``inference_ready`` counts the ready ones."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
            if family.name == "inference_ready" and family.samples[0].value == workers:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the workers of {url} were not all ready within {timeout_s}s")


def start_servers(
    model: Path, env: dict[str, str], count: int, out: Path, decode: str
) -> list[tuple[subprocess.Popen[bytes], str]]:
    """``count`` servers on the same GPU, started together; logs beside the results, kept if one fails."""
    logs = [out.with_name(f"server_{decode}_{i}.log") for i in range(count)]
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda log: start_server(model, "torch", env, log), logs))


if __name__ == "__main__":
    main()
