"""The rules of webhook deliveries seen from the API: listing deliveries and
attempts, replays and test events, and stats.

- A replayed delivery is a new pending delivery with the same `webhook-id`,
  events and bytes (the timestamp and signature are the new attempt's), so
  a receiver that already handled it can drop it by id.
- A time-range replay re-creates deliveries for the workspace's events that
  happened in [since, until) and that the endpoint wants now (its types and
  filters), with the `webhook-id` each event has (`msg_<position>_<endpoint>`),
  whether it was delivered before or not. A batching endpoint gets them in
  batches. At most `REPLAY_MAX_EVENTS` events per call.
- A test event is the catalogue's example of a type, marked `"test": true`,
  sent like any delivery (recorded, retried).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.ids import uuid7
from sendstream.core.outbox import EventRecord
from sendstream.core.pagination import PageParams, cursor_int, trim_page
from sendstream.models.webhook_delivery import WebhookAttempt, WebhookDelivery
from sendstream.models.webhook_endpoint import WebhookEndpoint
from sendstream.webhooks.catalogue import EVENT_TYPES
from sendstream.webhooks.delivery_repository import NewDelivery, delivery_repository, target_of
from sendstream.webhooks.delivery_schemas import WebhookStats
from sendstream.webhooks.dispatcher import (
    DELIVERY_CHANNEL,
    batch_deliveries,
    single_deliveries,
    timestamp_of,
    wanted,
)
from sendstream.webhooks.endpoint_service import endpoint_service
from sendstream.webhooks.errors import (
    InvalidReplayRange,
    UnknownEventType,
    WebhookDeliveryNotFound,
)

REPLAY_MAX_EVENTS = 10_000
HOUR = 3600
DAY = 86_400


async def _wake_senders(session: AsyncSession) -> None:
    # Delivered at commit: senders in every process claim at once.
    await session.execute(text(f"NOTIFY {DELIVERY_CHANNEL}"))


class DeliveryService:
    async def _endpoint(
        self, session: AsyncSession, workspace_id: uuid.UUID, endpoint_id: uuid.UUID
    ) -> WebhookEndpoint:
        return await endpoint_service.get_endpoint(session, workspace_id, endpoint_id)

    async def list_deliveries(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        page: PageParams,
        *,
        status: str | None,
    ) -> tuple[list[WebhookDelivery], str | None]:
        await self._endpoint(session, workspace_id, endpoint_id)
        rows = list(
            await delivery_repository.page_deliveries(
                session,
                workspace_id,
                endpoint_id,
                status=status,
                before=cursor_int(page.cursor, "before"),
                limit=page.limit + 1,
            )
        )
        return trim_page(rows, page.limit, lambda row: {"before": row.id})

    async def list_attempts(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        page: PageParams,
        *,
        delivery_id: int | None,
    ) -> tuple[list[tuple[WebhookAttempt, str]], str | None]:
        await self._endpoint(session, workspace_id, endpoint_id)
        rows = list(
            await delivery_repository.page_attempts(
                session,
                workspace_id,
                endpoint_id,
                delivery_id=delivery_id,
                before=cursor_int(page.cursor, "before"),
                limit=page.limit + 1,
            )
        )
        return trim_page(rows, page.limit, lambda row: {"before": row[0].id})

    async def replay_delivery(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        delivery_id: int,
    ) -> WebhookDelivery:
        await self._endpoint(session, workspace_id, endpoint_id)
        original = await delivery_repository.get_delivery(
            session, workspace_id, endpoint_id, delivery_id
        )
        if original is None:
            raise WebhookDeliveryNotFound(delivery_id)
        copy_id = await delivery_repository.copy_delivery(session, original.id)
        await _wake_senders(session)
        copy = await delivery_repository.get_delivery(session, workspace_id, endpoint_id, copy_id)
        assert copy is not None  # noqa: S101  inserted just above
        return copy

    async def replay_range(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        since: datetime,
        until: datetime | None,
    ) -> int:
        endpoint = await self._endpoint(session, workspace_id, endpoint_id)
        end = until or datetime.now(UTC)
        if since.tzinfo is None or end.tzinfo is None:
            raise InvalidReplayRange("give times with a UTC offset (`2026-11-26T10:00:00Z`)")
        if end <= since:
            raise InvalidReplayRange("`until` must be after `since`")
        rows = await delivery_repository.events_between(
            session, workspace_id, since, end, limit=REPLAY_MAX_EVENTS + 1
        )
        if len(rows) > REPLAY_MAX_EVENTS:
            raise InvalidReplayRange(
                f"more than {REPLAY_MAX_EVENTS} events in the range; replay a shorter one"
            )
        # Replays are not limited to events after the endpoint was created.
        target = target_of(endpoint, created_at=datetime.min.replace(tzinfo=UTC))
        events = [
            e
            for e in (
                EventRecord(
                    workspace_id=r.workspace_id,
                    position=r.position,
                    type=r.type,
                    occurred_at=r.occurred_at,
                    subject_type=r.subject_type,
                    subject_id=r.subject_id,
                    data=r.data,
                )
                for r in rows
            )
            if wanted(target, e)
        ]
        if target.batch_max_events is None:
            new = single_deliveries(target, events)
        else:
            new = batch_deliveries(target, events, due=None)
        await delivery_repository.insert_many(session, new)
        if new:
            await _wake_senders(session)
        return len(new)

    async def send_test(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        event_type: str,
    ) -> WebhookDelivery:
        await self._endpoint(session, workspace_id, endpoint_id)
        info = EVENT_TYPES.get(event_type)
        if info is None:
            raise UnknownEventType(event_type)
        data = {**info.example, "workspace_id": str(workspace_id), "event_position": 0}
        payload = {
            "type": event_type,
            "timestamp": timestamp_of(datetime.now(UTC)),
            "data": data,
            "test": True,
        }
        row = NewDelivery(
            workspace_id=workspace_id,
            endpoint_id=endpoint_id,
            webhook_id=f"msg_test_{uuid7().hex}",
            event_positions=[],
            event_type=event_type,
            ordering_key=None,
            payload=payload,
        )
        delivery_id = await delivery_repository.insert_returning_id(session, row)
        await _wake_senders(session)
        found = await delivery_repository.get_delivery(
            session, workspace_id, endpoint_id, delivery_id
        )
        assert found is not None  # noqa: S101  inserted just above
        return found

    async def stats(
        self, session: AsyncSession, workspace_id: uuid.UUID, endpoint_id: uuid.UUID
    ) -> WebhookStats:
        await self._endpoint(session, workspace_id, endpoint_id)
        hour = await delivery_repository.stats(session, endpoint_id, HOUR)
        day = await delivery_repository.stats(session, endpoint_id, DAY)
        backlog, oldest = await delivery_repository.backlog(session, endpoint_id)
        return WebhookStats(
            last_hour=WebhookStats.window(hour),
            last_day=WebhookStats.window(day),
            backlog=backlog,
            oldest_pending_age_seconds=oldest,
        )


delivery_service = DeliveryService()
