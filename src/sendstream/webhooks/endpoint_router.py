"""HTTP routes of webhook endpoints (/v1/webhooks). HTTP concerns only; the
rules live in `endpoint_service.py`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core import idempotency
from sendstream.core.http import UnitOfWorkRoute, get_session
from sendstream.core.pagination import PageQuery
from sendstream.models.webhook_endpoint import WebhookEndpoint
from sendstream.webhooks.endpoint_service import endpoint_service
from sendstream.webhooks.schemas import (
    WebhookCreate,
    WebhookPage,
    WebhookRead,
    WebhookRotate,
    WebhookSettingsRead,
    WebhookSettingsUpdate,
    WebhookUpdate,
    WebhookWithSecret,
)
from sendstream.workspaces.auth import Principal, require_scope

router = APIRouter(route_class=UnitOfWorkRoute)
Session = Annotated[AsyncSession, Depends(get_session)]
WebhookId = Annotated[uuid.UUID, Path(description="The webhook endpoint's id.")]

_ERRORS = (
    " 422 `invalid_webhook_url` (not http(s), credentials in it, too long ...), "
    "`webhook_https_required`, `webhook_url_not_allowed` (its host is or resolves to a "
    "loopback, private, link-local or metadata address), `webhook_host_unresolvable`, "
    "`unknown_event_type` (names the bad one), `invalid_header` (a reserved name such as "
    "`webhook-signature` or `content-type`, or a line break in a value)."
)


def _read(endpoint: WebhookEndpoint) -> WebhookRead:
    return endpoint_service.describe(endpoint)


def _with_secret(request: Request, endpoint: WebhookEndpoint, secret: str) -> WebhookWithSecret:
    read = _read(endpoint).model_dump()
    # An Idempotency-Key replay gets the answer without the secret: storing
    # the response as sent would keep the secret in the database in clear.
    idempotency.store_instead(
        request, WebhookWithSecret(**read, secret=None).model_dump_json().encode()
    )
    return WebhookWithSecret(**read, secret=secret)


def _settings(allowed: bool) -> WebhookSettingsRead:
    return WebhookSettingsRead(
        allow_private_addresses=allowed,
        installation_allows_private_addresses=(
            endpoint_service.installation_allows_private_addresses()
        ),
    )


@router.get(
    "/webhooks/settings",
    tags=["webhooks"],
    summary="The workspace's webhook settings",
)
async def get_webhook_settings(
    session: Session, principal: Principal = require_scope("webhooks:read")
) -> WebhookSettingsRead:
    return _settings(
        await endpoint_service.private_addresses_allowed(session, principal.workspace_id)
    )


@router.patch(
    "/webhooks/settings",
    tags=["webhooks"],
    summary="Change the workspace's webhook settings",
    description="`allow_private_addresses`: let endpoints point at loopback, private and "
    "link-local addresses (local development, tests). Admin keys only. An empty body "
    "changes nothing and answers with the current settings.",
)
async def update_webhook_settings(
    body: WebhookSettingsUpdate, session: Session, principal: Principal = require_scope("admin")
) -> WebhookSettingsRead:
    if body.allow_private_addresses is not None:
        await endpoint_service.set_private_addresses_allowed(
            session, principal.workspace_id, body.allow_private_addresses
        )
    return _settings(
        await endpoint_service.private_addresses_allowed(session, principal.workspace_id)
    )


@router.post(
    "/webhooks",
    tags=["webhooks"],
    status_code=201,
    summary="Create a webhook endpoint",
    description="Answers with the endpoint and its `whsec_` signing secret, shown only "
    "here (and `public_key`, `whpk_...`, for `v1a`)." + _ERRORS,
)
async def create_webhook(
    body: WebhookCreate,
    request: Request,
    session: Session,
    response: Response,
    principal: Principal = require_scope("webhooks:write"),
) -> WebhookWithSecret:
    endpoint, secret = await endpoint_service.create_endpoint(session, principal.workspace_id, body)
    response.headers["Location"] = f"/v1/webhooks/{endpoint.id}"
    response.headers["Cache-Control"] = "no-store"
    return _with_secret(request, endpoint, secret)


@router.get("/webhooks", tags=["webhooks"], summary="List webhook endpoints, oldest first")
async def list_webhooks(
    session: Session, page: PageQuery, principal: Principal = require_scope("webhooks:read")
) -> WebhookPage:
    rows, cursor = await endpoint_service.list_endpoints(session, principal.workspace_id, page)
    return WebhookPage(data=[_read(row) for row in rows], next_cursor=cursor)


@router.get(
    "/webhooks/{webhook_id:uuid}",
    tags=["webhooks"],
    summary="Get a webhook endpoint",
    description="The secret is never shown again; `secret_hint` tells secrets apart.",
)
async def get_webhook(
    webhook_id: WebhookId, session: Session, principal: Principal = require_scope("webhooks:read")
) -> WebhookRead:
    return _read(await endpoint_service.get_endpoint(session, principal.workspace_id, webhook_id))


@router.patch(
    "/webhooks/{webhook_id:uuid}",
    tags=["webhooks"],
    summary="Change a webhook endpoint",
    description="Fields left out stay; `description`, `headers` and `batch_max_events` "
    "set to null are cleared. `enabled: true` resumes a disabled endpoint." + _ERRORS,
)
async def update_webhook(
    webhook_id: WebhookId,
    body: WebhookUpdate,
    session: Session,
    principal: Principal = require_scope("webhooks:write"),
) -> WebhookRead:
    return _read(
        await endpoint_service.update_endpoint(session, principal.workspace_id, webhook_id, body)
    )


@router.delete(
    "/webhooks/{webhook_id:uuid}",
    tags=["webhooks"],
    status_code=204,
    summary="Delete a webhook endpoint",
    description="Delivery to it stops; its delivery history goes with it.",
)
async def delete_webhook(
    webhook_id: WebhookId, session: Session, principal: Principal = require_scope("webhooks:write")
) -> Response:
    await endpoint_service.delete_endpoint(session, principal.workspace_id, webhook_id)
    return Response(status_code=204)


@router.post(
    "/webhooks/{webhook_id:uuid}/rotate-secret",
    tags=["webhooks"],
    summary="Replace the signing secret",
    description="Answers with the new `whsec_` secret, shown only here. The old one keeps "
    "signing beside it for `overlap_seconds` (default 24 hours, at most 7 days), so "
    "receivers can switch without losing a request. The Ed25519 key is kept.",
)
async def rotate_webhook_secret(
    webhook_id: WebhookId,
    request: Request,
    session: Session,
    response: Response,
    body: Annotated[WebhookRotate | None, Body()] = None,
    principal: Principal = require_scope("webhooks:write"),
) -> WebhookWithSecret:
    overlap = (body or WebhookRotate()).overlap_seconds
    endpoint, secret = await endpoint_service.rotate_secret(
        session, principal.workspace_id, webhook_id, overlap
    )
    response.headers["Cache-Control"] = "no-store"
    return _with_secret(request, endpoint, secret)


@router.post(
    "/webhooks/{webhook_id:uuid}/enable",
    tags=["webhooks"],
    summary="Resume delivery to a disabled endpoint",
    description="Clears `disabled_reason`, `disabled_at` and `failing_since`, and delivery "
    "to the endpoint resumes. Enabling an enabled endpoint changes nothing.",
)
async def enable_webhook(
    webhook_id: WebhookId, session: Session, principal: Principal = require_scope("webhooks:write")
) -> WebhookRead:
    return _read(
        await endpoint_service.enable_endpoint(session, principal.workspace_id, webhook_id)
    )
