"""``python -m app``: serve the checkpoint at ``SERVE_MODEL_PATH`` (settings: DESIGN §4, docs/api.md).

Exit codes: 0 after a clean (drained) stop, 1 when the model cannot be loaded, 2 for bad settings.
With ``SERVE_WORKERS`` > 1 this process supervises that many servers on the port (app/workers.py).
"""

from __future__ import annotations

import socket
import sys

import torch
import uvicorn

from app.backends import resolve_runtime
from app.config import ConfigError, Settings, load_settings
from app.logs import configure_logging
from app.main import create_app
from app.server import DrainingServer
from app.workers import supervise


def main() -> int:
    try:
        settings = load_settings()
        resolve_runtime(
            device=settings.device,
            backend=settings.backend,
            precision=settings.precision,
            decode=settings.decode,
            cuda_devices=torch.cuda.device_count(),
        )
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if settings.workers > 1:
        return supervise(settings)
    return serve(settings)


def serve(settings: Settings | None = None, sockets: list[socket.socket] | None = None) -> int:
    """One server in this process until it is stopped: 0 after a clean stop, 1 if the model cannot be
    served. A worker process (``sockets`` given) reads the settings its parent has already checked."""
    if settings is None:
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,  # the app logs one structured line per request itself
        server_header=False,
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 1,
    )
    service = app.state.service
    DrainingServer(config, service).run(sockets=sockets)
    return 1 if service.startup_error is not None else 0


if __name__ == "__main__":
    sys.exit(main())
