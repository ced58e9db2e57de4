"""Admin endpoints: ``POST /admin/reload`` swaps the served model without downtime (docs/design.md §9).

Who may call them: a request bearing ``SERVE_ADMIN_KEY`` (else ``SERVE_API_KEY``) as ``Authorization: Bearer
<key>``. With neither key set they answer 403 to everyone: the client's address proves nothing (a sidecar,
a proxy or a browser on the same host all arrive from loopback), and SIGHUP or the file watcher reload
without the network. The key is checked from the headers alone, before a byte of the body is read; the
body is then bounded (``MAX_BODY_BYTES``), must be JSON (a browser's simple cross-site request cannot send
that type) and must arrive within the request's deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.engine.client import ReloadOutcome
from app.errors import Forbidden, InvalidParameter, RequestTimeout, Unauthorized, UnsupportedMediaType
from app.front.auth import bearer_matches
from app.front.web import DoorDep, SettingsDep, deadline_of, limit_body, media_type
from app.http.schemas import ErrorResponse

router = APIRouter(prefix="/admin", tags=["admin"])
MAX_BODY_BYTES = 64 * 1024  # a reload's body names one file

# The process decides how a reload is carried out: in one server, ``Service.reload``; with several worker
# processes, a rolling reload of each in turn (app/process/workers.py). Set on ``app.state.reload``; the
# argument is the file the request named (untrusted: the service resolves it inside the model directory).
Reload = Callable[[str | None], Awaitable[dict[str, Any]]]


async def require_admin(
    door: DoorDep, settings: SettingsDep, authorization: Annotated[str | None, Header()] = None
) -> None:
    """``Authorization: Bearer <SERVE_ADMIN_KEY>`` (else the API key); 403 when no key is configured."""
    key = settings.admin_key or settings.api_key
    if key is None:
        raise door.reject(
            Forbidden("admin endpoints are off: set SERVE_ADMIN_KEY and send `Authorization: Bearer <key>`")
        )
    if not bearer_matches(authorization, key):
        raise door.reject(Unauthorized("admin endpoints need the header `Authorization: Bearer <key>`"))


AdminAuthorized = Annotated[None, Depends(require_admin)]


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(
        default=None,
        max_length=4096,
        description="the checkpoint to serve, inside the model directory (SERVE_MODEL_DIR; relative names are "
        "taken from there); default SERVE_MODEL_PATH",
    )


class ModelStateOut(BaseModel):
    name: str
    version: str
    loaded_at: str


class WorkerReload(BaseModel):
    pid: int
    result: str = Field(description="ok, failed, or skipped (an earlier worker failed)")
    version: str | None = None
    error: str | None = None


class ReloadResponse(BaseModel):
    previous: ModelStateOut
    current: ModelStateOut
    took_ms: float
    workers: list[WorkerReload] | None = Field(default=None, description="with SERVE_WORKERS > 1: each worker's")


RELOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": ReloadRequest.model_json_schema()}},
    }
}


@router.post(
    "/reload",
    response_model=ReloadResponse,
    response_model_exclude_none=True,
    responses={status: {"model": ErrorResponse} for status in (401, 403, 409, 413, 415, 422, 503, 504)},
    openapi_extra=RELOAD_BODY,
)
async def reload(request: Request, _: AdminAuthorized) -> Any:
    """Load a checkpoint beside the serving model, warm it, then swap; the old model keeps serving on failure."""
    body = await read_reload_request(request, deadline_of(request))
    do_reload: Reload = request.app.state.reload
    return await do_reload(body.path)


async def read_reload_request(request: Request, deadline: float) -> ReloadRequest:
    """The optional JSON body, at most ``MAX_BODY_BYTES``, in by ``deadline``; no body means no path."""
    kind = media_type(request)
    if kind and kind != "application/json":
        raise UnsupportedMediaType(f"send the reload's body as application/json, not {kind}")
    try:
        async with asyncio.timeout(deadline - time.monotonic()):
            data = await limit_body(request, MAX_BODY_BYTES).body()
    except TimeoutError:
        raise RequestTimeout("the request body did not arrive before the request's deadline") from None
    if not data.strip():
        return ReloadRequest()
    if not kind:
        raise UnsupportedMediaType("send the reload's body with Content-Type: application/json")
    try:
        return ReloadRequest.model_validate(json.loads(data))
    except (ValueError, RecursionError) as exc:  # bad JSON (ValidationError is a ValueError too)
        raise InvalidParameter(_body_problem(exc)) from None


def _body_problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
    return 'the body must be a JSON object such as {"path": "model.safetensors"}'


def in_process_reload(reload_model: Callable[[str | None], Awaitable[ReloadOutcome]]) -> Reload:
    """The ``Reload`` of a single server: the service's own, answered as ``ReloadResponse``."""

    async def run(path: str | None) -> dict[str, Any]:
        outcome = await reload_model(path)
        return {"previous": outcome.previous, "current": outcome.current, "took_ms": outcome.took_ms}

    return run
