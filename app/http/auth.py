"""The API key: ``Authorization: Bearer <key>`` on the prediction endpoints when ``SERVE_API_KEY`` is set."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header
from pydantic import SecretStr

from app.engine.errors import Unauthorized
from app.http.deps import ServiceDep


def bearer_matches(authorization: str | None, key: SecretStr) -> bool:
    """Whether ``authorization`` is ``Bearer <key>`` (the scheme in any case; a constant-time compare)."""
    scheme, _, token = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.get_secret_value().encode())


async def require_api_key(service: ServiceDep, authorization: Annotated[str | None, Header()] = None) -> None:
    """Check ``Authorization: Bearer <key>`` when ``SERVE_API_KEY`` is set."""
    key = service.settings.api_key
    if key is not None and not bearer_matches(authorization, key):
        raise service.reject(Unauthorized("this endpoint needs the header `Authorization: Bearer <key>`"))


Authorized = Annotated[None, Depends(require_api_key)]
