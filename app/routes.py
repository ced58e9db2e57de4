"""HTTP endpoints (DESIGN §3): thin functions over ``Service``."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from starlette.requests import ClientDisconnect

from app.admission import Admission
from app.disconnects import unless_disconnected
from app.errors import (
    InvalidParameter,
    MissingFile,
    NotReady,
    Overloaded,
    RequestTimeout,
    ServiceError,
    Unauthorized,
)
from app.metrics import CONTENT_TYPE
from app.schemas import (
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
from app.service import Served, Service
from app.uploads import read_multipart_files, read_single_upload

router = APIRouter()
T = TypeVar("T")

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


# Dependencies are coroutines on purpose: FastAPI runs plain functions in a thread pool, a thread
# hand-off per request for a few attribute reads.
async def get_service(request: Request) -> Service:
    """The app's ``Service``."""
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


async def get_admission(request: Request) -> Admission:
    """The app's ``Admission`` (load shedding before the body is read)."""
    admission: Admission = request.app.state.admission
    return admission


AdmissionDep = Annotated[Admission, Depends(get_admission)]


async def require_api_key(service: ServiceDep, authorization: Annotated[str | None, Header()] = None) -> None:
    """Check ``Authorization: Bearer <key>`` when ``SERVE_API_KEY`` is set (constant-time compare)."""
    key = service.settings.api_key
    if key is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.get_secret_value().encode()):
        raise service.reject(Unauthorized("this endpoint needs the header `Authorization: Bearer <key>`"))


Authorized = Annotated[None, Depends(require_api_key)]
TopK = Annotated[int, Query(ge=1, le=100, description="how many classes to return")]


@router.post("/predict", response_model=PredictResponse, responses=PREDICT_ERRORS, openapi_extra=SINGLE_IMAGE_BODY)
async def predict(
    request: Request, response: Response, service: ServiceDep, admission: AdmissionDep, _: Authorized, top_k: TopK = 5
) -> Any:
    """Classify one image: multipart field `file`, or the raw bytes with an image content type."""
    async with service.accepting():
        _refuse_if_full(service, admission, 1)
        reading = read_single_upload(request, service.settings.max_upload_bytes)
        upload = await _within_deadline(request, service, reading)
        with _admitted(service, admission, 1):
            (result,) = await _classify(request, service, [upload.data], top_k)
    if isinstance(result, ServiceError):
        raise result
    timing = _timing(request, [result])
    response.headers["Server-Timing"] = _server_timing(timing)
    return PredictResponse(
        request_id=request.state.request_id,
        model=_model_ref(service),
        predictions=_predictions(result),
        timing_ms=timing,
        batch_size=result.batch_size,
    )


@router.post("/predict/batch", response_model=BatchResponse, responses=PREDICT_ERRORS, openapi_extra=BATCH_BODY)
async def predict_batch(
    request: Request, response: Response, service: ServiceDep, admission: AdmissionDep, _: Authorized, top_k: TopK = 5
) -> Any:
    """Classify several images (repeated multipart field `files`); a bad file fails only its own slot."""
    limit = service.settings.max_batch_size
    async with service.accepting():
        _refuse_if_full(service, admission, 1)
        reading = read_multipart_files(request, "files", service.settings.max_upload_bytes)
        uploads = await _within_deadline(request, service, reading)
        if not uploads:
            raise MissingFile("the multipart body has no `files` field")
        if len(uploads) > limit:
            raise InvalidParameter(f"{len(uploads)} files sent; at most {limit} per request (SERVE_MAX_BATCH_SIZE)")
        with _admitted(service, admission, len(uploads)):
            results = await _classify(request, service, [u.data for u in uploads], top_k)
    served = [r for r in results if isinstance(r, Served)]
    timing = _timing(request, served)
    response.headers["Server-Timing"] = _server_timing(timing)
    items = [
        _batch_item(i, upload.filename, result) for i, (upload, result) in enumerate(zip(uploads, results, strict=True))
    ]
    return BatchResponse(
        request_id=request.state.request_id, model=_model_ref(service), results=items, timing_ms=timing
    )


@router.get("/health/live", response_model=HealthResponse)
async def live() -> HealthResponse:
    """200 while the process runs."""
    return HealthResponse(status="ok")


@router.get("/health/ready", response_model=HealthResponse, responses={503: {"model": ErrorResponse}})
async def ready(service: ServiceDep) -> HealthResponse:
    """200 once the model is loaded and warm; 503 while loading or draining."""
    if not service.ready:
        raise NotReady(service.not_ready_reason())
    return HealthResponse(status="ready")


@router.get("/model", response_model=ModelInfo, responses={503: {"model": ErrorResponse}})
async def model_info(service: ServiceDep) -> ModelInfo:
    """The served model's metadata and the batching settings."""
    if service.classifier is None:
        raise NotReady(service.not_ready_reason())
    s = service.settings
    batching = {
        "max_batch_size": s.max_batch_size,
        "max_batch_delay_ms": s.max_batch_delay_ms,
        "max_queue_size": s.max_queue_size,
        "request_timeout_s": s.request_timeout_s,
    }
    return ModelInfo.model_validate({**service.classifier.describe(), "batching": batching})


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
async def metrics(service: ServiceDep) -> Response:
    """Prometheus metrics, text exposition format."""
    return Response(service.metrics.render(), media_type=CONTENT_TYPE)


def _refuse_if_full(service: Service, admission: Admission, images: int) -> None:
    """Refuse the request as ``overloaded`` before a byte of its body is read if ``images`` would not fit."""
    try:
        admission.check(images)
    except Overloaded as exc:
        raise service.reject(exc) from None


@contextmanager
def _admitted(service: Service, admission: Admission, images: int) -> Iterator[None]:
    """Hold places for ``images`` read images until they are answered, or refuse them as ``overloaded``.

    Places are taken only once the body is in, so a slow upload holds none.
    """
    try:
        admission.acquire(images)
    except Overloaded as exc:
        raise service.reject(exc) from None
    try:
        yield
    finally:
        admission.release(images)


async def _within_deadline(request: Request, service: Service, reading: Awaitable[T]) -> T:
    """Read the body, or answer 504 ``timeout`` if it has not arrived by the request's deadline."""
    try:
        async with asyncio.timeout(_deadline(request, service) - time.monotonic()):
            return await reading
    except TimeoutError:
        raise service.reject(RequestTimeout("the request body did not arrive before the request's deadline")) from None


async def _classify(
    request: Request, service: Service, images: Sequence[bytes], top_k: int
) -> list[Served | ServiceError]:
    """``service.classify``, cancelled (its queued images dropped) if the client disconnects meanwhile."""
    try:
        return await unless_disconnected(request.receive, service.classify(images, top_k, _deadline(request, service)))
    except ClientDisconnect:
        service.metrics.rejections.labels(reason="disconnected").inc()
        raise


def _deadline(request: Request, service: Service) -> float:
    started: float = request.state.started
    return started + service.settings.request_timeout_s


def _model_ref(service: Service) -> ModelRef:
    assert service.classifier is not None
    return ModelRef(name=service.classifier.checkpoint.arch, version=service.classifier.version)


def _predictions(result: Served) -> list[PredictionOut]:
    return [PredictionOut(rank=p.rank, class_id=p.class_id, label=p.label, score=p.score) for p in result.predictions]


def _batch_item(index: int, filename: str | None, result: Served | ServiceError) -> BatchItem:
    if isinstance(result, ServiceError):
        return BatchItem(index=index, filename=filename, error=SlotError(code=result.code, message=result.message))
    return BatchItem(index=index, filename=filename, predictions=_predictions(result), batch_size=result.batch_size)


def _timing(request: Request, served: list[Served]) -> Timing:
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
