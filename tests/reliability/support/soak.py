"""Soak: a sustained open-loop load below capacity. No request may fail, and once warmed up the server's
resident memory, threads and descriptors other than sockets must stay flat. Sockets rise and fall with the
connections in flight, so they are counted with the server idle, before the load and once it is over."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tests.reliability.support.overload import lost_answers
from tests.reliability.support.service import Service
from tests.reliability.support.traffic import Answer, by_code, open_loop, percentile


@dataclass(frozen=True)
class Sample:
    at_s: float
    rss_mib: float
    fds: int
    files: int  # descriptors other than sockets
    threads: int


@dataclass
class SoakResult:
    rate_rps: float
    duration_s: float
    warmup_s: float
    answers: dict[str, int]
    p50_ms: float
    p99_ms: float
    window_p99_ms: list[float]  # per tenth of the run: a slow drift shows here
    samples: list[Sample]
    lost: list[str]
    idle_fds: tuple[int, int]  # every descriptor, the server idle: before the load, after it

    @property
    def errors(self) -> int:
        return sum(n for key, n in self.answers.items() if key != "200 ok")

    def _settled(self) -> list[Sample]:
        return [s for s in self.samples if s.at_s >= self.warmup_s]

    def growth(self, attribute: str) -> float:
        """Mean over the last fifth of the settled samples minus the mean over the first fifth."""
        settled = self._settled()
        fifth = max(len(settled) // 5, 1)
        if len(settled) < 2:
            return 0.0
        head = statistics.fmean(getattr(s, attribute) for s in settled[:fifth])
        tail = statistics.fmean(getattr(s, attribute) for s in settled[-fifth:])
        return tail - head


async def _sample(service: Service, every_s: float, stop: asyncio.Event, out: list[Sample]) -> None:
    began = time.monotonic()
    while not stop.is_set():
        at_s = time.monotonic() - began
        out.append(Sample(at_s, service.rss_mib(), service.open_fds(), service.open_files(), service.threads()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


async def _soak(
    service: Service, bodies: Sequence[bytes], rate: float, duration_s: float, every_s: float
) -> tuple[list[Answer], list[Sample]]:
    samples: list[Sample] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample(service, every_s, stop, samples))
    answers = await open_loop(service.url, bodies, rate, duration_s, "soak")
    stop.set()
    await sampler
    return answers, samples


def _idle_fds(service: Service, at_most: int, settle_s: float = 10.0) -> int:
    """The server's descriptors once the load's connections are closed: at most ``at_most`` as soon as that
    holds, else what is left after ``settle_s`` (a leak never settles)."""
    deadline = time.monotonic() + settle_s
    while (fds := service.open_fds()) > at_most and time.monotonic() < deadline:
        time.sleep(0.2)
    return fds


def run_soak(
    service: Service, bodies: Sequence[bytes], *, rate: float, duration_s: float, warmup_s: float, every_s: float = 1.0
) -> SoakResult:
    """Load at ``rate`` for ``duration_s``, sampling the server every ``every_s``; judged after ``warmup_s``."""
    time.sleep(1.0)  # the connections of a measurement just made are closed
    fds_before = service.open_fds()
    answers, samples = asyncio.run(_soak(service, bodies, rate, duration_s, every_s))
    ok = [a.latency_ms for a in answers if a.code == "ok"]
    return SoakResult(
        rate_rps=rate,
        duration_s=duration_s,
        warmup_s=warmup_s,
        answers=by_code(answers),
        p50_ms=percentile(ok, 50),
        p99_ms=percentile(ok, 99),
        window_p99_ms=_window_p99(answers, duration_s),
        samples=samples,
        lost=lost_answers(answers, service.access_log()),
        idle_fds=(fds_before, _idle_fds(service, at_most=fds_before)),
    )


def _window_p99(answers: Sequence[Answer], duration_s: float, windows: int = 10) -> list[float]:
    began = min((a.due for a in answers), default=0.0)
    width = duration_s / windows
    return [
        percentile(
            [a.latency_ms for a in answers if a.code == "ok" and i * width <= a.due - began < (i + 1) * width], 99
        )
        for i in range(windows)
    ]
