"""The Open Inference Protocol's REST infer against ``/predict``: one server, the same JPEGs, the same clients.

    python -m benchmarks.v2load --model weights/model.safetensors     # starts python -m app (onnxruntime)
    python -m benchmarks.v2load --url http://127.0.0.1:8000 --rounds 5 --duration 15

Each round puts closed-loop load of N clients on ``POST /predict`` and on ``POST /v2/models/{name}/infer``
back to back, in alternating order so that drift in the machine's load falls on both alike. A v2 request
carries one JPEG as binary BYTES (what tritonclient sends) and asks for the best 5 classes, the work of
``/predict``'s default ``top_k``. The median over rounds of the throughput ratio is what counts (target:
at least 0.95). The load generator is benchmarks/loadgen.py: raw keep-alive HTTP/1.1, requests built once.

Throughput on a shared machine moves with whatever else runs there. When this script starts the server it
also reports the server's CPU time per request on each route, which other load barely moves: on a CPU host,
where the model takes the CPU, its ratio (``/predict``'s over v2's) is the steadier view of the same question.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from benchmarks.cpu import process_cpu_seconds, start_server, stop_server
from benchmarks.images import benchmark_jpegs
from benchmarks.loadgen import LoadResult, build_requests, closed_loop

TARGET_RATIO = 0.95


def build_v2_requests(url: str, images: Sequence[bytes], model: str, class_count: int = 5) -> list[bytes]:
    """One complete HTTP/1.1 v2 infer request per image: the JSON header, then the image as one BYTES element."""
    host = urlsplit(url).netloc
    requests = []
    for image in images:
        element = len(image).to_bytes(4, "little") + image
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": "image",
                        "datatype": "BYTES",
                        "shape": [1],
                        "parameters": {"binary_data_size": len(element)},
                    }
                ],
                "outputs": [
                    {"name": "probabilities", "parameters": {"classification": class_count, "binary_data": False}}
                ],
            }
        ).encode()
        head = (
            f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n"
            f"Inference-Header-Content-Length: {len(header)}\r\nContent-Length: {len(header) + len(element)}\r\n\r\n"
        )
        requests.append(head.encode() + header + element)
    return requests


def run_round(
    url: str, routes: dict[str, list[bytes]], order: Sequence[str], args: argparse.Namespace, pid: int | None
) -> dict[str, Any]:
    """Load on each route in ``order``; the v2 route's throughput over ``/predict``'s (and CPU, given ``pid``)."""
    results: dict[str, LoadResult] = {}
    cpu_ms: dict[str, float] = {}
    for name in order:
        began = process_cpu_seconds(pid) if pid else 0.0
        results[name] = asyncio.run(closed_loop(url, routes[name], args.clients, args.duration, args.warmup))
        if results[name].errors:
            raise RuntimeError(f"{results[name].errors} requests to {name} failed")
        if pid:
            cpu_ms[name] = (process_cpu_seconds(pid) - began) * 1000 / max(results[name].completed, 1)
    answer: dict[str, Any] = {
        "order": list(order),
        "load": {name: result.to_dict() for name, result in results.items()},
        "v2_over_predict": results["v2"].throughput / results["predict"].throughput,
    }
    if cpu_ms:
        answer["server_cpu_ms_per_request"] = cpu_ms
        answer["predict_cpu_over_v2_cpu"] = cpu_ms["predict"] / cpu_ms["v2"]
    return answer


def measure(url: str, args: argparse.Namespace, pid: int | None = None) -> dict[str, Any]:
    """Rounds of both routes; the median ratios against the target."""
    model = httpx.get(f"{url}/model", timeout=10).json()
    images = benchmark_jpegs()
    routes = {"predict": build_requests(url, images), "v2": build_v2_requests(url, images, model["name"])}
    rounds = []
    for index in range(args.rounds):
        order = ("predict", "v2") if index % 2 == 0 else ("v2", "predict")
        rounds.append(run_round(url, routes, order, args, pid))
        cpu = rounds[-1].get("predict_cpu_over_v2_cpu")
        cpu_text = f", CPU per request predict/v2 = {cpu:.3f}" if cpu else ""
        print(f"round {index + 1}: throughput v2/predict = {rounds[-1]['v2_over_predict']:.3f}{cpu_text}", flush=True)
    results = {
        "clients": args.clients,
        "duration_s": args.duration,
        "model": {"name": model["name"], "version": model["version"], "backend": model.get("backend")},
        "rounds": rounds,
        "median_v2_over_predict": statistics.median(r["v2_over_predict"] for r in rounds),
        "target": TARGET_RATIO,
    }
    if pid:
        results["median_predict_cpu_over_v2_cpu"] = statistics.median(r["predict_cpu_over_v2_cpu"] for r in rounds)
    return results


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="a running service")
    target.add_argument("--model", type=Path, help="a checkpoint: start `python -m app` on it")
    parser.add_argument("--backend", default="onnxruntime", help="with --model (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=8, help="closed-loop clients (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=15, help="measured seconds per route (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured seconds first (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both routes (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path(".bench/v2load.json"), help="results (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    process = None
    url = args.url
    if url is None:
        process, url = start_server(args.model, args.backend, {}, args.out.with_suffix(".log"))
    try:
        results = measure(url, args, process.pid if process is not None else None)
    finally:
        if process is not None:
            stop_server(process)
    args.out.write_text(json.dumps(results, indent=2))
    median = results["median_v2_over_predict"]
    print(f"median throughput v2/predict at {args.clients} clients: {median:.3f} (target >= {TARGET_RATIO})")
    if "median_predict_cpu_over_v2_cpu" in results:
        print(f"median server CPU per request, predict/v2: {results['median_predict_cpu_over_v2_cpu']:.3f}")
    print(f"details in {args.out}")


if __name__ == "__main__":
    main()
