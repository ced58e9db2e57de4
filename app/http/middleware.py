"""Per-request plumbing as one ASGI middleware: request id, access log line, request metrics, and the
last-resort 500 for exceptions nothing else handled (logged with their traceback, never shown)."""

from __future__ import annotations

import json
import logging
import time

from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.front.requests import is_safe_request_id, new_request_id, record_request
from app.http.errors import error_body
from app.metrics import Metrics

log = logging.getLogger("app.access")


def request_id_from(scope: Scope) -> str:
    """The client's X-Request-ID when it is a sane token, else a fresh one."""
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if is_safe_request_id(candidate):
                return candidate
    return new_request_id()


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
        state = scope.get("state", {})
        fields = {"request_id": state.get("request_id"), "method": scope.get("method"), "path": scope.get("path")}
        if "timing_ms" in state:
            fields["timing_ms"] = state["timing_ms"]
        record_request(self.metrics, route_label(scope), status, elapsed, **fields)


async def _send_internal_error(send: Send, request_id: str) -> None:
    body = json.dumps(error_body("internal_error", "internal server error", request_id)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})
