"""Overload: open-loop arrivals at 4x the measured capacity against the real server. The excess is refused
with 503 ``overloaded`` before the queue, accepted requests finish within their deadline, nothing is lost,
and the service is back to its normal latency afterwards. (The full runner reports the latency figures.)"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import pytest
import uvicorn

from app.http.admin import in_process_reload
from app.process.server import DrainingServer
from benchmarks.images import benchmark_jpegs
from tests.app.conftest import gate_model, serve_in_process
from tests.app.test_api_lifecycle import wait_entered
from tests.conftest import MakeSettings
from tests.reliability.conftest import app_metric
from tests.reliability.support.overload import run_overload
from tests.reliability.support.service import Service
from tests.reliability.support.suite import MAX_BATCH_SIZE, REQUEST_TIMEOUT_S

JPEG = {"content-type": "image/jpeg"}


@pytest.mark.slow
def test_four_times_capacity_is_shed_at_once_and_the_service_recovers(server: Service) -> None:
    result = run_overload(
        server, benchmark_jpegs(), factor=4.0, duration_s=6.0, clients=2 * MAX_BATCH_SIZE, deadline_s=REQUEST_TIMEOUT_S
    )
    assert result.unexpected == {}  # only 200 and 503 overloaded: no timeout, no 500, no dropped connection
    assert result.answers["503 overloaded"] > 0 and result.answers["200 ok"] > 0
    assert result.served_max_ms < REQUEST_TIMEOUT_S * 1000
    assert result.shed_p99_ms < result.served_p50_ms  # refused up front, not after waiting in the queue
    assert result.lost == []
    assert result.recovered_after_s is not None
    assert server.tracebacks() == []


@pytest.mark.anyio
async def test_a_full_pipeline_refuses_before_reading_the_body(make_settings: MakeSettings) -> None:
    """Admission counts images from arrival to answer: once the queue and batches are full, a new request is
    refused before a byte of its body is read or decoded."""
    settings = make_settings(max_batch_size=1, max_queue_size=1, max_batch_delay_ms=0)
    body = benchmark_jpegs()[0]
    pulled = 0

    async def counted_body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for start in range(0, len(body), 4096):
            pulled += 1
            yield body[start : start + 4096]

    async with serve_in_process(settings) as (client, running):
        gated = gate_model(running)
        first = asyncio.create_task(client.post("/predict", content=body, headers=JPEG))
        await wait_entered(gated.entered)
        # One image in the model, one collected as the next batch, one queued: the limit of 1 + 2 x 1.
        held = [asyncio.create_task(client.post("/predict", content=body, headers=JPEG)) for _ in range(2)]
        while running.engine.host.queue_depth() < 2:
            await asyncio.sleep(0.01)
        decoded = app_metric(running.door, "inference_decode_duration_seconds_count")
        refused = await client.post("/predict", content=counted_body(), headers=JPEG)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "overloaded"
        assert pulled == 0
        assert app_metric(running.door, "inference_decode_duration_seconds_count") == decoded
        gated.gate.set()
        assert [r.status_code for r in await asyncio.gather(first, *held)] == [200, 200, 200]


@pytest.mark.anyio
async def test_the_heap_is_frozen_once_the_model_is_ready(make_settings: MakeSettings) -> None:
    """The objects of torch, ONNX and the model are moved out of the collector's reach, so a full collection
    under load does not pause every request for hundreds of milliseconds."""
    settings = make_settings(decode_threads=2, max_batch_delay_ms=4)
    async with serve_in_process(settings) as (_, running):
        config = uvicorn.Config(_no_app, log_config=None)
        config.load()
        server = DrainingServer(config, running.door, running.engine, in_process_reload(running.engine.reload))
        gc.unfreeze()
        try:
            await server.on_tick(0)
            assert gc.get_freeze_count() > 10_000
        finally:
            gc.unfreeze()


async def _no_app(scope: object, receive: object, send: object) -> None:
    """The server's own app is not needed to tick it."""
