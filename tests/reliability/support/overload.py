"""Overload: open-loop arrivals at a multiple of the measured capacity. Accepted requests must finish within
their deadline, the excess must be refused at once with 503 ``overloaded``, and once the burst ends the
service must be back to its normal latency within seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.loadgen import build_requests, closed_loop
from tests.reliability.support.service import Service
from tests.reliability.support.traffic import Answer, by_code, open_loop, percentile

PROBE_FRACTION = 0.25  # of capacity: the light load whose latency defines "normal"


@dataclass
class OverloadResult:
    capacity_rps: float
    offered_rps: float
    duration_s: float
    answers: dict[str, int]
    served_p50_ms: float
    served_p99_ms: float
    served_max_ms: float
    deadline_s: float
    shed_p50_ms: float  # 503 overloaded, client side, from sending
    shed_p99_ms: float
    shed_server_p99_ms: float  # the same answers as the server's access log timed them
    lost: list[str]  # ids the server answered 200 that the client never received
    baseline_p50_ms: float
    drained_after_s: float  # from the burst's last arrival to its last answer: the queue emptying
    recovered_after_s: float | None  # from then to the end of a light-load window at normal latency
    recovered_p50_ms: float

    @property
    def sent(self) -> int:
        return sum(self.answers.values())

    @property
    def unexpected(self) -> dict[str, int]:
        """Answers other than 200 and 503 overloaded: the goal is none."""
        return {k: v for k, v in self.answers.items() if k not in ("200 ok", "503 overloaded")}


def measure_capacity(url: str, bodies: Sequence[bytes], clients: int, duration_s: float) -> float:
    """Closed-loop throughput with enough clients to keep the model busy: requests per second."""
    result = asyncio.run(closed_loop(url, build_requests(url, bodies), clients, duration_s, warmup_s=1.0))
    return result.throughput


def light_load_p50(url: str, bodies: Sequence[bytes], rate: float, duration_s: float, tag: str) -> float:
    answers = asyncio.run(open_loop(url, bodies, rate, duration_s, tag))
    return percentile([a.latency_ms for a in answers if a.code == "ok"], 50)


def wait_for_recovery(url: str, bodies: Sequence[bytes], rate: float, baseline_ms: float) -> tuple[float | None, float]:
    """Light-load windows of one second until one has its median within 2x the baseline (at most 30)."""
    began = time.monotonic()
    p50 = float("inf")
    for window in range(30):
        p50 = light_load_p50(url, bodies, rate, 1.0, f"recovery{window}")
        if p50 <= 2 * baseline_ms:
            return time.monotonic() - began, p50
    return None, p50


def run_overload(
    service: Service, bodies: Sequence[bytes], *, factor: float, duration_s: float, clients: int, deadline_s: float
) -> OverloadResult:
    """Capacity, a light-load baseline, the burst at ``factor`` x capacity, then the recovery."""
    capacity = measure_capacity(service.url, bodies, clients, duration_s=max(duration_s / 2, 3.0))
    probe = max(PROBE_FRACTION * capacity, 1.0)
    baseline = light_load_p50(service.url, bodies, probe, 3.0, "baseline")
    burst = asyncio.run(open_loop(service.url, bodies, factor * capacity, duration_s, "burst"))
    recovered_after, recovered_p50 = wait_for_recovery(service.url, bodies, probe, baseline)
    served = [a.latency_ms for a in burst if a.code == "ok"]
    shed = [a for a in burst if a.code == "overloaded"]
    log = service.access_log()
    return OverloadResult(
        capacity_rps=capacity,
        offered_rps=factor * capacity,
        duration_s=duration_s,
        answers=by_code(burst),
        served_p50_ms=percentile(served, 50),
        served_p99_ms=percentile(served, 99),
        served_max_ms=max(served, default=0.0),
        deadline_s=deadline_s,
        shed_p50_ms=percentile([a.service_ms for a in shed], 50),
        shed_p99_ms=percentile([a.service_ms for a in shed], 99),
        shed_server_p99_ms=percentile([log[a.request_id]["duration_ms"] for a in shed if a.request_id in log], 99),
        lost=lost_answers(burst, log),
        baseline_p50_ms=baseline,
        drained_after_s=max(a.done for a in burst) - max(a.due for a in burst),
        recovered_after_s=recovered_after,
        recovered_p50_ms=recovered_p50,
    )


def lost_answers(answers: Sequence[Answer], log: dict[str, dict[str, object]]) -> list[str]:
    """Requests the server logged as answered 200 that did not come back to the client as a 200."""
    received = {a.request_id for a in answers if a.status == 200}
    sent = {a.request_id for a in answers}
    return sorted(rid for rid, line in log.items() if rid in sent and line.get("status") == 200 and rid not in received)
