"""Deadlines and disconnects: clients that hang up while queued cost no model time and are counted, slow
uploads hold no place and meet their deadline, and nothing leaks: descriptors and threads of the real
server, asyncio tasks of a server run in this process."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from unittest.mock import ANY

import pytest
import uvicorn

from app.capacity import Capacity
from app.engine.batcher import DynamicBatcher, Outcome
from app.process.assemble import create_app
from benchmarks.images import benchmark_jpegs
from tests.app.conftest import Running, gate_model, serve_in_process
from tests.app.test_api_lifecycle import wait_entered
from tests.conftest import MakeSettings
from tests.reliability.conftest import app_metric
from tests.reliability.support.disconnects import run_disconnects
from tests.reliability.support.service import Service, free_port
from tests.reliability.support.suite import DISCONNECT_ENV
from tests.reliability.support.traffic import request_bytes

SERVER_ENV = DISCONNECT_ENV
JPEG = {"content-type": "image/jpeg"}


@pytest.mark.slow
def test_clients_that_hang_up_cost_no_model_time_and_leak_nothing(server: Service) -> None:
    result = run_disconnects(server, benchmark_jpegs()[0], rounds=3, per_round=8, dropped=5, mid_uploads=5, stalled=5)
    assert result.model_images == result.expected_model_images == 10  # the 9 that stayed and 1 sent meanwhile
    assert result.answered == {200: 9}
    assert result.counted_disconnects == 15
    assert result.counted_mid_upload == 5
    assert result.stalled_answers == {504: 5} and result.served_while_stalled == 200
    assert result.fds[1] <= result.fds[0]
    assert result.threads[1] == result.threads[0]
    assert result.rss_mib[1] - result.rss_mib[0] < 32
    assert server.tracebacks() == []


async def _open(port: int, payload: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    return reader, writer


@pytest.mark.anyio
async def test_a_disconnect_while_queued_leaves_no_task_behind(make_settings: MakeSettings) -> None:
    """uvicorn in this process, over real loopback HTTP: the model is held busy, three queued clients hang
    up, and afterwards the model has run only the others and the event loop holds no extra task."""
    before_server = set(asyncio.all_tasks())
    settings = make_settings(max_batch_size=1, max_batch_delay_ms=4)
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    serving = asyncio.create_task(server.serve())
    running = Running(app.state.door, app.state.engine)
    while not server.started:
        await asyncio.sleep(0.01)
    await running.engine.wait_loaded()
    idle = len(asyncio.all_tasks())
    url, body = f"http://127.0.0.1:{port}", benchmark_jpegs()[0]
    gated = gate_model(running)
    first = await _open(port, request_bytes(url, body, "first"))
    await wait_entered(gated.entered)
    queued = [await _open(port, request_bytes(url, body, f"queued-{i}")) for i in range(4)]
    while app_metric(running.door, "inference_decode_duration_seconds_count") < 5:
        await asyncio.sleep(0.01)
    for _, writer in queued[:3]:
        writer.transport.abort()  # hang up
    while app_metric(running.door, "inference_rejections_total", reason="disconnected") < 3:
        await asyncio.sleep(0.01)
    gated.gate.set()
    for reader, writer in (first, queued[3]):
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        writer.close()
    await asyncio.sleep(0.2)
    assert sum(gated.calls) == 2  # the first request and the one that stayed
    assert len(asyncio.all_tasks()) == idle  # no request left a task behind
    server.should_exit = True
    await asyncio.wait_for(serving, 30)
    assert set(asyncio.all_tasks()) <= before_server


@pytest.mark.anyio
async def test_a_cancelled_submission_is_dropped_quietly() -> None:
    """The batcher's side of a hang-up: the caller's task is cancelled while its item waits; the item never
    reaches the model and nothing is reported to the event loop (no "exception was never retrieved")."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reported.append(context))
    calls: list[list[str]] = []
    batcher: DynamicBatcher[str, str] = DynamicBatcher(
        lambda items: calls.append(items) or items,
        capacity=Capacity(max_batch_size=4, max_queue_size=4),
        max_batch_delay_s=0.5,
    )
    batcher.start()
    try:
        waiting = asyncio.create_task(batcher.submit(["gone"], time.monotonic() + 30))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await batcher.submit(["stayed"], time.monotonic() + 30) == [Outcome("stayed", 1, ANY, ANY)]
        await batcher.stop()
        del waiting
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert calls == [["stayed"]]
    assert reported == []


@pytest.mark.anyio
async def test_a_slow_upload_holds_no_place_and_meets_its_deadline(make_settings: MakeSettings) -> None:
    """Three clients that declare a body and stall: they take none of the three places (1 queued + 2 batches),
    a normal request is served meanwhile, and each stalled one gets 504 at its deadline."""
    settings = make_settings(max_batch_size=1, max_queue_size=1, request_timeout_s=1.0, max_batch_delay_ms=4)
    body = benchmark_jpegs()[0]

    async def stalled() -> AsyncIterator[bytes]:
        yield body[:1000]
        await asyncio.sleep(30)  # the rest never comes in time
        yield body[1000:]

    async with serve_in_process(settings) as (client, running):
        slow = [asyncio.create_task(client.post("/predict", content=stalled(), headers=JPEG)) for _ in range(3)]
        await asyncio.sleep(0.2)
        served = await client.post("/predict", content=body, headers=JPEG)
        timed_out = await asyncio.gather(*slow)
        metrics = (await client.get("/metrics")).text
    assert served.status_code == 200
    assert [(r.status_code, r.json()["error"]["code"]) for r in timed_out] == [(504, "timeout")] * 3
    assert 'inference_rejections_total{reason="timeout"} 3.0' in metrics
    assert running.engine.host.queue_depth() == 0
