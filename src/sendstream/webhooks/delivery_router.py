"""HTTP routes of webhook deliveries, attempts, replays, test events and
stats (/v1/webhooks/{webhook_id}/...). HTTP concerns only; the rules live in
`delivery_service.py`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.http import UnitOfWorkRoute, get_session
from sendstream.core.pagination import PageQuery
from sendstream.webhooks.delivery_schemas import (
    DeliveryStatus,
    WebhookAttemptPage,
    WebhookAttemptRead,
    WebhookDeliveryPage,
    WebhookDeliveryRead,
    WebhookReplayed,
    WebhookReplayRange,
    WebhookStats,
    WebhookTestRequest,
)
from sendstream.webhooks.delivery_service import delivery_service
from sendstream.workspaces.auth import Principal, require_scope

router = APIRouter(route_class=UnitOfWorkRoute)
Session = Annotated[AsyncSession, Depends(get_session)]
WebhookId = Annotated[uuid.UUID, Path(description="The webhook endpoint's id.")]
DeliveryId = Annotated[int, Path(ge=1, lt=2**63, description="The delivery's id.")]


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    tags=["webhooks"],
    summary="List an endpoint's deliveries, newest first",
)
async def list_deliveries(
    webhook_id: WebhookId,
    session: Session,
    page: PageQuery,
    status: Annotated[DeliveryStatus | None, Query(description="Only this status.")] = None,
    principal: Principal = require_scope("webhooks:read"),
) -> WebhookDeliveryPage:
    rows, cursor = await delivery_service.list_deliveries(
        session, principal.workspace_id, webhook_id, page, status=status
    )
    return WebhookDeliveryPage(data=[WebhookDeliveryRead.of(r) for r in rows], next_cursor=cursor)


@router.get(
    "/webhooks/{webhook_id}/attempts",
    tags=["webhooks"],
    summary="List an endpoint's delivery attempts, newest first",
    description="Every HTTP request made: headers and body as sent (custom header values "
    "redacted), the answer's status and first KiB, latency, and the error when no answer "
    "came.",
)
async def list_attempts(
    webhook_id: WebhookId,
    session: Session,
    page: PageQuery,
    delivery_id: Annotated[
        int | None, Query(ge=1, lt=2**63, description="Only this delivery's attempts.")
    ] = None,
    principal: Principal = require_scope("webhooks:read"),
) -> WebhookAttemptPage:
    rows, cursor = await delivery_service.list_attempts(
        session, principal.workspace_id, webhook_id, page, delivery_id=delivery_id
    )
    return WebhookAttemptPage(
        data=[WebhookAttemptRead.of(r, body) for r, body in rows], next_cursor=cursor
    )


@router.post(
    "/webhooks/{webhook_id}/deliveries/{delivery_id}/replay",
    tags=["webhooks"],
    status_code=202,
    summary="Send a delivery again",
    description="A new delivery with the same `webhook-id` and body, sent as soon as a "
    "worker is free. 404 `webhook_delivery_not_found`.",
)
async def replay_delivery(
    webhook_id: WebhookId,
    delivery_id: DeliveryId,
    session: Session,
    principal: Principal = require_scope("webhooks:write"),
) -> WebhookDeliveryRead:
    row = await delivery_service.replay_delivery(
        session, principal.workspace_id, webhook_id, delivery_id
    )
    return WebhookDeliveryRead.of(row)


@router.post(
    "/webhooks/{webhook_id}/replay",
    tags=["webhooks"],
    status_code=202,
    summary="Send the events of a time range again",
    description="Re-creates deliveries for the events that happened in [since, until) and "
    "that the endpoint subscribes to now, each with its own `webhook-id` (the one it had "
    "when first sent). 422 `invalid_replay_range` when until is not after since or the "
    "range holds more than 10,000 events.",
)
async def replay_range(
    webhook_id: WebhookId,
    body: WebhookReplayRange,
    session: Session,
    principal: Principal = require_scope("webhooks:write"),
) -> WebhookReplayed:
    count = await delivery_service.replay_range(
        session, principal.workspace_id, webhook_id, body.since, body.until
    )
    return WebhookReplayed(deliveries=count)


@router.post(
    "/webhooks/{webhook_id}/test",
    tags=["webhooks"],
    status_code=202,
    summary="Send a test event",
    description='Sends the catalogue\'s example of `event_type`, with `"test": true` in '
    "the payload; follow it in the deliveries and attempts. 422 `unknown_event_type`.",
)
async def send_test(
    webhook_id: WebhookId,
    body: WebhookTestRequest,
    session: Session,
    principal: Principal = require_scope("webhooks:write"),
) -> WebhookDeliveryRead:
    row = await delivery_service.send_test(
        session, principal.workspace_id, webhook_id, body.event_type
    )
    return WebhookDeliveryRead.of(row)


@router.get(
    "/webhooks/{webhook_id}/stats",
    tags=["webhooks"],
    summary="Delivery health of an endpoint",
    description="Success rate and p50/p99 latency of the attempts of the last hour and "
    "day, the backlog (deliveries pending or in flight) and its oldest age.",
)
async def stats(
    webhook_id: WebhookId,
    session: Session,
    principal: Principal = require_scope("webhooks:read"),
) -> WebhookStats:
    return await delivery_service.stats(session, principal.workspace_id, webhook_id)
