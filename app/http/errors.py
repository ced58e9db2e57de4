"""The one place where errors become HTTP answers: the JSON error envelope of docs/design.md §3.

Code raises the engine's named errors (``InvalidImage``, ``Overloaded``, …); only these handlers know how
an answer looks, so every route answers errors the same way.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app.errors import ServiceError


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
