"""Named domain errors and the one place where they become HTTP responses (DESIGN §3).

Code raises ``InvalidImage`` or ``Overloaded``; only ``install_error_handlers`` knows about status
codes and the JSON error envelope, so every route answers errors the same way.
"""

from __future__ import annotations

from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

RETRY_OVERLOADED_S = 1
RETRY_NOT_READY_S = 5


class ServiceError(Exception):
    """An error the client caused or can retry; ``status`` and ``code`` form the HTTP answer."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def headers(self) -> dict[str, str]:
        return {}


class InvalidImage(ServiceError):
    status, code = 400, "invalid_image"


class MissingFile(ServiceError):
    status, code = 400, "missing_file"


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class PayloadTooLarge(ServiceError):
    status, code = 413, "payload_too_large"


class ImageTooLarge(ServiceError):
    status, code = 413, "image_too_large"


class UnsupportedMediaType(ServiceError):
    status, code = 415, "unsupported_media_type"


class InvalidParameter(ServiceError):
    status, code = 422, "invalid_parameter"


class Overloaded(ServiceError):
    status, code = 503, "overloaded"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_OVERLOADED_S)}


class NotReady(ServiceError):
    status, code = 503, "not_ready"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_NOT_READY_S)}


class RequestTimeout(ServiceError):
    status, code = 504, "timeout"


def error_body(code: str, message: str, request_id: str) -> dict[str, Any]:
    """The JSON error envelope shared by every non-2xx answer."""
    return {"error": {"code": code, "message": message, "request_id": request_id}}


def error_response(status: int, code: str, message: str, request: Request, **headers: str) -> JSONResponse:
    request_id = getattr(request.state, "request_id", "")
    return JSONResponse(error_body(code, message, request_id), status_code=status, headers=headers or None)


async def _on_service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(exc.status, exc.code, exc.message, request, **exc.headers())


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [f"{'.'.join(str(p) for p in err['loc'][1:]) or 'request'}: {err['msg']}" for err in exc.errors()]
    return error_response(422, "invalid_parameter", "; ".join(problems), request)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, "bad_request" if exc.status_code < 500 else "internal_error")
    return error_response(exc.status_code, code, str(exc.detail), request, **(exc.headers or {}))


def install_error_handlers(app: FastAPI) -> None:
    """Map domain errors, parameter validation and routing errors to the JSON error envelope."""
    app.add_exception_handler(ServiceError, _on_service_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
