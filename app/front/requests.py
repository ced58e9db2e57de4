"""Request ids and the access log line, the same for every protocol: one line and one count per request."""

from __future__ import annotations

import logging
import random
import re

from app.metrics import Metrics

access_log = logging.getLogger("app.access")
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_QUIET_ROUTES = {"/health/live", "/health/ready", "/metrics"}  # probes and scrapes: debug level only


def is_safe_request_id(candidate: str) -> bool:
    """Whether a client's request id may be logged as it is: 1 to 128 letters, digits and ``._:-``."""
    return _CLIENT_ID.fullmatch(candidate) is not None


def new_request_id() -> str:
    return f"{random.getrandbits(128):032x}"  # an identifier, not a secret: no need for os.urandom


def escaped_excerpt(text: str, limit: int = 128) -> str:
    """At most ``limit`` characters of ``text`` with every control and non-ASCII character escaped
    (a newline becomes ``\\\\n``), so a client's string can never forge a log line or fill the log."""
    excerpt = text[:limit].encode("unicode_escape").decode("ascii")
    return excerpt + ("..." if len(text) > limit else "")


def record_request(metrics: Metrics, route: str, status: int, elapsed_s: float, **fields: object) -> None:
    """Count one request (``inference_requests_total``, its duration) and log its access line, ``<method>
    <path> <status>`` with ``fields`` (``request_id``, ``method``, ``path``, ``timing_ms``, ...)."""
    metrics.requests.labels(route=route, code=str(status)).inc()
    metrics.request_duration.labels(route=route).observe(elapsed_s)
    path = fields.pop("path", route)
    line = {**fields, "route": route, "status": status, "duration_ms": round(elapsed_s * 1000, 3)}
    level = logging.DEBUG if route in _QUIET_ROUTES else logging.INFO
    access_log.log(level, "%s %s %d", fields.get("method"), path, status, extra=line)
