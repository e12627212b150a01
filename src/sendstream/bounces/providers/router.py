"""HTTP routes managing provider webhooks (/v1/provider-webhooks). HTTP
concerns only; the rules live in `service.py`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.bounces.providers.schemas import (
    ProviderWebhookCreate,
    ProviderWebhookCreated,
    ProviderWebhookPage,
    ProviderWebhookRead,
)
from sendstream.bounces.providers.service import provider_webhook_service
from sendstream.core import idempotency
from sendstream.core.http import UnitOfWorkRoute, get_session
from sendstream.core.pagination import PageQuery
from sendstream.workspaces.auth import Principal, require_scope

router = APIRouter(route_class=UnitOfWorkRoute)
Session = Annotated[AsyncSession, Depends(get_session)]
WebhookId = Annotated[uuid.UUID, Path(description="The provider webhook's id.")]


@router.post(
    "/provider-webhooks",
    tags=["provider-webhooks"],
    status_code=201,
    summary="Create a provider (ESP) webhook",
    description="A receiver of one ESP's bounce, complaint and delivery events. Give "
    "`topic_arns` for `ses`, `public_key` for `sendgrid`, `signing_key` for `mailgun`; "
    "`postmark` credentials are generated and the password is shown only in this answer. "
    "Point the provider at `url` (Postmark: `url_with_credentials`). 422 "
    "`invalid_provider_webhook`: a SendGrid key that is not an ECDSA public key.",
)
async def create_provider_webhook(
    body: ProviderWebhookCreate,
    request: Request,
    session: Session,
    response: Response,
    principal: Principal = require_scope("webhooks:write"),
) -> ProviderWebhookCreated:
    created = await provider_webhook_service.create_webhook(session, principal.workspace_id, body)
    response.headers["Location"] = f"/v1/provider-webhooks/{created.id}"
    response.headers["Cache-Control"] = "no-store"
    if created.password is not None:
        # A replay by Idempotency-Key answers without the password: the
        # stored response must not keep it in clear.
        replay = created.model_copy(update={"password": None, "url_with_credentials": None})
        idempotency.store_instead(request, replay.model_dump_json().encode())
    return created


@router.get(
    "/provider-webhooks",
    tags=["provider-webhooks"],
    summary="List provider webhooks, oldest first",
)
async def list_provider_webhooks(
    session: Session, page: PageQuery, principal: Principal = require_scope("webhooks:read")
) -> ProviderWebhookPage:
    rows, cursor = await provider_webhook_service.list_webhooks(
        session, principal.workspace_id, page
    )
    return ProviderWebhookPage(
        data=[provider_webhook_service.describe(row) for row in rows], next_cursor=cursor
    )


@router.get(
    "/provider-webhooks/{webhook_id}",
    tags=["provider-webhooks"],
    summary="Get a provider webhook",
    description="With its counters and, for SES, the last confirmed SNS subscription. "
    "Keys and passwords are never shown again.",
)
async def get_provider_webhook(
    webhook_id: WebhookId, session: Session, principal: Principal = require_scope("webhooks:read")
) -> ProviderWebhookRead:
    return provider_webhook_service.describe(
        await provider_webhook_service.get_webhook(session, principal.workspace_id, webhook_id)
    )


@router.delete(
    "/provider-webhooks/{webhook_id}",
    tags=["provider-webhooks"],
    status_code=204,
    summary="Delete a provider webhook",
    description="Requests to its URL answer 404 from then on.",
)
async def delete_provider_webhook(
    webhook_id: WebhookId, session: Session, principal: Principal = require_scope("webhooks:write")
) -> Response:
    await provider_webhook_service.delete_webhook(session, principal.workspace_id, webhook_id)
    return Response(status_code=204)
