"""Which per-pod signal tracks saturation: drive a running service at rising load and read its /metrics.

    python deploy/kubernetes/autoscaling/scaling_signal.py --url http://127.0.0.1:8000 --clients 1,2,4,8,16,32
    python deploy/kubernetes/autoscaling/scaling_signal.py --url http://127.0.0.1:8000 --rates 2,4,8,12,16

Each load point runs ``python -m benchmarks.loadgen`` (closed loop with N clients, or open loop at a rate)
while this script scrapes ``/metrics`` every 0.25 s of the measured window. Per point it prints the
throughput and latency the load generator saw, the mean and largest ``inference_queue_depth``, and the
mean number of predict requests in flight, which Little's law gives from the request histogram:
Δ ``inference_request_duration_seconds_sum`` / Δt (the busy-time of all requests per second of wall time).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[3]
PREDICT = "/predict"
SCRAPE_EVERY_S = 0.25
WIDTHS = (7, 7, 7, 6, 6, 4, 9)


def scrape(client: httpx.Client) -> dict[str, float]:
    """The samples this script reads, keyed by name (predict route only where a route label exists)."""
    wanted = {
        "inference_queue_depth": None,
        "inference_request_duration_seconds_sum": PREDICT,
        "inference_request_duration_seconds_count": PREDICT,
    }
    values: dict[str, float] = {name: 0.0 for name in wanted}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name in wanted and sample.labels.get("route") == wanted[sample.name]:
                values[sample.name] += sample.value
    return values


def run_point(url: str, load: list[str], duration_s: float, warmup_s: float) -> dict[str, float]:
    """One load point: the load generator's summary plus what /metrics said during its measured window."""
    command = [sys.executable, "-m", "benchmarks.loadgen", "--url", url, *load]
    command += ["--duration", str(duration_s), "--warmup", str(warmup_s)]
    loadgen = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    with httpx.Client(base_url=url, timeout=5) as client:
        time.sleep(warmup_s)
        first, started = scrape(client), time.monotonic()
        depths = []
        while time.monotonic() - started < duration_s:
            depths.append(scrape(client)["inference_queue_depth"])
            time.sleep(SCRAPE_EVERY_S)
        last, elapsed = scrape(client), time.monotonic() - started
    result = json.loads(loadgen.communicate()[0])
    busy_s = last["inference_request_duration_seconds_sum"] - first["inference_request_duration_seconds_sum"]
    return {
        "throughput": result["throughput"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "errors": result["errors"],
        "queue_depth_mean": sum(depths) / len(depths),
        "queue_depth_max": max(depths),
        "in_flight_mean": busy_s / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--clients", default="1,2,4,8,16,32", help="closed-loop points (default: %(default)s)")
    parser.add_argument("--rates", help="open-loop points in requests/s, instead of --clients")
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per point (default: 8)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per point (default: 2)")
    args = parser.parse_args()
    flag, points = ("--rate", args.rates) if args.rates else ("--clients", args.clients)
    header = ("img/s", "p50 ms", "p99 ms", "errors", "queue", "max", "in flight")
    sys.stdout.write(f"{flag[2:]:>8} " + " ".join(f"{h:>{w}}" for h, w in zip(header, WIDTHS, strict=True)) + "\n")
    for point in points.split(","):
        row = run_point(args.url, [flag, point], args.duration, args.warmup)
        sys.stdout.write(
            f"{point:>8} {row['throughput']:7.1f} {row['p50_ms']:7.0f} {row['p99_ms']:7.0f} {row['errors']:6.0f} "
            f"{row['queue_depth_mean']:6.1f} {row['queue_depth_max']:4.0f} {row['in_flight_mean']:9.1f}\n"
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
