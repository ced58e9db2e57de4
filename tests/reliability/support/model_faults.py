"""A forward pass that raises: the app with its real model, whose backend fails every n-th batch, under
concurrent requests. Exactly the images of the failed batches must get a bare 500; every other image
must be answered 200, and the batch after the faults must serve."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import torch

from app.config import Settings
from app.engine.backends import Backend
from app.engine.local import LocalEngine
from app.process.assemble import create_app


class FlakyBackend:
    """The real backend, except that every ``period``-th call raises instead of answering."""

    def __init__(self, inner: Backend, period: int) -> None:
        self.inner, self.period = inner, period
        self.name, self.device, self.precision = inner.name, inner.device, inner.precision
        self.calls: list[tuple[int, bool]] = []  # (batch size, failed)

    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        failed = (len(self.calls) + 1) % self.period == 0
        self.calls.append((batch.shape[0], failed))
        if failed:
            raise RuntimeError("injected fault in the forward pass")
        return self.inner.infer(batch)

    def warmup(self, max_batch_size: int) -> None:
        self.inner.warmup(max_batch_size)


@dataclass
class ForwardFaultResult:
    batches: int
    failed_batches: int
    images_in_failed_batches: int
    images_in_good_batches: int
    answered: dict[int, int]  # status -> count
    bare_500s: bool  # every 500 said only "internal server error"
    logged_tracebacks: int  # each 500 is logged with its traceback
    next_status: int  # a request once the faults are over

    @property
    def matched(self) -> bool:
        """500s exactly for the failed batches' images, 200s exactly for the others."""
        return (
            self.answered.get(500, 0) == self.images_in_failed_batches
            and self.answered.get(200, 0) == self.images_in_good_batches
            and set(self.answered) <= {200, 500}
        )


@contextmanager
def captured_errors(logger: str = "app.access") -> Iterator[list[logging.LogRecord]]:
    """The records with a traceback that ``logger`` emits meanwhile, kept out of the console."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record) if record.exc_info else None  # type: ignore[method-assign]
    target = logging.getLogger(logger)
    propagate, target.propagate = target.propagate, False
    target.addHandler(handler)
    try:
        yield records
    finally:
        target.removeHandler(handler)
        target.propagate = propagate


async def _post_all(client: httpx.AsyncClient, body: bytes, requests: int, concurrency: int) -> list[httpx.Response]:
    gate = asyncio.Semaphore(concurrency)

    async def one() -> httpx.Response:
        async with gate:
            return await client.post("/predict", content=body, headers={"content-type": "image/jpeg"})

    return await asyncio.gather(*(one() for _ in range(requests)))


async def run_forward_faults(
    settings: Settings, body: bytes, *, requests: int, concurrency: int, period: int
) -> ForwardFaultResult:
    """``requests`` concurrent predictions while every ``period``-th batch fails, then one more."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        engine: LocalEngine = app.state.engine
        await engine.wait_loaded()
        assert engine.host.serving is not None, engine.startup_error
        classifier = engine.host.serving.classifier
        flaky = FlakyBackend(classifier.backend, period)
        classifier.backend = flaky
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service", timeout=120) as client:
            with captured_errors() as logged:
                responses = await _post_all(client, body, requests, concurrency)
            flaky.period = 10**9  # the faults are over
            after = await client.post("/predict", content=body, headers={"content-type": "image/jpeg"})
    answered: dict[int, int] = {}
    for response in responses:
        answered[response.status_code] = answered.get(response.status_code, 0) + 1
    failures = [r for r in responses if r.status_code == 500]
    faults = flaky.calls[:-1]  # the last call served ``after``
    return ForwardFaultResult(
        batches=len(faults),
        failed_batches=sum(1 for _, failed in faults if failed),
        images_in_failed_batches=sum(size for size, failed in faults if failed),
        images_in_good_batches=sum(size for size, failed in faults if not failed),
        answered=answered,
        bare_500s=all(r.json()["error"]["message"] == "internal server error" for r in failures),
        logged_tracebacks=len(logged),
        next_status=after.status_code,
    )
