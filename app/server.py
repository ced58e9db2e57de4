"""uvicorn with a graceful drain: on SIGTERM the service turns not-ready, answers new predict requests
with 503, finishes everything it accepted, and only then stops listening and exits 0."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from types import FrameType

import uvicorn

from app.service import Service

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """A second signal skips the drain and stops at once."""

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self._service = service
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signalled = False
        self._drain_task: asyncio.Task[None] | None = None
        self._heap_frozen = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Unlike uvicorn's own handler, this does not re-raise the signal after shutdown: a drained
        # service exits 0, as orchestrators expect from a clean stop.
        if self._signalled or self._loop is None:
            self.should_exit = self.force_exit = True
            return
        self._signalled = True
        self._loop.call_soon_threadsafe(self._begin_drain)

    def _begin_drain(self) -> None:
        self._drain_task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        await self._service.drain()
        log.info("drained; shutting down")
        self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self._service.startup_error is not None:
            return True
        if self._service.ready and not self._heap_frozen:
            # The ~400k objects of torch, ONNX and the loaded model live as long as the process. Out of
            # the collector's reach, they no longer make each full collection a pause of a few hundred
            # milliseconds for every request in flight.
            gc.freeze()
            self._heap_frozen = True
        return await super().on_tick(counter)
