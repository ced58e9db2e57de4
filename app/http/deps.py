"""What every route depends on: the app's ``Service`` and the request's deadline."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.engine.service import Service


# Dependencies are coroutines on purpose: FastAPI runs plain functions in a thread pool, a thread
# hand-off per request for a few attribute reads.
async def get_service(request: Request) -> Service:
    """The app's ``Service``."""
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


def deadline_of(request: Request, service: Service) -> float:
    """When the request must be answered by, on the ``time.monotonic`` clock: its arrival plus the timeout."""
    started: float = request.state.started
    return started + service.settings.request_timeout_s
