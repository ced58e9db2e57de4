"""uvicorn with a graceful drain: on SIGTERM the service turns not-ready, answers new predict requests
with 503, finishes everything it accepted, and only then stops listening and exits 0."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn

from app.config import Settings
from app.engine.backends import Runtime
from app.engine.local import LocalEngine
from app.errors import InvalidModel, ServiceError
from app.front.door import Door
from app.http.admin import Reload
from app.process.assemble import create_app
from app.process.rollout import Peers

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """A second signal skips the drain and stops at once."""

    def __init__(
        self,
        config: uvicorn.Config,
        door: Door,
        engine: LocalEngine,
        reload: Reload,
        on_loop: Callable[[asyncio.AbstractEventLoop], None] | None = None,
    ) -> None:
        super().__init__(config)
        self._door, self._engine = door, engine
        self._reload = reload
        self._on_loop = on_loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signalled = False
        self._drain_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # SIGHUP reloads under way (a reference keeps them alive)
        self._heap_frozen = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        signal.signal(signal.SIGHUP, self._on_hangup)
        if self._on_loop is not None:
            self._on_loop(self._loop)
        await super().startup(sockets)

    def _on_hangup(self, sig: int, frame: FrameType | None) -> None:
        """SIGHUP reloads the model from SERVE_MODEL_PATH, as ``POST /admin/reload`` does."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(lambda: self._tasks.add(asyncio.create_task(self._reload_logged())))

    async def _reload_logged(self) -> None:
        try:
            await self._reload(None)
        except ServiceError as exc:  # a failed reload is logged where it failed; say why this one did not run
            if not isinstance(exc, InvalidModel):
                log.warning("SIGHUP: no reload: %s", exc.message)

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
        await self._door.drain()
        log.info("drained; shutting down")
        self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self._engine.startup_error is not None:
            return True
        if self._door.ready and not self._heap_frozen:
            # The ~400k objects of torch, ONNX and the loaded model live as long as the process. Out of
            # the collector's reach, they no longer make each full collection a pause of a few hundred
            # milliseconds for every request in flight.
            gc.freeze()
            self._heap_frozen = True
        return await super().on_tick(counter)


def serve(
    settings: Settings,
    runtime: Runtime,
    sockets: list[socket.socket] | None = None,
    peers: Peers | None = None,
) -> int:
    """One server in this process until it is stopped: 0 after a clean stop, 1 if the model cannot be
    served. A worker process listens on the socket its parent bound for it (``sockets``), is ready for
    probes with its peers only, and reloads with them, one at a time (``peers``; app/process/rollout.py)."""
    app = create_app(settings, runtime, group=peers)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        # h11, never httptools even when installed (uvicorn[standard] pulls it in): h11 bounds the request
        # head (431 past 16 KiB of headers; docs/reliability.md) where uvicorn's httptools protocol does not.
        http="h11",
        log_config=None,
        access_log=False,  # the app logs one structured line per request itself
        server_header=False,
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 1,
    )
    door: Door = app.state.door
    engine: LocalEngine = app.state.engine
    on_loop = None
    if peers is not None:  # a worker: reloads roll across all workers, through the supervisor
        worker = peers.control_for(engine.reload)
        app.state.reload, on_loop = worker.rollout, worker.start
    DrainingServer(config, door, engine, app.state.reload, on_loop).run(sockets=sockets)
    return 1 if engine.startup_error is not None else 0
