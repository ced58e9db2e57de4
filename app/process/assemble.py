"""The composition root: the one place that builds the engine, the door, the HTTP app with the Open Inference
Protocol's routes, and the gRPC server, and ties their lives together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.capacity import Capacity
from app.config import Settings, load_settings
from app.engine.backends import Runtime, plan_runtime
from app.engine.local import LocalEngine
from app.front.door import Door, Group
from app.http.admin import in_process_reload
from app.http.app import Lifespan, build_http_app
from app.metrics import Metrics
from app.v2 import rest as v2_rest
from app.v2.grpc_server import start_grpc_server


def create_app(settings: Settings | None = None, runtime: Runtime | None = None, group: Group | None = None) -> FastAPI:
    """The whole service in this process; with no ``settings`` they are read from the ``SERVE_*`` environment,
    with no ``runtime`` it is planned from them; ``group``: the other worker processes, if any."""
    settings = settings or load_settings()
    runtime = runtime or plan_runtime(settings)
    # On CUDA a second batch uploads while the first computes; CPU backends use every core already.
    in_flight = 2 if runtime.device.startswith("cuda") else 1
    capacity = Capacity(settings.max_batch_size, settings.max_queue_size, batches_in_flight=in_flight)
    metrics = Metrics()
    engine = LocalEngine(settings, runtime, capacity, metrics)
    door = Door(engine, capacity, metrics, group)
    app = build_http_app(
        settings, door, in_process_reload(engine.reload), serving(engine, door, settings), routers=[v2_rest.router]
    )
    app.state.engine = engine
    return app


def serving(engine: LocalEngine, door: Door, settings: Settings) -> Lifespan:
    """The app's lifespan: the engine loads in the background (liveness answers meanwhile) and the gRPC server
    starts beside the HTTP one; on the way out, gRPC stops taking calls (admitted ones finish, as the drain
    has let every admitted HTTP request finish) before the engine lets its models go."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        try:
            grpc = await start_grpc_server(door, settings) if settings.grpc_port else None
            try:
                yield
            finally:
                door.begin_drain()
                if grpc is not None:
                    await grpc.stop(grace=settings.request_timeout_s)
        finally:
            door.begin_drain()
            await engine.stop()

    return lifespan
