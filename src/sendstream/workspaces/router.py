"""HTTP routes of the workspaces domain: the current workspace, users, API keys
and the audit log. HTTP concerns only; rules live in `service.py`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core import idempotency
from sendstream.core.http import UnitOfWorkRoute, get_session
from sendstream.core.pagination import PageQuery
from sendstream.core.types import NO_CONTROL_CHARS, Timestamp
from sendstream.workspaces.auth import Principal, require_principal, require_scope
from sendstream.workspaces.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPage,
    ApiKeyRead,
    AuditEntryPage,
    AuditEntryRead,
    UserCreate,
    UserPage,
    UserRead,
    UserUpdate,
    WorkspaceRead,
    WorkspaceUpdate,
)
from sendstream.workspaces.service import (
    api_key_service,
    audit_service,
    user_service,
    workspace_service,
)

router = APIRouter(route_class=UnitOfWorkRoute)
Session = Annotated[AsyncSession, Depends(get_session)]


# --- workspace


@router.get("/workspace", tags=["workspace"], summary="The key's workspace")
async def get_workspace(
    session: Session, principal: Principal = require_principal()
) -> WorkspaceRead:
    workspace = await workspace_service.get_workspace(session, principal.workspace_id)
    return WorkspaceRead.model_validate(workspace)


@router.patch("/workspace", tags=["workspace"], summary="Rename the workspace")
async def update_workspace(
    body: WorkspaceUpdate, session: Session, principal: Principal = require_scope("admin")
) -> WorkspaceRead:
    workspace = await workspace_service.update_workspace(
        session, principal.workspace_id, name=body.name
    )
    return WorkspaceRead.model_validate(workspace)


# --- users


@router.get("/users", tags=["users"], summary="List users")
async def list_users(
    session: Session, page: PageQuery, principal: Principal = require_scope("users:read")
) -> UserPage:
    users, cursor = await user_service.list_users(session, principal.workspace_id, page)
    return UserPage(data=[UserRead.of(u) for u in users], next_cursor=cursor)


@router.post("/users", tags=["users"], status_code=201, summary="Create a user")
async def create_user(
    body: UserCreate,
    session: Session,
    response: Response,
    principal: Principal = require_scope("users:write"),
) -> UserRead:
    user = await user_service.create_user(
        session,
        principal.workspace_id,
        email=body.email,
        name=body.name,
        role=body.role,
        password=body.password,
    )
    response.headers["Location"] = f"/v1/users/{user.id}"
    return UserRead.of(user)


@router.get("/users/{user_id}", tags=["users"], summary="Get a user")
async def get_user(
    user_id: uuid.UUID, session: Session, principal: Principal = require_scope("users:read")
) -> UserRead:
    return UserRead.of(await user_service.get_user(session, principal.workspace_id, user_id))


@router.patch("/users/{user_id}", tags=["users"], summary="Change a user")
async def update_user(
    user_id: uuid.UUID,
    body: UserUpdate,
    session: Session,
    principal: Principal = require_scope("users:write"),
) -> UserRead:
    user = await user_service.update_user(
        session,
        principal.workspace_id,
        user_id,
        name=body.name,
        role=body.role,
        password=body.password,
        disabled=body.disabled,
    )
    return UserRead.of(user)


@router.delete("/users/{user_id}", tags=["users"], status_code=204, summary="Remove a user")
async def delete_user(
    user_id: uuid.UUID, session: Session, principal: Principal = require_scope("users:write")
) -> Response:
    await user_service.delete_user(session, principal.workspace_id, user_id)
    return Response(status_code=204)


# --- API keys


@router.get("/api-keys", tags=["api keys"], summary="List API keys")
async def list_api_keys(
    session: Session, page: PageQuery, principal: Principal = require_scope("keys:read")
) -> ApiKeyPage:
    keys, cursor = await api_key_service.list_keys(session, principal.workspace_id, page)
    return ApiKeyPage(data=[ApiKeyRead.model_validate(k) for k in keys], next_cursor=cursor)


@router.post(
    "/api-keys",
    tags=["api keys"],
    status_code=201,
    summary="Create an API key",
    description="The response holds the full key; it is never shown again.",
)
async def create_api_key(
    body: ApiKeyCreate,
    request: Request,
    session: Session,
    response: Response,
    principal: Principal = require_scope("keys:write"),
) -> ApiKeyCreated:
    key, secret = await api_key_service.create_key(
        session,
        principal.workspace_id,
        body.name,
        body.scopes,
        body.expires_at,
        granted_by=principal.scopes,
        created_by_user_id=principal.user_id,
    )
    response.headers["Location"] = f"/v1/api-keys/{key.id}"
    response.headers["Cache-Control"] = "no-store"
    read = ApiKeyRead.model_validate(key).model_dump()
    # An Idempotency-Key replay gets the key without its secret: storing the
    # response as sent would keep the full key in the database in clear.
    idempotency.store_instead(request, ApiKeyCreated(**read, key=None).model_dump_json().encode())
    return ApiKeyCreated(**read, key=secret)


@router.get("/api-keys/{key_id}", tags=["api keys"], summary="Get an API key (prefix only)")
async def get_api_key(
    key_id: uuid.UUID, session: Session, principal: Principal = require_scope("keys:read")
) -> ApiKeyRead:
    return ApiKeyRead.model_validate(
        await api_key_service.get_key(session, principal.workspace_id, key_id)
    )


@router.post("/api-keys/{key_id}/revoke", tags=["api keys"], summary="Revoke an API key")
async def revoke_api_key(
    key_id: uuid.UUID, session: Session, principal: Principal = require_scope("keys:write")
) -> ApiKeyRead:
    return ApiKeyRead.model_validate(
        await api_key_service.revoke_key(session, principal.workspace_id, key_id)
    )


# --- audit log


@router.get("/audit-log", tags=["audit log"], summary="Audit log, newest first")
async def list_audit_log(
    session: Session,
    page: PageQuery,
    actor: Annotated[
        str | None,
        Query(max_length=64, pattern=NO_CONTROL_CHARS, description="Actor id, e.g. an API key id."),
    ] = None,
    action: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern=NO_CONTROL_CHARS,
            description='Exact action, e.g. "POST /v1/users".',
        ),
    ] = None,
    since: Annotated[Timestamp | None, Query(description="Entries at or after this time.")] = None,
    until: Annotated[Timestamp | None, Query(description="Entries before this time.")] = None,
    principal: Principal = require_scope("audit:read"),
) -> AuditEntryPage:
    entries, cursor = await audit_service.list_entries(
        session,
        principal.workspace_id,
        page,
        actor=actor,
        action=action,
        since=since,
        until=until,
    )
    return AuditEntryPage(
        data=[AuditEntryRead.model_validate(e) for e in entries], next_cursor=cursor
    )
