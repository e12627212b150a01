"""The error contract: every failure a client sees is RFC 9457
`application/problem+json` with a stable machine `code`.

Domains subclass `SendstreamError` in their own `errors.py`; services raise
those, never `HTTPException`. `install_error_handlers` renders them, and turns
framework errors (bad JSON, validation, unknown route, database outage) into
problems of their own so no client ever sees a bare 500 for bad input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class SendstreamError(Exception):
    code: str = "error"
    status: int = 400
    title: str = "Request failed"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = dict(headers or {})
        self.errors = list(errors or [])


class NotFound(SendstreamError):
    code = "not_found"
    status = 404
    title = "Not found"


class Conflict(SendstreamError):
    code = "conflict"
    status = 409
    title = "Conflict"


class InvalidInput(SendstreamError):
    code = "validation_error"
    status = 422
    title = "Invalid input"


class InvalidText(InvalidInput):
    """A text value holds a NUL character, which PostgreSQL cannot store."""

    code = "invalid_text"

    def __init__(self, where: str = "A text value") -> None:
        super().__init__(
            f"{where} contains a NUL character (\\u0000), which cannot be stored; "
            "remove it and send the request again."
        )


class Unauthenticated(SendstreamError):
    code = "unauthenticated"
    status = 401
    title = "Authentication required"


class Forbidden(SendstreamError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class RateLimited(SendstreamError):
    code = "rate_limited"
    status = 429
    title = "Too many requests"


class ServiceUnavailable(SendstreamError):
    code = "service_unavailable"
    status = 503
    title = "Service unavailable"
