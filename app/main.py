"""Assembles the FastAPI app: settings, service state, middleware, error handlers and routes."""

from __future__ import annotations

from fastapi import FastAPI

from app.admission import Admission
from app.config import Settings, load_settings
from app.errors import install_error_handlers
from app.middleware import RequestContextMiddleware
from app.routes import router
from app.service import Service

DESCRIPTION = (
    "ResNet-50 image classification with dynamic batching. "
    "Send an image to `POST /predict`, several to `POST /predict/batch`."
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; with no ``settings`` they are read from the ``SERVE_*`` environment."""
    settings = settings or load_settings()
    service = Service(settings)
    app = FastAPI(
        title="ResNet-50 inference service", version="0.1.0", description=DESCRIPTION, lifespan=service.lifespan
    )
    app.state.service = service
    app.state.admission = Admission.for_queue(settings.max_queue_size, settings.max_batch_size)
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=service.metrics)
    app.include_router(router)
    return app
