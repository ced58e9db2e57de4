"""The Open Inference Protocol over REST (docs/design.md §8): health, metadata and inference under ``/v2``.

The routes go through the same service as ``/predict``: admission, deadlines, drain, the API key (on
``infer`` only, as on ``/predict``), disconnect handling and request metrics. Their errors take the
protocol's shape, ``{"error": "message"}``, with the API's status codes and headers: the routes' own class
answers them, since the app's exception handlers answer in the native envelope.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect

from app.config import Settings
from app.errors import NotReady, ServiceError
from app.front.door import Door
from app.front.web import Authorized, DoorDep, SettingsDep, classify_while_connected, deadline_of, limit_body
from app.v2.codec import HEADER_LENGTH, decode_infer_request, encode_infer_response
from app.v2.infer import SERVER_NAME, infer, server_version, target_model, timing_ms
from app.v2.tensors import model_metadata, server_metadata

log = logging.getLogger("app.v2")
INFER_LABEL = "/v2/infer"
INLINE_BODY_BYTES = 64 * 1024  # the metrics' route label of every infer path (docs/design.md §8)
_ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"content": {"application/json": {"schema": _ERROR_SCHEMA}}}
    for status in (400, 401, 404, 413, 415, 422, 503, 504)
}
INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The protocol's inference request: JSON, or with the binary tensor data extension the JSON "
        "(Inference-Header-Content-Length bytes of it) followed by the binary tensors",
        "content": {
            "application/json": {"schema": {"type": "object", "required": ["inputs"]}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


class V2Route(APIRoute):
    """A route that answers errors as the protocol's ``{"error": "message"}``; ``metrics_label``, when set, is
    its route label in the request metrics (app/http/middleware.py)."""

    metrics_label: str | None = None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        label = self.metrics_label

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except ServiceError as exc:
                return v2_error(exc.status, exc.message, exc.headers())
            except ClientDisconnect:  # nobody to answer: the request middleware counts it as 499
                raise
            except Exception:
                log.exception("unhandled error", extra={"request_id": request.state.request_id, "route": label})
                return v2_error(500, "internal server error")

        return handle


class InferRoute(V2Route):
    """Every infer path shares one metrics label, versioned or not."""

    metrics_label = INFER_LABEL


def v2_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The protocol's error answer."""
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


router = APIRouter(route_class=V2Route, tags=["Open Inference Protocol (v2)"], responses=_ERRORS)


@router.get("/v2")
async def server_metadata_v2() -> dict[str, object]:
    """The server's name, version and protocol extensions."""
    return server_metadata(SERVER_NAME, server_version())


@router.get("/v2/health/live")
async def live_v2() -> dict[str, bool]:
    """200 while the process runs."""
    return {"live": True}


@router.get("/v2/health/ready")
async def ready_v2(door: DoorDep) -> dict[str, bool]:
    """200 once the model is loaded and warm (in every worker process); 503 while loading or draining."""
    if not door.ready_everywhere:
        raise NotReady(door.not_ready_reason())
    return {"ready": True}


@router.get("/v2/models/{name}")
async def model_metadata_v2(door: DoorDep, name: str) -> dict[str, object]:
    """The model's versions, inputs and outputs."""
    return model_metadata(target_model(door, name, ""))


@router.get("/v2/models/{name}/versions/{version}")
async def model_version_metadata_v2(door: DoorDep, name: str, version: str) -> dict[str, object]:
    """The model's versions, inputs and outputs (404 unless ``version`` is the one served)."""
    return model_metadata(target_model(door, name, version))


@router.get("/v2/models/{name}/ready")
async def model_ready_v2(door: DoorDep, name: str) -> dict[str, object]:
    """200 while the model serves; 503 while loading or draining."""
    return _model_ready(door, name, "")


@router.get("/v2/models/{name}/versions/{version}/ready")
async def model_version_ready_v2(door: DoorDep, name: str, version: str) -> dict[str, object]:
    """200 while this version serves; 503 while loading or draining."""
    return _model_ready(door, name, version)


async def infer_v2(request: Request, door: DoorDep, settings: SettingsDep, _: Authorized, name: str) -> Response:
    """Classify a batch: input `image` (BYTES [N], encoded files) or `input` (FP32 [N, 3, crop, crop])."""
    return await _infer(request, door, settings, name, "")


async def infer_version_v2(
    request: Request, door: DoorDep, settings: SettingsDep, _: Authorized, name: str, version: str
) -> Response:
    """Classify a batch on this model version (404 unless it is the one served)."""
    return await _infer(request, door, settings, name, version)


for _path, _endpoint in (
    ("/v2/models/{name}/infer", infer_v2),
    ("/v2/models/{name}/versions/{version}/infer", infer_version_v2),
):
    router.add_api_route(_path, _endpoint, methods=["POST"], route_class_override=InferRoute, openapi_extra=INFER_BODY)


def _model_ready(door: Door, name: str, version: str) -> dict[str, object]:
    model = target_model(door, name, version)
    if not door.ready_everywhere:
        raise NotReady(door.not_ready_reason())
    return {"name": model.name, "ready": True}


async def _infer(request: Request, door: Door, settings: Settings, name: str, version: str) -> Response:
    async with door.admit(deadline_of(request)) as call:  # first: it counts a not-ready refusal
        model = target_model(door, name, version)
        body = await call.receive(limit_body(request, settings.max_upload_bytes).body())
        decode = partial(decode_infer_request, body, request.headers.get(HEADER_LENGTH), model, settings.max_batch_size)
        # Large bodies are read off the event loop: JSON of a million numbers is tens of milliseconds.
        decoded = await asyncio.to_thread(decode) if len(body) > INLINE_BODY_BYTES else decode()
        inferred = await classify_while_connected(request, infer(call, decoded))
    timing = timing_ms(inferred.answers, request.state.started)
    request.state.timing_ms = timing  # for the request's log line
    request_id = decoded.id or request.state.request_id
    body, headers = encode_infer_response(
        inferred.model.name, inferred.model.version, request_id, inferred.output, decoded.output.binary
    )
    headers["Server-Timing"] = ", ".join(f"{step};dur={ms}" for step, ms in timing.items())
    return Response(body, headers=headers)
