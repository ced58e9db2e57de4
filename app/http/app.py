"""The HTTP API's FastAPI app: middleware, error handlers, the API's routes, admin and pages, in front of a
door (app/front/door.py). The process wing builds the door and adds the other protocols' routes
(app/process/assemble.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

from fastapi import APIRouter, FastAPI

from app.config import Settings
from app.front.door import Door
from app.http import admin
from app.http.errors import install_error_handlers
from app.http.middleware import RequestContextMiddleware
from app.http.pages import install_pages
from app.http.routes import router

DESCRIPTION = (
    "ResNet-50 image classification with dynamic batching. "
    "Send an image to `POST /predict`, several to `POST /predict/batch`."
)
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def build_http_app(
    settings: Settings, door: Door, reload: admin.Reload, lifespan: Lifespan, routers: Sequence[APIRouter] = ()
) -> FastAPI:
    """The app for ``door``; ``reload`` carries out ``POST /admin/reload``; ``routers`` are served beside the
    API's own routes (the Open Inference Protocol's)."""
    app = FastAPI(
        title="ResNet-50 inference service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # FastAPI's own pages load their scripts from a public CDN; install_pages serves them here
        redoc_url=None,
    )
    app.state.settings, app.state.door, app.state.reload = settings, door, reload
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=door.metrics)
    for included in (router, admin.router, *routers):
        app.include_router(included)
    if settings.pages:
        install_pages(app)
    return app
