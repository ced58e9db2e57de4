"""Assembles the FastAPI app: the service, middleware, error handlers and routes."""

from __future__ import annotations

from fastapi import FastAPI

from app.config import Settings, load_settings
from app.engine.backends import Runtime
from app.engine.service import Service
from app.http import admin
from app.http.errors import install_error_handlers
from app.http.middleware import RequestContextMiddleware
from app.http.pages import install_pages
from app.http.routes import router
from app.v2 import rest as v2_rest
from app.v2.lifespan import with_grpc_server

DESCRIPTION = (
    "ResNet-50 image classification with dynamic batching. "
    "Send an image to `POST /predict`, several to `POST /predict/batch`."
)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """Build the app; with no ``settings`` they are read from the ``SERVE_*`` environment, with no
    ``runtime`` it is planned from them."""
    settings = settings or load_settings()
    service = Service(settings, runtime)
    app = FastAPI(
        title="ResNet-50 inference service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=with_grpc_server(service),
        docs_url=None,  # FastAPI's own pages load their scripts from a public CDN; install_pages serves them here
        redoc_url=None,
    )
    app.state.service = service
    app.state.reload = admin.in_process_reload(service.reload)  # workers replace it with a rolling reload
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=service.metrics)
    app.include_router(router)
    app.include_router(admin.router)
    app.include_router(v2_rest.router)
    if settings.pages:
        install_pages(app)
    return app
