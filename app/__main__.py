"""``python -m app``: serve the checkpoint at ``SERVE_MODEL_PATH`` (settings: DESIGN §4, docs/api.md).

Exit codes: 0 after a clean (drained) stop, 1 when the model cannot be loaded, 2 for bad settings.
"""

from __future__ import annotations

import sys

import torch
import uvicorn

from app.backends import resolve_runtime
from app.config import ConfigError, load_settings
from app.logs import configure_logging
from app.main import create_app
from app.server import DrainingServer


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
    DrainingServer(config, service).run()
    return 1 if service.startup_error is not None else 0


if __name__ == "__main__":
    sys.exit(main())
