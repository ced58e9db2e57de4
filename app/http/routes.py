"""The HTTP API's endpoints (docs/design.md §3): parse the request, call the service, shape the answer."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from app.engine.client import Answer
from app.errors import MissingFile, NotReady, ServiceError
from app.front.web import Authorized, DoorDep, SettingsDep, classify_while_connected, deadline_of
from app.http.schemas import (
    BatchItem,
    BatchResponse,
    ErrorResponse,
    HealthResponse,
    ModelInfo,
    ModelRef,
    PredictionOut,
    PredictResponse,
    SlotError,
    Timing,
)
from app.http.uploads import read_multipart_files, read_single_upload
from app.metrics import CONTENT_TYPE

router = APIRouter()

_BINARY = {"type": "string", "format": "binary"}
SINGLE_IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"], "properties": {"file": _BINARY}}
            },
            "image/*": {"schema": _BINARY},
            "application/octet-stream": {"schema": _BINARY},
        },
    }
}
BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {"files": {"type": "array", "items": _BINARY}},
                }
            }
        },
    }
}
PREDICT_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 413, 415, 422, 500, 503, 504)
}


TopK = Annotated[int, Query(ge=1, le=100, description="how many classes to return")]


@router.post("/predict", response_model=PredictResponse, responses=PREDICT_ERRORS, openapi_extra=SINGLE_IMAGE_BODY)
async def predict(
    request: Request, response: Response, door: DoorDep, settings: SettingsDep, _: Authorized, top_k: TopK = 5
) -> Any:
    """Classify one image: multipart field `file`, or the raw bytes with an image content type."""
    async with door.admit(deadline_of(request)) as call:
        upload = await call.receive(read_single_upload(request, settings.max_upload_bytes))
        (result,) = await classify_while_connected(request, call.classify_images([upload.data]))
    if isinstance(result, ServiceError):
        raise result
    timing = _timing(request, [result])
    response.headers["Server-Timing"] = _server_timing(timing)
    return PredictResponse(
        request_id=request.state.request_id,
        model=ModelRef(name=result.model.name, version=result.model.version),
        predictions=_predictions(result, top_k),
        timing_ms=timing,
        batch_size=result.batch_size,
    )


@router.post("/predict/batch", response_model=BatchResponse, responses=PREDICT_ERRORS, openapi_extra=BATCH_BODY)
async def predict_batch(
    request: Request, response: Response, door: DoorDep, settings: SettingsDep, _: Authorized, top_k: TopK = 5
) -> Any:
    """Classify several images (repeated multipart field `files`); a bad file fails only its own slot."""
    async with door.admit(deadline_of(request)) as call:
        uploads = await call.receive(read_multipart_files(request, "files", settings.max_upload_bytes))
        if not uploads:
            raise MissingFile("the multipart body has no `files` field")
        results = await classify_while_connected(request, call.classify_images([u.data for u in uploads]))
    model = call.model or door.serving_model()  # every image ran on one model; with none served, the one serving
    answers = [r for r in results if isinstance(r, Answer)]
    timing = _timing(request, answers)
    response.headers["Server-Timing"] = _server_timing(timing)
    items = [
        _batch_item(i, upload.filename, result, top_k)
        for i, (upload, result) in enumerate(zip(uploads, results, strict=True))
    ]
    return BatchResponse(
        request_id=request.state.request_id,
        model=ModelRef(name=model.name, version=model.version),
        results=items,
        timing_ms=timing,
    )


@router.get("/health/live", response_model=HealthResponse)
async def live() -> HealthResponse:
    """200 while the process runs."""
    return HealthResponse(status="ok")


@router.get("/health/ready", response_model=HealthResponse, responses={503: {"model": ErrorResponse}})
async def ready(door: DoorDep) -> HealthResponse:
    """200 once the model is loaded and warm (in every worker process); 503 while loading or draining."""
    if not door.ready_everywhere:
        raise NotReady(door.not_ready_reason())
    return HealthResponse(status="ready")


@router.get("/model", response_model=ModelInfo, responses={503: {"model": ErrorResponse}})
async def model_info(door: DoorDep, settings: SettingsDep) -> ModelInfo:
    """The served model's metadata and the batching settings."""
    model = door.serving_model()
    batching = {
        "max_batch_size": settings.max_batch_size,
        "max_batch_delay_ms": settings.max_batch_delay_ms,
        "max_queue_size": settings.max_queue_size,
        "request_timeout_s": settings.request_timeout_s,
    }
    reload = door.engine.last_reload
    last_reload = reload.public() if reload else None
    return ModelInfo.model_validate({**model.describe(), "batching": batching, "last_reload": last_reload})


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
async def metrics(door: DoorDep) -> Response:
    """Prometheus metrics, text exposition format."""
    return Response(door.metrics.render(), media_type=CONTENT_TYPE)


def _predictions(result: Answer, top_k: int) -> list[PredictionOut]:
    return [PredictionOut(rank=p.rank, class_id=p.class_id, label=p.label, score=p.score) for p in result.top_k(top_k)]


def _batch_item(index: int, filename: str | None, result: Answer | ServiceError, top_k: int) -> BatchItem:
    if isinstance(result, ServiceError):
        return BatchItem(index=index, filename=filename, error=SlotError(code=result.code, message=result.message))
    return BatchItem(
        index=index, filename=filename, predictions=_predictions(result, top_k), batch_size=result.batch_size
    )


def _timing(request: Request, served: list[Answer]) -> Timing:
    """Milliseconds per step (the slowest image's), also kept for the request's log line."""
    timing = Timing(
        decode=round(1000 * max((r.decode_s for r in served), default=0.0), 3),
        queue=round(1000 * max((r.queue_s for r in served), default=0.0), 3),
        inference=round(1000 * max((r.run_s for r in served), default=0.0), 3),
        total=round(1000 * (time.monotonic() - request.state.started), 3),
    )
    request.state.timing_ms = timing.model_dump()
    return timing


def _server_timing(timing: Timing) -> str:
    return ", ".join(f"{name};dur={value}" for name, value in timing.model_dump().items())
