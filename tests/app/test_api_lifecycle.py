"""Load shedding, deadlines, failures, readiness and draining, through the app with its real model.

A ``GatedBackend`` holds the real model busy where a test needs a full queue or a late answer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import httpx
import pytest

from tests.app.conftest import MakeClient, gate_model
from tests.app.test_api_errors import assert_error

pytestmark = pytest.mark.anyio
JPEG = {"content-type": "image/jpeg"}


async def wait_entered(event: threading.Event) -> None:
    """Wait, off the event loop, until the gated model has been called."""
    assert await asyncio.get_running_loop().run_in_executor(None, event.wait, 30)


async def test_a_full_queue_answers_503_overloaded_at_once(make_client: MakeClient, cat_jpeg: bytes) -> None:
    async with make_client(max_batch_size=1, max_queue_size=1, max_batch_delay_ms=0) as (client, running):
        gated = gate_model(running)
        first = asyncio.create_task(client.post("/predict", content=cat_jpeg, headers=JPEG))
        await wait_entered(gated.entered)
        # While the model is busy at most two more fit: one collected as the next batch, one queued.
        others = [asyncio.create_task(client.post("/predict", content=cat_jpeg, headers=JPEG)) for _ in range(3)]
        done, _ = await asyncio.wait(others, return_when=asyncio.FIRST_COMPLETED)
        refused = next(iter(done)).result()
        assert_error(refused, 503, "overloaded")
        assert refused.headers["retry-after"] == "1"
        assert (await client.get("/health/live")).status_code == 200  # the event loop is not blocked
        gated.gate.set()
        statuses = sorted(r.status_code for r in await asyncio.gather(first, *others))
        metrics = (await client.get("/metrics")).text
    assert statuses.count(200) >= 2 and statuses.count(503) >= 1 and len(statuses) == 4
    assert f'inference_rejections_total{{reason="overloaded"}} {float(statuses.count(503))}' in metrics


async def test_expired_requests_get_504_and_never_reach_the_model(make_client: MakeClient, cat_jpeg: bytes) -> None:
    async with make_client(max_batch_size=1, request_timeout_s=1.0) as (client, running):
        gated = gate_model(running)
        first = asyncio.create_task(client.post("/predict", content=cat_jpeg, headers=JPEG))
        await wait_entered(gated.entered)
        second = await client.post("/predict", content=cat_jpeg, headers=JPEG)
        assert_error(second, 504, "timeout")
        assert_error(await first, 504, "timeout")  # its model call outlived the deadline too
        gated.gate.set()
        metrics = (await client.get("/metrics")).text
    assert gated.calls == [1]  # the queued request was dropped before the model
    assert 'inference_rejections_total{reason="timeout"} 2.0' in metrics


async def test_a_failing_batch_is_a_bare_500_and_the_service_keeps_serving(
    make_client: MakeClient, cat_jpeg: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_client() as (client, running):
        gated = gate_model(running, open_gate=True)
        gated.fail_next = True
        with caplog.at_level(logging.ERROR):
            failed = await client.post("/predict", content=cat_jpeg, headers=JPEG)
        error = assert_error(failed, 500, "internal_error")
        assert "secret" not in failed.text and error["message"] == "internal server error"
        assert (await client.post("/predict", content=cat_jpeg, headers=JPEG)).status_code == 200
    logged = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert logged and "secret internal detail" in str(logged[0].exc_info[1])  # type: ignore[index]
    assert getattr(logged[0], "request_id", None) == failed.headers["x-request-id"]


async def test_going_ready_logs_the_model_it_serves(make_client: MakeClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="app.engine.host"):
        async with make_client() as (_, running):
            assert running.engine.startup_error is None
    (ready,) = [r for r in caplog.records if r.getMessage() == "ready"]
    assert (ready.model, ready.arch, ready.device, ready.backend) == ("resnet50", "resnet50", "cpu", "torch")  # type: ignore[attr-defined]
    assert len(ready.version) == 12  # type: ignore[attr-defined]


async def test_a_model_that_cannot_load_leaves_the_service_live_but_not_ready(
    make_client: MakeClient, tmp_path: Path, cat_jpeg: bytes
) -> None:
    async with make_client(model_path=tmp_path / "missing.safetensors") as (client, running):
        assert running.engine.startup_error is not None and "no such file" in str(running.engine.startup_error)
        assert (await client.get("/health/live")).status_code == 200
        ready = await client.get("/health/ready")
        assert_error(ready, 503, "not_ready")
        predict = await client.post("/predict", content=cat_jpeg, headers=JPEG)
        assert_error(predict, 503, "not_ready")
        assert predict.headers["retry-after"] == "5"
        assert_error(await client.get("/model"), 503, "not_ready")


async def test_draining_refuses_new_requests_and_waits_for_accepted_ones(
    make_client: MakeClient, cat_jpeg: bytes
) -> None:
    async with make_client() as (client, running):
        gated = gate_model(running)
        accepted = asyncio.create_task(client.post("/predict", content=cat_jpeg, headers=JPEG))
        await wait_entered(gated.entered)
        running.door.begin_drain()
        draining = asyncio.create_task(running.door.drain())
        assert_error(await client.get("/health/ready"), 503, "not_ready")
        late = await client.post("/predict", content=cat_jpeg, headers=JPEG)
        assert "shutting down" in assert_error(late, 503, "not_ready")["message"]
        assert not draining.done()
        gated.gate.set()
        assert (await accepted).status_code == 200
        await asyncio.wait_for(draining, 30)
        assert "inference_ready 0.0" in (await client.get("/metrics")).text


async def test_every_request_logs_one_line_with_its_id_route_status_and_timings(
    client: httpx.AsyncClient, cat_jpeg: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="app.access"):
        response = await client.post("/predict", content=cat_jpeg, headers=JPEG)
        await client.post("/predict", content=b"junk", headers=JPEG)
    lines = [r for r in caplog.records if r.name == "app.access"]
    assert len(lines) == 2
    ok, bad = vars(lines[0]), vars(lines[1])
    assert ok["request_id"] == response.headers["x-request-id"]
    assert (ok["route"], ok["status"], bad["status"]) == ("/predict", 200, 400)
    assert set(ok["timing_ms"]) == {"decode", "queue", "inference", "total"}
