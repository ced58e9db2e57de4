"""The HTTP plumbing both HTTP edges share (the API in app/http, the Open Inference Protocol's REST routes in
app/v2): the app's door and settings as dependencies, the request's deadline, the API key, bounded bodies, and
work cancelled when its client hangs up.

Dependencies are coroutines on purpose: FastAPI runs plain functions in a thread pool, a thread hand-off per
request for a few attribute reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import Depends, Header, Request
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive

from app.config import Settings
from app.errors import PayloadTooLarge, Unauthorized
from app.front.auth import key_accepted
from app.front.door import Door

T = TypeVar("T")


async def get_door(request: Request) -> Door:
    """The app's ``Door``."""
    door: Door = request.app.state.door
    return door


async def get_settings(request: Request) -> Settings:
    """The app's ``Settings``."""
    settings: Settings = request.app.state.settings
    return settings


DoorDep = Annotated[Door, Depends(get_door)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def deadline_of(request: Request) -> float:
    """When the request must be answered by, on the ``time.monotonic`` clock: its arrival plus the timeout."""
    started: float = request.state.started
    settings: Settings = request.app.state.settings
    return started + settings.request_timeout_s


async def require_api_key(
    door: DoorDep, settings: SettingsDep, authorization: Annotated[str | None, Header()] = None
) -> None:
    """Check ``Authorization: Bearer <key>`` when ``SERVE_API_KEY`` is set."""
    if not key_accepted(settings.api_key, authorization):
        raise door.reject(Unauthorized("this endpoint needs the header `Authorization: Bearer <key>`"))


Authorized = Annotated[None, Depends(require_api_key)]


def media_type(request: Request) -> str:
    """The request's content type without parameters, lower-cased ('' when absent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def limit_body(request: Request, max_bytes: int) -> Request:
    """A view of ``request`` whose body raises ``PayloadTooLarge`` once it passes ``max_bytes``: refused from a
    declared Content-Length at once, and for a body without one as soon as it crosses the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {max_bytes}")
    receive = request.receive
    received = 0

    async def limited_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise PayloadTooLarge(f"the body is over the limit of {max_bytes} bytes")
        return message

    return Request(request.scope, limited_receive)


async def unless_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """Await ``work``; if the client disconnects first, cancel it and raise ``ClientDisconnect``.

    Neither uvicorn nor FastAPI cancels a handler when its client disconnects; the handler only learns of it
    from the ASGI ``receive`` channel, which, once the body is read, answers nothing but ``http.disconnect``.
    So call it only once the request body has been read.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:  # also on our own cancellation: neither task may outlive the request
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled() and watcher.done() and not watcher.cancelled():
        raise ClientDisconnect()
    return task.result()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def classify_while_connected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` (a classification), cancelled with its queued images if the client disconnects first;
    the hang-up is counted as a ``disconnected`` rejection. Call it once the body has been read."""
    try:
        return await unless_disconnected(request.receive, work)
    except ClientDisconnect:
        door: Door = request.app.state.door
        door.metrics.rejections.labels(reason="disconnected").inc()
        raise
