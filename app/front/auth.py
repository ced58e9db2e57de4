"""The keys: ``Authorization: Bearer <key>``, compared in constant time, for every protocol."""

from __future__ import annotations

import hmac

from pydantic import SecretStr


def bearer_matches(authorization: str | None, key: SecretStr) -> bool:
    """Whether ``authorization`` is ``Bearer <key>`` (the scheme in any case; a constant-time compare)."""
    scheme, _, token = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.get_secret_value().encode())


def key_accepted(key: SecretStr | None, authorization: str | None) -> bool:
    """Whether a request bearing ``authorization`` may call an endpoint that ``key`` guards (None: open)."""
    return key is None or bearer_matches(authorization, key)
