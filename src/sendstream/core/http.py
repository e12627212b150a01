"""HTTP plumbing shared by every router: the unit-of-work route class, request
ids, body size limit, latency metrics and problem+json rendering."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sendstream.core.db import get_database
from sendstream.core.errors import InvalidInput, InvalidText, SendstreamError
from sendstream.core.metrics import HTTP_REQUEST_SECONDS
from sendstream.core.settings import get_settings

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger("sendstream.http")

# Called with the session and the response just before a successful request
# commits (audit log, idempotency record); they write in the same transaction.
CommitHook = Callable[[AsyncSession, Response], Awaitable[None]]


class UnitOfWorkRoute(APIRoute):
    """Every API route runs in one session that commits once, after the
    endpoint returned a non-error response and before that response is sent, so
    a client never sees success for work that was rolled back."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()
        known_query = _query_names(self.dependant)

        async def handler(request: Request) -> Response:
            # A misspelt filter (`?staet=dead`) would otherwise be ignored and
            # the client would act on an unfiltered answer.
            unknown = sorted(set(request.query_params) - known_query)
            if unknown:
                raise InvalidInput(
                    f"unknown query parameter(s): {', '.join(unknown)}; this operation "
                    f"accepts: {', '.join(sorted(known_query)) or 'none'}.",
                    code="unknown_query_parameter",
                )
            async with get_database().sessionmaker() as session:
                request.state.session = session
                request.state.commit_hooks = []
                try:
                    response = await original(request)
                    if response.status_code >= 400:
                        await session.rollback()
                        return response
                    for hook in request.state.commit_hooks:
                        await hook(session, response)
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    raise
                return response

        return handler


def _query_names(dependant: Dependant) -> set[str]:
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def get_session(request: Request) -> AsyncSession:
    """FastAPI dependency: the request's unit-of-work session."""
    session: AsyncSession = request.state.session
    return session


def add_commit_hook(request: Request, hook: CommitHook) -> None:
    request.state.commit_hooks.append(hook)


class PreparedResponse(Exception):
    """Raised from a dependency to answer with `response` instead of running
    the endpoint (an idempotent replay); the unit of work rolls back."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def route_template(scope: Scope) -> str:
    """The matched route's full path template (`/v1/jobs/{job_id}`), never the
    raw path, so metrics and audit entries do not explode with ids. FastAPI
    keeps the prefixed template on its route context; the route itself only
    knows the path relative to its router."""
    context = scope.get("fastapi", {}).get("effective_route_context")
    template = getattr(context, "path_format", None) or getattr(scope.get("route"), "path", None)
    return str(template) if template else "unmatched"


def request_id(request: Request) -> str | None:
    value: str | None = getattr(request.state, "request_id", None)
    return value


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


# Route templates (the full path, `/v1/contacts/by-email/{email}`) whose
# path parameters carry personal data, an email address: the access log
# writes the template instead of the path, so logs shipped elsewhere and kept
# for months hold no address (and a GDPR erasure has nothing to chase there).
# Domains register theirs (`redact_path_in_logs`) so core never names them.
_REDACTED_PATHS: set[str] = set()


def redact_path_in_logs(template: str) -> None:
    """Log requests to `template` (the full path template, as
    `route_template` gives it) under the template, never their real path."""
    _REDACTED_PATHS.add(template)


def loggable_path(scope: Scope) -> str:
    """The request's path for logs and records kept outside the request:
    the route template when the route was registered with
    `redact_path_in_logs`, else the real path."""
    template = route_template(scope)
    return template if template in _REDACTED_PATHS else str(scope["path"])


# --- middleware (pure ASGI: cheaper than BaseHTTPMiddleware, streams untouched)


class RequestContextMiddleware:
    """Assigns a request id (or keeps a sane one from `X-Request-Id`), binds it
    to every log line, records latency by route template and writes one access
    line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        rid = incoming if incoming and len(incoming) <= 64 and incoming.isprintable() else None
        rid = rid or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        structlog.contextvars.bind_contextvars(request_id=rid)
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                # Left by core.ratelimit.enforce once a key is authenticated.
                for name, value in scope["state"].get("rate_limit_headers", ()):
                    headers.append((name.lower().encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            template = route_template(scope)
            HTTP_REQUEST_SECONDS.labels(scope["method"], template, f"{status // 100}xx").observe(
                elapsed
            )
            log.info(
                "http.request",
                method=scope["method"],
                path=loggable_path(scope),
                route=template,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
            # workspace_id is bound by the auth dependency (workspaces.auth).
            structlog.contextvars.unbind_contextvars("request_id", "workspace_id")


# (method, path) -> the body limit of a route that takes file uploads, read
# from settings per request. Domains register their upload routes here
# (`allow_large_body`) so core never names a domain's route.
_LARGE_BODY_ROUTES: dict[tuple[str, str], Callable[[], int]] = {}


def allow_large_body(method: str, path: str, limit: Callable[[], int]) -> None:
    """Let `method path` (the full path, e.g. `/v1/contacts/imports`) accept
    bodies up to `limit()` bytes instead of `api.max_body_bytes`."""
    _LARGE_BODY_ROUTES[(method.upper(), path)] = limit


class BodySizeLimitMiddleware:
    """Refuses bodies over `api.max_body_bytes` (or a registered upload route's
    own limit) with 413, by Content-Length when given and by counting streamed
    bytes otherwise."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route_limit = _LARGE_BODY_ROUTES.get((scope["method"], scope["path"]))
        limit = route_limit() if route_limit else get_settings().api.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(limit)(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _too_large(limit)(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _too_large(limit: int) -> JSONResponse:
    return problem_response(
        413,
        "payload_too_large",
        "Payload too large",
        f"The request body is larger than the {limit} bytes this server accepts.",
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


# --- problem+json


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
    instance: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://sendstream.dev/problems/{code.replace('_', '-')}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _validation_errors(exc: RequestValidationError) -> tuple[str, str, list[dict[str, Any]]]:
    errors: list[dict[str, Any]] = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            where = err.get("loc", [None, 0])
            pos = where[1] if len(where) > 1 else 0
            return (
                "malformed_json",
                f"The request body is not valid JSON (at character {pos}): "
                f"{ctx.get('error', 'parse error')}.",
                [],
            )
        loc = [str(p) for p in err.get("loc", ())]
        errors.append(
            {"location": ".".join(loc), "message": err.get("msg", ""), "type": err.get("type")}
        )
    first = errors[0] if errors else {"location": "body", "message": "invalid"}
    detail = f"{first['location']}: {first['message']}"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return "validation_error", detail, errors


_STATUS_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
}


def _allowed_methods(request: Request) -> str | None:
    """Every method the path supports, from the OpenAPI document: the router
    only knows the methods of the one route that matched the path."""
    for template, item in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            return ", ".join(sorted(m.upper() for m in item if m != "parameters"))
    return None


def install_error_handlers(app: FastAPI) -> None:
    async def sendstream_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, SendstreamError):  # registered for this type only
            raise exc
        return problem_response(
            exc.status,
            exc.code,
            exc.title,
            exc.message,
            headers=exc.headers or None,
            errors=[dict(e) for e in exc.errors] or None,
            instance=request.url.path,
        )

    async def validation_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, RequestValidationError):  # registered for this type only
            raise exc
        code, detail, errors = _validation_errors(exc)
        status = 400 if code == "malformed_json" else 422
        title = "Malformed JSON" if status == 400 else "Invalid input"
        return problem_response(status, code, title, detail, errors=errors or None)

    async def http_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, StarletteHTTPException):  # registered for this type only
            raise exc
        code, title = _STATUS_CODES.get(exc.status_code, ("http_error", "Request failed"))
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No route matches {request.method} {request.url.path}."
        if exc.status_code == 405:
            allowed = _allowed_methods(request) or headers.get("Allow", "")
            headers["Allow"] = allowed
            detail = f"{request.method} is not supported here; use {allowed}."
        return problem_response(exc.status_code, code, title, detail, headers=headers)

    async def database_unavailable(request: Request, exc: Exception) -> Response:
        sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None) or ""
        if sqlstate.startswith("40"):
            # Deadlock or serialization failure: the server is fine, this
            # transaction lost a race and was rolled back whole.
            log.info("database.transaction_conflict", sqlstate=sqlstate)
            return problem_response(
                503,
                "concurrent_update",
                "Service unavailable",
                "The request collided with a concurrent change and was not applied; retry it.",
                headers={"Retry-After": "1"},
            )
        log.warning("database.unavailable", error=str(exc).splitlines()[0][:300])
        retry_after = get_settings().api.unavailable_retry_after
        return problem_response(
            503,
            "database_unavailable",
            "Service unavailable",
            "The database is not reachable right now; the request was not applied. "
            "Retry after the number of seconds in Retry-After.",
            headers={"Retry-After": str(retry_after)},
        )

    async def data_error(request: Request, exc: Exception) -> Response:
        # PostgreSQL stores no NUL character in text; one can arrive in any
        # string of a query or body, so it is answered here, once, instead of
        # by every schema. The transaction was rolled back whole. psycopg
        # refuses it in a text parameter; PostgreSQL refuses `\u0000` inside
        # a JSON value with SQLSTATE 22P05.
        sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
        if "NUL (0x00)" in str(exc) or sqlstate == "22P05":
            return await sendstream_error(request, InvalidText())
        return await unexpected(request, exc)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("http.unhandled_error")
        return problem_response(
            500,
            "internal_error",
            "Internal server error",
            f"An unexpected error occurred; quote request id {request_id(request)} when "
            "reporting it.",
        )

    async def prepared_response(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, PreparedResponse):
            raise exc
        return exc.response

    app.add_exception_handler(PreparedResponse, prepared_response)
    app.add_exception_handler(SendstreamError, sendstream_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for db_error in (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError):
        app.add_exception_handler(db_error, database_unavailable)
    app.add_exception_handler(sa_exc.DataError, data_error)
    app.add_exception_handler(Exception, unexpected)
