"""``python -m app``: serve the checkpoint at ``SERVE_MODEL_PATH`` (settings: docs/api.md, docs/design.md §4).

Exit codes: 0 after a clean (drained) stop, 1 when the model cannot be loaded, 2 for bad settings.
With ``SERVE_WORKERS`` > 1 this process supervises that many servers on the port (app/process/workers.py).
"""

from __future__ import annotations

import logging
import signal
import sys

from app.config import ConfigError, load_settings, unknown_variables
from app.engine.backends import plan_runtime
from app.process.logs import configure_logging
from app.process.server import serve
from app.process.workers import supervise


def main() -> int:
    # SIGHUP reloads the model once the server runs; before that (importing torch, loading) its default
    # action would kill the process. Ignored until the server or the supervisor installs its handler.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        settings = load_settings()
        runtime = plan_runtime(settings)
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    configure_logging(settings.log_level, settings.log_format)
    for line in unknown_variables():
        logging.getLogger("app").warning(line)
    if settings.workers > 1:
        return supervise(settings, runtime)
    return serve(settings, runtime)


if __name__ == "__main__":
    sys.exit(main())
