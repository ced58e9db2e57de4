"""Phone-photo uploads on a GPU host: 0.2, 2 and 12 MP JPEGs through the service, with CPU and GPU decoding.

    python -m benchmarks.gpu_uploads --out uploads.json

Starts ``python -m app`` on CUDA with a random-init 1000-class checkpoint (``benchmarks.gpu_service``'s
options apply: ``--workers``, ``--instances``, ``--procs``, ``--decodes``) and, per upload class, drives
it closed-loop with multipart uploads, as phones and browsers send them, at 1 client and at
``--clients``. ``--decodes`` picks the runs: ``cpu`` and ``gpu`` (``SERVE_DECODE``, the service's defaults
otherwise: with ``gpu``, JPEGs over ``GPU_DECODE_MAX_PIXELS`` take the reduced CPU path) and ``gpu-full``
(``SERVE_DECODE=gpu SERVE_REDUCED_DECODE=false``: every JPEG on nvJPEG, the 12 MP ones too; it runs only the
classes over that limit, the others being routed as with ``gpu``), which says whether the limit sits where
it should. The photos are synthetic (``benchmarks.photos.synthetic_photo``: gradients, soft-edged
shapes and camera noise, NumPy and Pillow only, because the GPU host has no scikit-image); they are a
little cheaper to decode than the photos of the same class on the CPU benchmark. Per point: throughput,
latency percentiles, where the time went (the service's own histograms) and the server processes' CPU
cores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from app.engine.preparing import GPU_DECODE_MAX_PIXELS
from benchmarks import gpu_service
from benchmarks.cpu import stop_server
from benchmarks.gpu_service import (
    breakdown,
    closed_loop,
    cpu_seconds,
    server_pids,
    start_servers,
    step_totals,
    wait_all_workers_ready,
)
from benchmarks.loadgen import build_requests
from benchmarks.photos import UPLOAD_CLASSES, upload_class
from model.convert import write_random_init

# The settings of each --decodes run.
DECODES = {
    "cpu": {"SERVE_DECODE": "cpu"},
    "gpu": {"SERVE_DECODE": "gpu"},
    "gpu-full": {"SERVE_DECODE": "gpu", "SERVE_REDUCED_DECODE": "false"},
}


def classes_of(decode: str, names: list[str]) -> list[str]:
    """The upload classes a run measures: ``gpu-full`` only those over the GPU limit (see the docstring)."""
    if decode != "gpu-full":
        return names
    return [name for name in names if (size := UPLOAD_CLASSES[name]) and size[0] * size[1] > GPU_DECODE_MAX_PIXELS]


def run_class(urls: list[str], pids: list[int], photos: list[bytes], args: argparse.Namespace) -> list[dict[str, Any]]:
    """One upload class: closed loop at 1 client and at each of ``args.clients``."""
    targets = [(url, build_requests(url, photos, multipart=True)) for url in urls]
    points = []
    for clients in [1, *args.clients]:
        before, cpu_before, wall_before = step_totals(urls), cpu_seconds(pids), time.perf_counter()
        result = closed_loop(targets[:1] if clients == 1 else targets, clients, args.seconds, args.warmup, args.procs)
        result.update(breakdown(before, step_totals(urls)))
        result["server_cores"] = (cpu_seconds(pids)[1] - cpu_before[1]) / (time.perf_counter() - wall_before)
        print(json.dumps(result), flush=True)
        points.append(result)
    return points


def get_args_parser() -> argparse.ArgumentParser:
    """``benchmarks.gpu_service``'s options (servers, generator, decodes), plus the upload classes."""
    parser = gpu_service.get_args_parser()
    parser.description = __doc__
    parser.add_argument("--classes", default=",".join(UPLOAD_CLASSES), help="upload classes (default: %(default)s)")
    parser.set_defaults(clients="32,128", seconds=4.0, decodes=",".join(DECODES))
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    args.clients = [int(c) for c in args.clients.split(",")]
    photos = {name: upload_class(name, synthetic=True) for name in args.classes.split(",")}
    env = {
        "SERVE_DEVICE": args.device,
        "SERVE_MAX_BATCH_SIZE": "128",
        "SERVE_MAX_BATCH_DELAY_MS": "2",
        "SERVE_MAX_QUEUE_SIZE": "4096",
        "SERVE_DECODE_THREADS": "0",  # the default, sized to the host (which runs the load generator too)
        "SERVE_WORKERS": str(args.workers),
        "SERVE_GRPC_PORT": "0",  # HTTP only
        "SERVE_LOG_LEVEL": "warning",
    }
    sizes = {name: [len(photo) for photo in batch] for name, batch in photos.items()}
    results: dict[str, Any] = {"settings": env, "photo_bytes": sizes, "instances": args.instances, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "random.safetensors"
        write_random_init(model)
        for decode in args.decodes.split(","):
            serve_env = env | DECODES[decode]
            started = start_servers(model, serve_env, args.instances, args.out, f"uploads_{decode}")
            urls = [url for _, url in started]
            try:
                for url in urls:
                    wait_all_workers_ready(url, args.workers)
                pids = [pid for process, _ in started for pid in server_pids(process.pid)]
                run: dict[str, Any] = {"model": httpx.get(f"{urls[0]}/model").json(), "classes": {}}
                results["runs"][decode] = run
                for name in classes_of(decode, list(photos)):
                    run["classes"][name] = run_class(urls, pids, photos[name], args)
                    args.out.write_text(json.dumps(results, indent=1))  # keep what was measured if a later point hangs
            finally:
                for process, _ in started:
                    stop_server(process)
    print(table(results))


def table(results: dict[str, Any]) -> str:
    """The markdown table of every point (for OUTDIR/uploads.log and docs/benchmarks.md)."""
    lines = [
        "| decode | upload | MB (mean) | clients | img/s | p50 ms | p99 ms | errors | mean batch | decode ms | "
        "queue ms | batch ms | server cores |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for decode, run in results["runs"].items():
        for name, points in run["classes"].items():
            sizes = results["photo_bytes"][name]
            for p in points:
                lines.append(
                    f"| {decode} | {name} | {sum(sizes) / len(sizes) / 1e6:.2f} | {p['clients']} | "
                    f"{p['throughput']:,.0f} | {p['p50_ms']:.1f} | {p['p99_ms']:.1f} | {p['errors']} | "
                    f"{p['mean_batch_size']:.1f} | {p['decode_duration_ms']:.2f} | {p['queue_wait_ms']:.2f} | "
                    f"{p['batch_duration_ms']:.2f} | {p['server_cores']:.1f} |"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
