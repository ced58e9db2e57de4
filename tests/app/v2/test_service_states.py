"""The service's own refusals over both transports, with the model held busy by a gate: overloaded (503 with
Retry-After / RESOURCE_EXHAUSTED), timeout (504 / DEADLINE_EXCEEDED), draining and loading (503 /
UNAVAILABLE), a failing batch (500 / INTERNAL, no internals shown), and a gRPC client that gives up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from tritonclient.grpc import service_pb2 as triton_pb

from tests.app.conftest import gate_model
from tests.app.test_api_lifecycle import wait_entered
from tests.app.v2.conftest import MakeV2, Tensor, V2App, element
from tests.conftest import encode, photo
from tests.reliability.conftest import app_metric

pytestmark = pytest.mark.anyio
IMAGE = Tensor(element(encode(photo("chelsea").resize((100, 80)), quality=90)))


def grpc_infer(v2: V2App, **call: object) -> asyncio.Task[object]:
    return asyncio.ensure_future(v2.stub.ModelInfer(IMAGE.grpc_request(), **call))


async def test_a_full_queue_is_refused_at_once_over_both(make_v2: MakeV2) -> None:
    async with make_v2(max_batch_size=1, max_queue_size=1, max_batch_delay_ms=0) as v2:
        gated = gate_model(v2.running)
        rest = [asyncio.ensure_future(v2.rest_infer(IMAGE))]
        await wait_entered(gated.entered)
        # One image in the model, one collected as the next batch, one queued: the limit of 1 + 2 x 1.
        rest.append(asyncio.ensure_future(v2.rest_infer(IMAGE)))
        over_grpc = grpc_infer(v2)
        await eventually(lambda: v2.running.engine.host.queue_depth() >= 2)
        refused = await v2.rest_infer(IMAGE)
        assert (refused.status_code, refused.headers["retry-after"]) == (503, "1")
        assert "retry shortly" in refused.json()["error"]
        error = await v2.grpc_error(v2.stub.ModelInfer, IMAGE.grpc_request())
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert ("retry-after", "1") in tuple(error.trailing_metadata() or ())
        gated.gate.set()
        assert [answer.status_code for answer in await asyncio.gather(*rest)] == [200, 200]
        assert (await over_grpc).model_name == "resnet50"  # type: ignore[attr-defined]
        assert app_metric(v2.running.door, "inference_rejections_total", reason="overloaded") == 2


async def test_requests_past_their_deadline_are_504_and_deadline_exceeded(make_v2: MakeV2) -> None:
    async with make_v2(max_batch_size=1, request_timeout_s=1.0) as v2:
        gated = gate_model(v2.running)
        first = asyncio.ensure_future(v2.rest_infer(IMAGE))
        await wait_entered(gated.entered)
        late = await v2.rest_infer(IMAGE)
        assert late.status_code == 504 and "deadline" in late.json()["error"]
        error = await v2.grpc_error(v2.stub.ModelInfer, IMAGE.grpc_request())
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "deadline" in (error.details() or "")
        assert (await first).status_code == 504
        gated.gate.set()
    assert gated.calls == [1]  # the queued requests were dropped before the model


async def test_draining_refuses_new_calls_and_finishes_admitted_ones(make_v2: MakeV2) -> None:
    async with make_v2() as v2:
        gated = gate_model(v2.running)
        admitted = [asyncio.ensure_future(v2.rest_infer(IMAGE)), grpc_infer(v2)]
        await wait_entered(gated.entered)
        await eventually(
            lambda: app_metric(v2.running.door, "inference_decode_duration_seconds_count") >= 2
        )  # admitted
        v2.running.door.begin_drain()
        draining = asyncio.ensure_future(v2.running.door.drain())
        late = await v2.rest_infer(IMAGE)
        assert (late.status_code, late.headers["retry-after"]) == (503, "5")
        assert late.json() == {"error": "the service is shutting down"}
        error = await v2.grpc_error(v2.stub.ModelInfer, IMAGE.grpc_request())
        assert (error.code(), error.details()) == (grpc.StatusCode.UNAVAILABLE, "the service is shutting down")
        assert (await v2.rest.get("/v2/health/ready")).status_code == 503
        assert (await v2.rest.get("/v2/models/resnet50/ready")).status_code == 503
        assert not (await v2.triton.is_server_ready()) and not (await v2.triton.is_model_ready("resnet50"))
        assert await v2.triton.is_server_live()
        assert not draining.done()
        gated.gate.set()
        rest, grpc_answer = await asyncio.gather(*admitted)
        assert rest.status_code == 200 and grpc_answer.model_name == "resnet50"  # type: ignore[attr-defined]
        await asyncio.wait_for(draining, 30)


async def test_a_model_that_cannot_load_is_not_ready_over_both(make_v2: MakeV2, tmp_path: Path) -> None:
    async with make_v2(model_path=tmp_path / "missing.safetensors") as v2:
        assert (await v2.rest.get("/v2/health/live")).json() == {"live": True}
        for path in ("/v2/health/ready", "/v2/models/resnet50", "/v2/models/resnet50/ready"):
            response = await v2.rest.get(path)
            assert response.status_code == 503 and response.json() == {"error": "the model could not be loaded"}
        assert (await v2.rest_infer(IMAGE)).status_code == 503
        assert await v2.triton.is_server_live() and not await v2.triton.is_server_ready()
        assert not await v2.triton.is_model_ready("resnet50")
        error = await v2.grpc_error(v2.stub.ModelInfer, IMAGE.grpc_request())
        assert (error.code(), error.details()) == (grpc.StatusCode.UNAVAILABLE, "the model could not be loaded")
        error = await v2.grpc_error(v2.stub.ModelMetadata, triton_pb.ModelMetadataRequest(name="resnet50"))
        assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_failing_batch_is_a_bare_internal_error(make_v2: MakeV2, caplog: pytest.LogCaptureFixture) -> None:
    async with make_v2() as v2:
        gated = gate_model(v2.running, open_gate=True)
        with caplog.at_level(logging.ERROR):
            gated.fail_next = True
            failed = await v2.rest_infer(IMAGE)
            gated.fail_next = True
            error = await v2.grpc_error(v2.stub.ModelInfer, IMAGE.grpc_request())
        assert (failed.status_code, failed.json()) == (500, {"error": "internal server error"})
        assert (error.code(), error.details()) == (grpc.StatusCode.INTERNAL, "internal server error")
        assert (await v2.rest_infer(IMAGE)).status_code == 200
        metrics = (await v2.rest.get("/metrics")).text
    logged = [r for r in caplog.records if r.exc_info and "secret internal detail" in str(r.exc_info[1])]
    assert len(logged) == 2
    assert 'inference_requests_total{code="500",route="/v2/infer"} 1.0' in metrics
    assert 'inference_requests_total{code="500",route="grpc"} 1.0' in metrics


async def test_a_grpc_client_that_gives_up_has_its_images_dropped(make_v2: MakeV2) -> None:
    async with make_v2(max_batch_size=1) as v2:
        gated = gate_model(v2.running)
        first = asyncio.ensure_future(v2.rest_infer(IMAGE))
        await wait_entered(gated.entered)
        # The client's deadline, sooner than the service's, becomes the request's.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await v2.stub.ModelInfer(IMAGE.grpc_request(), timeout=0.5)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        cancelled = v2.stub.ModelInfer(IMAGE.grpc_request())
        await eventually(lambda: app_metric(v2.running.door, "inference_decode_duration_seconds_count") >= 3)
        cancelled.cancel()
        await eventually(lambda: app_metric(v2.running.door, "inference_requests_total", route="grpc", code="499") >= 1)
        gated.gate.set()
        assert (await first).status_code == 200
    assert gated.calls == [1]  # neither reached the model
    assert app_metric(v2.running.door, "inference_requests_total", route="grpc", code="504") == 1
    assert app_metric(v2.running.door, "inference_rejections_total", reason="disconnected") == 1


async def eventually(condition: Callable[[], bool], timeout_s: float = 20) -> None:
    """Return once ``condition()`` holds; fail (not hang) after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)
