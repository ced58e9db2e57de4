"""A/B: the same load against two servers, in interleaved rounds, so a shared and noisy machine treats both
alike. The sides differ by the code they run (two checkouts) or by their settings (``--env-b``), or both.

    python -m benchmarks.ab --b ../other-checkout                 # this checkout (A) against another (B)
    python -m benchmarks.ab --env-b SERVE_WORKERS=2               # one process (A) against two (B)
    python -m benchmarks.ab --b ../other --clients 1 8 --rounds 5 --duration 20

Each round starts each side's ``python -m app`` (from its checkout, on a 1000-class ResNet-50 with random
weights, the service's defaults otherwise), runs closed-loop load at each client count with the web-sized
photos as raw ``image/jpeg`` bodies, and stops it; the sides take turns going first. Printed and written to
``.bench/ab.json``: per side and client count the median over rounds of throughput, p50 and p99, and B/A.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.images import benchmark_jpegs
from benchmarks.loadgen import build_requests, closed_loop
from model.convert import write_random_init

REPO = Path(__file__).resolve().parents[1]


def start(code: Path, model: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m app`` from ``code`` on a free port; returns once it reports ready."""
    port = _free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SERVE_")} | {
        "PYTHONPATH": str(code),
        "SERVE_MODEL_PATH": str(model),
        "SERVE_HOST": "127.0.0.1",
        "SERVE_PORT": str(port),
        "SERVE_GRPC_PORT": "0",
        **env,
    }
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "app"], cwd=code, env=environ, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server from {code} exited with {process.returncode}; see {log}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the server from {code} was not ready in time; see {log}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def one_side(side: dict[str, Any], model: Path, args: argparse.Namespace, log: Path) -> dict[int, dict[str, float]]:
    """Start the side's server, run each client count, stop it: {clients: throughput, p50, p99}."""
    process, url = start(side["code"], model, side["env"], log)
    try:
        requests = build_requests(url, benchmark_jpegs())
        results = {}
        for clients in args.clients:
            run = asyncio.run(closed_loop(url, requests, clients, args.duration, args.warmup))
            results[clients] = {"img_s": run.throughput, "p50_ms": run.p50_ms, "p99_ms": run.p99_ms}
            print(
                f"  {side['name']} {clients:>3} clients: {run.throughput:6.1f} img/s  p50 {run.p50_ms:6.1f} ms  "
                f"p99 {run.p99_ms:6.1f} ms",
                flush=True,
            )
        return results
    finally:
        stop(process)


def summary(rounds: list[dict[str, dict[int, dict[str, float]]]], clients: list[int]) -> dict[str, Any]:
    """Medians over rounds per side and client count, and B/A of each."""
    out: dict[str, Any] = {}
    for count in clients:
        medians = {
            side: {key: statistics.median(r[side][count][key] for r in rounds) for key in ("img_s", "p50_ms", "p99_ms")}
            for side in ("a", "b")
        }
        ratio = {key: medians["b"][key] / medians["a"][key] for key in ("img_s", "p50_ms", "p99_ms")}
        out[str(count)] = {**medians, "b_over_a": ratio}
    return out


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", type=Path, default=REPO, help="side A's checkout (default: this one)")
    parser.add_argument("--b", type=Path, default=REPO, help="side B's checkout (default: this one)")
    parser.add_argument("--env-a", nargs="*", default=[], metavar="K=V", help="settings of side A only")
    parser.add_argument("--env-b", nargs="*", default=[], metavar="K=V", help="settings of side B only")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8], help="default: 1 8")
    parser.add_argument("--rounds", type=int, default=3, help="default: 3")
    parser.add_argument("--duration", type=float, default=20, help="measured seconds per load (default: 20)")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured seconds before each (default: 3)")
    parser.add_argument("--out", type=Path, default=REPO / ".bench" / "ab.json", help="default: %(default)s")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    sides = {
        name: {"name": name.upper(), "code": code.resolve(), "env": dict(item.split("=", 1) for item in env)}
        for name, code, env in (("a", args.a, args.env_a), ("b", args.b, args.env_b))
    }
    rounds: list[dict[str, dict[int, dict[str, float]]]] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ab-") as tmp:
        model = Path(tmp) / "random.safetensors"
        write_random_init(model)
        for index in range(args.rounds):
            order = ("a", "b") if index % 2 == 0 else ("b", "a")
            print(f"round {index + 1}/{args.rounds}", flush=True)
            rounds.append(
                {side: one_side(sides[side], model, args, Path(tmp) / f"{side}{index}.log") for side in order}
            )
    result = {
        "command": " ".join(["python -m benchmarks.ab", *(argv if argv is not None else sys.argv[1:])]),
        "sides": {name: {"code": str(side["code"]), "env": side["env"]} for name, side in sides.items()},
        "load_average": [load_before, os.getloadavg()[0]],
        "medians": summary(rounds, args.clients),
        "rounds": rounds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    for count, row in result["medians"].items():
        a, b, ratio = row["a"], row["b"], row["b_over_a"]
        print(
            f"{count:>3} clients: A {a['img_s']:6.1f} img/s p99 {a['p99_ms']:6.1f} ms | B {b['img_s']:6.1f} img/s "
            f"p99 {b['p99_ms']:6.1f} ms | B/A throughput {ratio['img_s']:.3f}, p99 {ratio['p99_ms']:.3f}"
        )


if __name__ == "__main__":
    main()
