"""Named domain errors: what went wrong with a request, as plain exceptions.

Each carries the HTTP status and the error code of the API (docs/design.md §3) as data; only the
protocol edges (app/http/errors.py, the Open Inference Protocol's edges) turn them into answers, so this
module, like the rest of the engine, imports no web framework.
"""

from __future__ import annotations

from typing import ClassVar

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


class Forbidden(ServiceError):
    status, code = 403, "forbidden"


class ReloadInProgress(ServiceError):
    status, code = 409, "reload_in_progress"


class InvalidModel(ServiceError):
    status, code = 422, "invalid_model"
