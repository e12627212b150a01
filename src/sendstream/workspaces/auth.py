"""Authentication and authorisation for API routes.

Routers declare what a route needs as a parameter default:
`principal: Principal = require_scope("contacts:read")`. The dependency

1. reads `Authorization: Bearer <key>` (the only accepted form: one way in,
   and it is what SendGrid-style SDKs send),
2. resolves the key (401 `missing_api_key` / `invalid_api_key` /
   `api_key_revoked` / `api_key_expired`, all with `WWW-Authenticate`),
3. records its use at most once a minute per key,
4. takes a token from the key's rate-limit bucket (429 `rate_limited`),
5. checks the scope (403 `missing_scope`; `admin` implies every scope),
6. claims the request's `Idempotency-Key` (creates only), and
7. for mutating methods, writes an audit entry in the request's own
   transaction, so an audit row exists exactly when the change does.

`request.state.principal` holds the result; the workspace id is bound into
the log context for the rest of the request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core import idempotency, ratelimit
from sendstream.core.db import get_database
from sendstream.core.http import (
    add_commit_hook,
    client_ip,
    get_session,
    loggable_path,
    request_id,
    route_template,
)
from sendstream.workspaces import scopes as scope_rules
from sendstream.workspaces.errors import InvalidApiKey, MissingApiKey, MissingScope
from sendstream.workspaces.service import api_key_service, audit_service, utcnow

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# auto_error=False: our own 401s carry problem+json codes; the scheme object is
# still what puts the bearer security scheme into the OpenAPI document.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key: `Authorization: Bearer ss_<prefix>_<secret>`.",
)


@dataclass(frozen=True)
class Principal:
    workspace_id: uuid.UUID
    api_key_id: uuid.UUID | None
    user_id: uuid.UUID | None
    scopes: frozenset[str]

    def has_scope(self, scope: str) -> bool:
        return scope_rules.grants(self.scopes, scope)


def _presented_key(request: Request) -> str:
    header = request.headers.get("authorization")
    if header is None or not header.strip():
        raise MissingApiKey()
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise InvalidApiKey()
    return value.strip()


async def _authenticate(request: Request, session: AsyncSession) -> Principal:
    key = await api_key_service.authenticate(session, _presented_key(request))
    principal = Principal(
        workspace_id=key.workspace_id,
        api_key_id=key.id,
        user_id=key.created_by_user_id,
        scopes=frozenset(key.scopes),
    )
    now = utcnow()
    if api_key_service.needs_touch(key, now):
        # Its own short transaction: the request's may roll back (a 4xx is
        # still a use of the key) and must not hold the key row's lock.
        async with get_database().session() as touch_session:
            await api_key_service.record_use(touch_session, key.id, ip=client_ip(request), now=now)
    return principal


def _audit_hook(request: Request, principal: Principal) -> Any:
    action = f"{request.method} {route_template(request.scope)}"

    async def write(session: AsyncSession, response: Response) -> None:
        audit_service.record(
            session,
            principal.workspace_id,
            actor_type="api_key",
            actor_id=str(principal.api_key_id) if principal.api_key_id else None,
            action=action,
            target=loggable_path(request.scope),
            status=response.status_code,
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
            request_id=request_id(request),
        )

    return write


def _dependency(scope: str | None) -> Any:
    if scope is not None and not scope_rules.is_known(scope):
        # A typo in a router must fail at import, not as a 403 in production.
        raise ValueError(f"unknown scope {scope!r}; add it to workspaces/scopes.py first")

    async def dependency(
        request: Request,
        session: Annotated[AsyncSession, Depends(get_session)],
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    ) -> Principal:
        existing: Principal | None = getattr(request.state, "principal", None)
        if existing is None:
            principal = await _authenticate(request, session)
            request.state.principal = principal
            structlog.contextvars.bind_contextvars(workspace_id=str(principal.workspace_id))
            await ratelimit.enforce(request, bucket_key=str(principal.api_key_id))
        else:
            # A second require_scope on the same route only adds its scope check;
            # the key was resolved, rate-limited and audited once already.
            principal = existing
        if scope is not None and not principal.has_scope(scope):
            raise MissingScope(scope)
        if existing is None:
            await idempotency.begin(request, session, principal.workspace_id)
            if request.method in MUTATING_METHODS:
                add_commit_hook(request, _audit_hook(request, principal))
        return principal

    return Depends(dependency)


def require_scope(scope: str) -> Any:
    """Dependency: an authenticated principal holding `scope` (or `admin`)."""
    return _dependency(scope)


def require_principal() -> Any:
    """Dependency: any authenticated principal, whatever its scopes (for
    endpoints every key may call, such as reading its own workspace)."""
    return _dependency(None)
