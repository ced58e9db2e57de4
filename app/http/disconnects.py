"""Work for a client that has gone is cancelled: its images leave the queue before they reach the model.

Neither uvicorn nor FastAPI cancels a handler when its client disconnects; the handler only learns of
it from the ASGI ``receive`` channel, which, once the body is read, answers nothing but
``http.disconnect``. So the wait for the answer races a wait on that channel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive

T = TypeVar("T")


async def unless_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """Await ``work``; if the client disconnects first, cancel it and raise ``ClientDisconnect``.

    Call it only once the request body has been read, so that ``receive`` has nothing else to deliver.
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
        request.app.state.service.metrics.rejections.labels(reason="disconnected").inc()
        raise
