"""Per-request plumbing as one ASGI middleware: request id, access log line, request metrics, and the
last-resort 500 for exceptions nothing else handled (logged with their traceback, never shown)."""

from __future__ import annotations

import json
import logging
import random
import re
import time

from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.engine.metrics import Metrics
from app.http.errors import error_body

log = logging.getLogger("app.access")
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_QUIET_ROUTES = {"/health/live", "/health/ready", "/metrics"}  # probes and scrapes: debug level only


def request_id_from(scope: Scope) -> str:
    """The client's X-Request-ID when it is a sane token, else a fresh one."""
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if is_safe_request_id(candidate):
                return candidate
    return new_request_id()


def is_safe_request_id(candidate: str) -> bool:
    """Whether a client's request id may be logged as it is: 1 to 128 letters, digits and ``._:-``."""
    return _CLIENT_ID.fullmatch(candidate) is not None


def new_request_id() -> str:
    return f"{random.getrandbits(128):032x}"  # an identifier, not a secret: no need for os.urandom


def escaped_excerpt(text: str, limit: int = 128) -> str:
    """At most ``limit`` characters of ``text`` with every control and non-ASCII character escaped
    (a newline becomes ``\\n``), so a client's string can never forge a log line or fill the log."""
    excerpt = text[:limit].encode("unicode_escape").decode("ascii")
    return excerpt + ("..." if len(text) > limit else "")


def route_label(scope: Scope) -> str:
    """The matched route's metrics label (bounded label values): its ``metrics_label`` when it has one (the
    Open Inference Protocol's infer paths share one), else its template; 'unmatched' for unknown paths."""
    route = scope.get("route")
    label = getattr(route, "metrics_label", None) or getattr(route, "path", None)
    return label if isinstance(label, str) else "unmatched"


class RequestContextMiddleware:
    """Tags every response with X-Request-ID, logs one line per request, records request metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(scope)
        state = scope.setdefault("state", {})
        state.update(request_id=request_id, started=time.monotonic())
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started, status = True, message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            status = 499  # the client went away mid-upload: nothing to answer
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id, "route": route_label(scope)})
            if not response_started:
                await _send_internal_error(send_with_id, request_id)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        route = route_label(scope)
        self.metrics.requests.labels(route=route, code=str(status)).inc()
        self.metrics.request_duration.labels(route=route).observe(elapsed)
        state = scope.get("state", {})
        fields = {
            "request_id": state.get("request_id"),
            "method": scope.get("method"),
            "route": route,
            "status": status,
            "duration_ms": round(elapsed * 1000, 3),
        }
        if "timing_ms" in state:
            fields["timing_ms"] = state["timing_ms"]
        level = logging.DEBUG if route in _QUIET_ROUTES else logging.INFO
        log.log(level, "%s %s %d", scope.get("method"), scope.get("path"), status, extra=fields)


async def _send_internal_error(send: Send, request_id: str) -> None:
    body = json.dumps(error_body("internal_error", "internal server error", request_id)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})
