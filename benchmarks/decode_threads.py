"""How many decode threads serve best: the real server at several ``SERVE_DECODE_THREADS``, side by side.

    python -m benchmarks.decode_threads                              # 1 and 2 threads, 12MP and 0.2MP, 8 clients
    python -m benchmarks.decode_threads --threads 1,2,4 --classes 2MP --rounds 8

One ``python -m app`` per thread count (default settings otherwise; ``--backend`` onnxruntime), all up at
once and idle but for the one under load. Each round drives every server in turn, closed loop with
``--clients`` multipart uploads of each class (``benchmarks.photos``), the order reversed every other round so a
drift in the machine's load favours none. Per server and class: throughput, p50 and p99, and the server's CPU
per request (every thread of the process). On a shared machine compare throughputs within a round: the
report gives the median over rounds of each count's throughput over the first count's.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from benchmarks.cpu import REPO, Server, add_model_argument, closed_loop_cpu, prepare_files, start_server, stop_server
from benchmarks.loadgen import build_requests
from benchmarks.photos import upload_class


def measure(server: Server, requests: list[bytes], args: argparse.Namespace) -> dict[str, float]:
    """One closed-loop run against ``server``: throughput, latency and the server's CPU per request."""
    result, cpu_ms = closed_loop_cpu(server, requests, args.clients, args)
    return {"throughput": result.throughput, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms, "cpu_ms": cpu_ms}


def run_rounds(servers: dict[int, Server], args: argparse.Namespace) -> dict[str, dict[int, list[dict[str, float]]]]:
    """Every class against every server, ``args.rounds`` times; class -> thread count -> one entry per round."""
    photos = {name: upload_class(name) for name in args.classes}
    runs: dict[str, dict[int, list[dict[str, float]]]] = {name: {n: [] for n in servers} for name in args.classes}
    for number in range(args.rounds):
        order = list(servers) if number % 2 == 0 else list(reversed(servers))
        for name in args.classes:
            for threads in order:
                requests = build_requests(servers[threads][1], photos[name], multipart=True)
                runs[name][threads].append(point := measure(servers[threads], requests, args))
                print(json.dumps({"round": number + 1, "class": name, "threads": threads} | point), flush=True)
    return runs


def summary(runs: dict[str, dict[int, list[dict[str, float]]]]) -> list[str]:
    """Per class and thread count: medians over rounds, and the throughput against the first count's."""
    lines = ["| upload | threads | req/s | vs first (median of rounds) | p50 ms | p99 ms | server CPU ms/request |"]
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    for name, by_threads in runs.items():
        first = by_threads[next(iter(by_threads))]
        for threads, points in by_threads.items():
            ratio = statistics.median(p["throughput"] / f["throughput"] for p, f in zip(points, first, strict=True))
            median = {key: statistics.median(p[key] for p in points) for key in points[0]}
            lines.append(
                f"| {name} | {threads} | {median['throughput']:.2f} | {ratio:.3f} | {median['p50_ms']:.0f} | "
                f"{median['p99_ms']:.0f} | {median['cpu_ms']:.1f} |"
            )
    return lines


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_argument(parser)
    parser.add_argument("--backend", default="onnxruntime", help="SERVE_BACKEND (default: %(default)s)")
    parser.add_argument("--threads", default="1,2", help="SERVE_DECODE_THREADS values (default: %(default)s)")
    parser.add_argument(
        "--classes",
        type=lambda text: text.split(","),
        default=["12MP", "0.2MP"],
        help="upload classes (default: 12MP,0.2MP)",
    )
    parser.add_argument("--clients", type=int, default=8, help="closed-loop clients (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=6, help="rounds over every server (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=8, help="measured seconds per run (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=1, help="unmeasured seconds before each (default: %(default)s)")
    out = REPO / ".bench" / "decode_threads.json"
    parser.add_argument("--out", type=Path, default=out, help="JSON results (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    prepare_files(args)
    servers: dict[int, Server] = {}
    try:
        for threads in (int(value) for value in args.threads.split(",")):
            env = {"SERVE_DECODE_THREADS": str(threads), "SERVE_GRPC_PORT": "0", "SERVE_LOG_LEVEL": "warning"}
            servers[threads] = start_server(args.model, args.backend, env, args.out.with_suffix(f".{threads}.log"))
        runs = run_rounds(servers, args)
    finally:
        for process, _ in servers.values():
            stop_server(process)
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs}
    args.out.write_text(json.dumps(results, indent=1))
    print("\n".join(summary(runs)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
