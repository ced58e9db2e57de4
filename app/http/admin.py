"""Admin endpoints: ``POST /admin/reload`` swaps the served model without downtime (docs/design.md §9).

Who may call them: with ``SERVE_ADMIN_KEY`` set, a request bearing that key; else, with ``SERVE_API_KEY`` set,
one bearing the API key; with neither, only clients on the loopback interface (anyone else: 403 ``forbidden``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Request
from pydantic import BaseModel, Field

from app.engine.errors import Forbidden, Unauthorized
from app.engine.reload import ReloadOutcome
from app.http.auth import bearer_matches
from app.http.deps import ServiceDep
from app.http.schemas import ErrorResponse

router = APIRouter(prefix="/admin", tags=["admin"])

# The process decides how a reload is carried out: in one server, ``Service.reload``; with several worker
# processes, a rolling reload of each in turn (app/process/workers.py). Set on ``app.state.reload``.
Reload = Callable[[Path | None], Awaitable[dict[str, Any]]]


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (the client's address) is on the loopback interface."""
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def require_admin(
    request: Request, service: ServiceDep, authorization: Annotated[str | None, Header()] = None
) -> None:
    """The admin key, else the API key, else a loopback client (see the module's docstring)."""
    settings = service.settings
    key = settings.admin_key or settings.api_key
    if key is not None:
        if not bearer_matches(authorization, key):
            raise service.reject(Unauthorized("admin endpoints need the header `Authorization: Bearer <key>`"))
        return
    if not is_loopback(request.client.host if request.client else None):
        raise service.reject(
            Forbidden("admin endpoints answer loopback clients only, unless SERVE_ADMIN_KEY or SERVE_API_KEY is set")
        )


AdminAuthorized = Annotated[None, Depends(require_admin)]


class ReloadRequest(BaseModel):
    path: str | None = Field(default=None, description="the checkpoint to serve; default SERVE_MODEL_PATH")


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


@router.post(
    "/reload",
    response_model=ReloadResponse,
    response_model_exclude_none=True,
    responses={status: {"model": ErrorResponse} for status in (401, 403, 409, 422, 503)},
)
async def reload(request: Request, _: AdminAuthorized, body: Annotated[ReloadRequest | None, Body()] = None) -> Any:
    """Load a checkpoint beside the serving model, warm it, then swap; the old model keeps serving on failure."""
    path = Path(body.path) if body is not None and body.path else None
    do_reload: Reload = request.app.state.reload
    return await do_reload(path)


def in_process_reload(reload_model: Callable[[Path | None], Awaitable[ReloadOutcome]]) -> Reload:
    """The ``Reload`` of a single server: the service's own, answered as ``ReloadResponse``."""

    async def run(path: Path | None) -> dict[str, Any]:
        outcome = await reload_model(path)
        return {"previous": outcome.previous, "current": outcome.current, "took_ms": outcome.took_ms}

    return run
