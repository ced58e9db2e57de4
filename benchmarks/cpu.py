"""The CPU benchmark: model-only limit and service load, for both backends, in one run.

    python -m benchmarks.cpu                     # writes .bench/cpu.json, prints the table and ratios
    python -m benchmarks.cpu --duration 30 --backends onnxruntime

For each backend: the model-only limit at batch sizes 1..32 (in process, no HTTP), then the real
server (``python -m app``) and rounds of: the model-only limit again at batch 1 and the best batch
size (the server idle), then closed-loop load at 1 and N clients and open-loop load at a fixed rate.
Each round's ratios compare measurements taken back to back; the medians over rounds are what count
on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from app.backends import Backend
from benchmarks.images import benchmark_jpegs
from benchmarks.loadgen import LoadResult, build_requests, closed_loop, open_loop
from benchmarks.model_limit import load_backend, measure, model_limit
from model.convert import write_random_init

REPO = Path(__file__).resolve().parents[1]
TARGETS = {
    "service_vs_model_limit": 0.85,  # at N clients, against the best batch size
    "single_client_overhead_ms": 15.0,  # p50 at 1 client minus the model's batch-1 time
    "p99_over_p50": 2.5,  # at N clients
    "onnx_vs_torch_service": 1.4,  # at N clients
    "cpu_efficiency": 0.85,  # the first target in CPU time, which other load on the machine barely moves
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(model: Path, backend: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m app`` on a free loopback port; returns once it reports ready."""
    port = free_port()
    environ = (
        os.environ
        | env
        | {
            "SERVE_MODEL_PATH": str(model),
            "SERVE_BACKEND": backend,
            "SERVE_HOST": "127.0.0.1",
            "SERVE_PORT": str(port),
        }
    )
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "app"], cwd=REPO, env=environ, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    for _ in range(3000):
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}; see {log}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the server did not become ready; see {log}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_load(
    process: subprocess.Popen[bytes], url: str, rate: float, args: argparse.Namespace
) -> tuple[dict[str, LoadResult], float]:
    """The three load runs, and the server's CPU milliseconds per request under N clients."""
    requests = build_requests(url, benchmark_jpegs())
    single = asyncio.run(closed_loop(url, requests, 1, args.duration, args.warmup))
    cpu_began = process_cpu_seconds(process.pid)
    loaded = asyncio.run(closed_loop(url, requests, args.clients, args.duration, args.warmup))
    cpu_ms = (process_cpu_seconds(process.pid) - cpu_began) * 1000 / max(loaded.completed, 1)
    arrivals = asyncio.run(open_loop(url, requests, rate, args.duration, args.warmup))
    return {"closed_1": single, f"closed_{args.clients}": loaded, "open": arrivals}, cpu_ms


def bench_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    """The model-only table, then rounds of (model-only check, service load) with the server up."""
    built, crop = load_backend(args.model, backend)
    table = model_limit(built, crop)
    best_batch = max(table, key=lambda point: point.images_per_s).batch_size
    process, url = start_server(args.model, backend, {}, args.out.with_suffix(f".{backend}.log"))
    try:
        rounds = [run_round(built, crop, best_batch, (process, url), args) for _ in range(args.rounds)]
    finally:
        stop_server(process)
    return {
        "model_limit": [vars(point) for point in table],
        "best_batch_size": best_batch,
        "rounds": rounds,
        "median": {name: statistics.median(r["ratios"][name] for r in rounds) for name in rounds[0]["ratios"]},
        "median_throughput": statistics.median(r["service"][f"closed_{args.clients}"]["throughput"] for r in rounds),
    }


def run_round(
    built: Backend, crop: int, best_batch: int, server: tuple[subprocess.Popen[bytes], str], args: argparse.Namespace
) -> dict[str, Any]:
    """Model-only (server idle) and service load back to back, so both see the same machine load."""
    # The table's best batch size can be a fluke of a noisy moment: re-measure it beside batch 8
    # (the service's default largest batch) and take the faster, so the limit is not understated.
    batch1 = measure(built, crop, 1)
    best = max((measure(built, crop, size) for size in sorted({8, best_batch})), key=lambda p: p.images_per_s)
    rate = round(args.open_fraction * best.images_per_s, 2)
    load, service_cpu_ms = service_load(*server, rate, args)
    loaded, single = load[f"closed_{args.clients}"], load["closed_1"]
    return {
        "model_batch1_ms": batch1.median_ms,
        "model_best_batch_size": best.batch_size,
        "model_best_images_per_s": best.images_per_s,
        "model_cpu_ms_per_image": best.cpu_ms_per_image,
        "service_cpu_ms_per_request": service_cpu_ms,
        "service": {name: result.to_dict() for name, result in load.items()},
        "ratios": {
            "service_vs_model_limit": loaded.throughput / best.images_per_s,
            "single_client_overhead_ms": single.p50_ms - batch1.median_ms,
            "p99_over_p50": loaded.p99_ms / loaded.p50_ms,
            # Model CPU per image over service CPU per request: barely moved by other load on the machine.
            "cpu_efficiency": best.cpu_ms_per_image / service_cpu_ms,
        },
        "load_average": os.getloadavg()[0],
    }


def report(results: dict[str, Any], clients: int) -> str:
    """The human-readable table, per round, and the medians against the targets."""
    lines = []
    for backend, r in results["backends"].items():
        limit = ", ".join(
            f"b{p['batch_size']}: {p['images_per_s']:.1f}/s ({p['median_ms']:.0f} ms)" for p in r["model_limit"]
        )
        lines.append(f"[{backend}] model-only limit: {limit}")
        for number, rnd in enumerate(r["rounds"], start=1):
            lines.append(
                f"[{backend}] round {number}: model b1 {rnd['model_batch1_ms']:.1f} ms, "
                f"b{rnd['model_best_batch_size']} {rnd['model_best_images_per_s']:.1f}/s; CPU per image: model "
                f"{rnd['model_cpu_ms_per_image']:.1f} ms, service {rnd['service_cpu_ms_per_request']:.1f} ms; "
                f"load avg {rnd['load_average']:.2f}"
            )
            for name, s in rnd["service"].items():
                lines.append(
                    f"[{backend}]   {name:>9}: {s['throughput']:6.2f} req/s  p50 {s['p50_ms']:7.1f}  "
                    f"p95 {s['p95_ms']:7.1f}  p99 {s['p99_ms']:7.1f} ms  errors {s['errors']}  "
                    f"mean batch {s['mean_batch_size']:.2f}"
                )
        for name, value in r["median"].items():
            lines.append(f"[{backend}] median {name} = {value:.3f} (target {_target_text(name)})")
    if "onnx_vs_torch_service" in results:
        ratio = results["onnx_vs_torch_service"]
        lines.append(
            f"onnxruntime / torch median service throughput at {clients} clients = {ratio:.3f} (target >= 1.4)"
        )
    return "\n".join(lines)


def _target_text(name: str) -> str:
    return f"<= {TARGETS[name]}" if name in ("single_client_overhead_ms", "p99_over_p50") else f">= {TARGETS[name]}"


def machine() -> dict[str, Any]:
    return {
        "cpu_count": len(os.sched_getaffinity(0)),
        "processor": platform.processor() or platform.machine(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
    }


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        type=Path,
        default=REPO / ".bench" / "random.safetensors",
        help="checkpoint; a random-init 1000-class one is written there if missing (default: %(default)s)",
    )
    parser.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"], help="default: torch onnxruntime")
    parser.add_argument("--clients", type=int, default=8, help="closed-loop clients for the loaded run (default: 8)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of model-only check + load (default: 3)")
    parser.add_argument("--duration", type=float, default=20, help="measured seconds per load run (default: 20)")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured seconds before each (default: 3)")
    parser.add_argument(
        "--open-fraction",
        type=float,
        default=0.7,
        help="open-loop rate as a fraction of the best model-only throughput (default: 0.7)",
    )
    parser.add_argument("--out", type=Path, default=REPO / ".bench" / "cpu.json", help="default: %(default)s")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.model.exists():
        write_random_init(args.model)
    results: dict[str, Any] = {"command": " ".join(["python -m benchmarks.cpu", *(argv or sys.argv[1:])])}
    results["machine_before"] = machine()
    results["backends"] = {backend: bench_backend(backend, args) for backend in args.backends}
    results["machine_after"] = machine()
    if {"torch", "onnxruntime"} <= set(results["backends"]):
        backends = results["backends"]
        results["onnx_vs_torch_service"] = (
            backends["onnxruntime"]["median_throughput"] / backends["torch"]["median_throughput"]
        )
    args.out.write_text(json.dumps(results, indent=2))
    print(report(results, args.clients))
    before, after = results["machine_before"]["load_average"], results["machine_after"]["load_average"]
    print(f"load average before {before}, after {after}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
