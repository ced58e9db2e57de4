"""The app's lifespan with the Open Inference Protocol's gRPC server beside the HTTP one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from app.engine.service import Service
from app.v2.grpc_server import start_grpc_server


def with_grpc_server(service: Service) -> Callable[[object], AbstractAsyncContextManager[None]]:
    """``service.lifespan``, plus a gRPC server on ``SERVE_GRPC_PORT`` (none when it is 0).

    The gRPC server starts before the model is loaded, as the HTTP one does (ServerLive answers, ServerReady
    says false), and stops before the service lets its models go. On SIGTERM the service drains first: new
    calls on both protocols are refused and admitted ones finish, so stopping loses nothing; the grace period
    covers a forced stop, and no call outlives its deadline anyway.
    """

    @asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        async with service.lifespan(app):
            settings = service.settings
            server = await start_grpc_server(service, settings.host, settings.grpc_port) if settings.grpc_port else None
            try:
                yield
            finally:
                if server is not None:
                    await server.stop(grace=settings.request_timeout_s)

    return lifespan
