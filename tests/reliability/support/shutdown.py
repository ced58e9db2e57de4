"""Graceful shutdown under load: SIGTERM while the queue is full. Every accepted request must complete
with 200, new ones must get 503 ``not_ready`` (or find the port closed once the drain is over), and the
process must exit 0 within its grace period."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tests.reliability.support.overload import lost_answers
from tests.reliability.support.service import Service
from tests.reliability.support.traffic import Answer, by_code, open_loop


@dataclass
class ShutdownResult:
    rate_rps: float
    answers: dict[str, int]
    answered_after_signal: dict[str, int]  # requests sent once the signal had gone out
    admitted_after_refusal: int  # 200s for requests sent after the client had seen a not_ready: must be 0
    lost: list[str]  # answered 200 by the server, never received
    unanswered_but_logged: list[str]  # a transport error on the client for a request the server handled
    exit_code: int | None
    exit_s: float | None  # from SIGTERM to the process's exit
    grace_s: float

    @property
    def unexpected(self) -> dict[str, int]:
        allowed = ("200 ok", "503 overloaded", "503 not_ready")
        return {k: v for k, v in self.answers.items() if k not in allowed and not k.startswith("0 ")}


async def _traffic_with_signal(
    service: Service, bodies: Sequence[bytes], rate: float, before_s: float, after_s: float
) -> tuple[list[Answer], float, float]:
    """The answers, and when SIGTERM went out (``perf_counter`` and monotonic clocks)."""

    async def signal_later() -> tuple[float, float]:
        await asyncio.sleep(before_s)
        return time.perf_counter(), service.terminate()

    signal_task = asyncio.create_task(signal_later())
    answers = await open_loop(service.url, bodies, rate, before_s + after_s, "drain")
    return answers, *await signal_task


def run_shutdown(
    service: Service, bodies: Sequence[bytes], *, rate: float, before_s: float, after_s: float, grace_s: float
) -> ShutdownResult:
    """Traffic at ``rate`` for ``before_s``, SIGTERM, traffic for ``after_s`` more; then wait for the exit."""
    exited: list[float] = []
    watcher = threading.Thread(target=lambda: (service.process.wait(), exited.append(time.monotonic())), daemon=True)
    watcher.start()
    answers, signalled, signalled_at = asyncio.run(_traffic_with_signal(service, bodies, rate, before_s, after_s))
    watcher.join(timeout=grace_s + 30)
    log = service.access_log()
    first_refusal = min((a.done for a in answers if a.code == "not_ready"), default=float("inf"))
    return ShutdownResult(
        rate_rps=rate,
        answers=by_code(answers),
        answered_after_signal=by_code([a for a in answers if a.sent > signalled]),
        admitted_after_refusal=sum(1 for a in answers if a.sent > first_refusal and a.status == 200),
        lost=lost_answers(answers, log),
        unanswered_but_logged=sorted(a.request_id for a in answers if a.status == 0 and a.request_id in log),
        exit_code=service.process.poll(),
        exit_s=exited[0] - signalled_at if exited else None,
        grace_s=grace_s,
    )
