"""Every query of webhook deliveries and attempts made in a session (the
fan-out, the API); the sender's own statements are in `delivery_sql.py`.
Queries the API runs are scoped by `workspace_id` and endpoint."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from sqlalchemy import Text, cast, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.models.event import Event
from sendstream.models.webhook_delivery import WebhookAttempt, WebhookDelivery
from sendstream.models.webhook_endpoint import WebhookEndpoint


@dataclass(frozen=True, slots=True)
class Target:
    """What the fan-out needs of an enabled endpoint."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    event_types: list[str]
    filters: dict[str, Any]
    fifo: bool
    batch_max_events: int | None
    batch_window_ms: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewDelivery:
    workspace_id: uuid.UUID
    endpoint_id: uuid.UUID
    webhook_id: str
    event_positions: list[int]
    event_type: str
    ordering_key: str | None
    payload: dict[str, Any]
    # None: due at once.
    next_attempt_at: datetime | None = None


def target_of(row: WebhookEndpoint, *, created_at: datetime | None = None) -> Target:
    """The endpoint as the fan-out sees it; `created_at` overrides the time
    from which it wants events (replays)."""
    return Target(
        id=row.id,
        workspace_id=row.workspace_id,
        event_types=list(row.event_types),
        filters=dict(row.filters or {}),
        fifo=row.fifo,
        batch_max_events=row.batch_max_events,
        batch_window_ms=row.batch_window_ms,
        created_at=created_at or row.created_at,
    )


# A due time of NULL: due at once (the column's default, now()).
_INSERT_MANY = """
INSERT INTO webhook_deliveries (workspace_id, endpoint_id, webhook_id, event_positions,
    event_type, ordering_key, payload, next_attempt_at)
SELECT v.workspace_id, v.endpoint_id, v.webhook_id, v.positions::bigint[], v.event_type,
       v.ordering_key, v.payload::json, coalesce(v.due, now())
FROM unnest(
    %(workspaces)b::uuid[], %(endpoints)b::uuid[], %(webhook_ids)b::text[],
    %(positions)b::text[], %(types)b::text[], %(keys)b::text[], %(payloads)b::text[],
    %(due)b::timestamptz[]
) WITH ORDINALITY AS v(workspace_id, endpoint_id, webhook_id, positions, event_type,
                       ordering_key, payload, due, n)
ORDER BY v.n
"""


class DeliveryRepository:
    # --- the fan-out

    async def enabled_workspaces(self, session: AsyncSession) -> frozenset[uuid.UUID]:
        """The workspaces with at least one enabled endpoint (a small table)."""
        rows = await session.scalars(
            select(WebhookEndpoint.workspace_id).where(WebhookEndpoint.enabled.is_(True)).distinct()
        )
        return frozenset(rows)

    async def enabled_targets(
        self, session: AsyncSession, workspace_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[Target]]:
        rows = await session.scalars(
            select(WebhookEndpoint)
            .where(
                WebhookEndpoint.workspace_id.in_(list(workspace_ids)),
                WebhookEndpoint.enabled.is_(True),
            )
            .order_by(WebhookEndpoint.id)
        )
        found: dict[uuid.UUID, list[Target]] = {}
        for row in rows:
            found.setdefault(row.workspace_id, []).append(target_of(row))
        return found

    async def insert_many(self, session: AsyncSession, rows: Sequence[NewDelivery]) -> None:
        """One statement with binary array parameters (`%b`), in the session's
        transaction: the ORM's executemany cost the fan-out more CPU than
        the sending of what it wrote. Ids follow the order of `rows`."""
        if not rows:
            return
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        driver: AsyncConnection[Any] = raw.driver_connection  # type: ignore[assignment]
        async with driver.cursor(binary=True) as cur:
            await cur.execute(
                _INSERT_MANY,
                {
                    "workspaces": [r.workspace_id for r in rows],
                    "endpoints": [r.endpoint_id for r in rows],
                    "webhook_ids": [r.webhook_id for r in rows],
                    # Arrays of unequal length do not nest: as array literals.
                    "positions": ["{" + ",".join(map(str, r.event_positions)) + "}" for r in rows],
                    "types": [r.event_type for r in rows],
                    "keys": [r.ordering_key for r in rows],
                    # The bytes every attempt sends (json, not jsonb, keeps them).
                    "payloads": [json.dumps(r.payload) for r in rows],
                    "due": [r.next_attempt_at for r in rows],
                },
            )

    async def insert_returning_id(self, session: AsyncSession, row: NewDelivery) -> int:
        return int(
            (
                await session.execute(
                    insert(WebhookDelivery)
                    .values(
                        workspace_id=row.workspace_id,
                        endpoint_id=row.endpoint_id,
                        webhook_id=row.webhook_id,
                        event_positions=row.event_positions,
                        event_type=row.event_type,
                        ordering_key=row.ordering_key,
                        payload=row.payload,
                    )
                    .returning(WebhookDelivery.id)
                )
            ).scalar_one()
        )

    async def open_batch(
        self, session: AsyncSession, endpoint_id: uuid.UUID, size: int
    ) -> tuple[int, str, int] | None:
        """The endpoint's open batch, locked: (id, payload as text, events
        in it). A sender that claimed it first makes it not open any more
        (the lock waits for the claim, then the conditions are re-checked)."""
        row = (
            await session.execute(
                text(
                    """
                    SELECT id, payload::text, cardinality(event_positions)
                    FROM webhook_deliveries
                    WHERE endpoint_id = :endpoint_id AND status = 'pending' AND attempts = 0
                      AND event_type = 'batch' AND next_attempt_at > now()
                      AND cardinality(event_positions) < :size
                    ORDER BY id DESC
                    LIMIT 1
                    FOR UPDATE
                    """
                ),
                {"endpoint_id": endpoint_id, "size": size},
            )
        ).one_or_none()
        return None if row is None else (int(row[0]), str(row[1]), int(row[2]))

    async def extend_batch(
        self,
        session: AsyncSession,
        delivery_id: int,
        *,
        payload: dict[str, Any],
        positions: list[int],
        due_now: bool,
    ) -> None:
        values: dict[str, Any] = {
            "payload": payload,
            "event_positions": WebhookDelivery.event_positions.op("||")(positions),
        }
        if due_now:
            values["next_attempt_at"] = text("now()")
        await session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values)
        )

    # --- the API

    async def get_endpoint(
        self, session: AsyncSession, workspace_id: uuid.UUID, endpoint_id: uuid.UUID
    ) -> WebhookEndpoint | None:
        return (
            await session.execute(
                select(WebhookEndpoint).where(
                    WebhookEndpoint.workspace_id == workspace_id,
                    WebhookEndpoint.id == endpoint_id,
                )
            )
        ).scalar_one_or_none()

    async def get_delivery(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        delivery_id: int,
    ) -> WebhookDelivery | None:
        return (
            await session.execute(
                select(WebhookDelivery).where(
                    WebhookDelivery.workspace_id == workspace_id,
                    WebhookDelivery.endpoint_id == endpoint_id,
                    WebhookDelivery.id == delivery_id,
                )
            )
        ).scalar_one_or_none()

    async def payload_text(self, session: AsyncSession, delivery_id: int) -> str:
        return str(
            (
                await session.execute(
                    text("SELECT payload::text FROM webhook_deliveries WHERE id = :id"),
                    {"id": delivery_id},
                )
            ).scalar_one()
        )

    async def copy_delivery(self, session: AsyncSession, delivery_id: int) -> int:
        """A new pending delivery with the same webhook-id, events and bytes."""
        return int(
            (
                await session.execute(
                    text(
                        """
                        INSERT INTO webhook_deliveries (workspace_id, endpoint_id, webhook_id,
                            event_positions, event_type, ordering_key, payload)
                        SELECT workspace_id, endpoint_id, webhook_id, event_positions,
                               event_type, ordering_key, payload
                        FROM webhook_deliveries WHERE id = :id
                        RETURNING id
                        """
                    ),
                    {"id": delivery_id},
                )
            ).scalar_one()
        )

    async def page_deliveries(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        *,
        status: str | None,
        before: int | None,
        limit: int,
    ) -> Sequence[WebhookDelivery]:
        """Newest first."""
        query = select(WebhookDelivery).where(
            WebhookDelivery.workspace_id == workspace_id,
            WebhookDelivery.endpoint_id == endpoint_id,
        )
        if status is not None:
            query = query.where(WebhookDelivery.status == status)
        if before is not None:
            query = query.where(WebhookDelivery.id < before)
        return (await session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit))).all()

    async def page_attempts(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        *,
        delivery_id: int | None,
        before: int | None,
        limit: int,
    ) -> Sequence[tuple[WebhookAttempt, str]]:
        """Newest first, each with the body it sent."""
        body = func.coalesce(WebhookAttempt.request_body, cast(WebhookDelivery.payload, Text))
        query = (
            select(WebhookAttempt, body)
            .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
            .where(
                WebhookAttempt.workspace_id == workspace_id,
                WebhookAttempt.endpoint_id == endpoint_id,
            )
        )
        if delivery_id is not None:
            query = query.where(WebhookAttempt.delivery_id == delivery_id)
        if before is not None:
            query = query.where(WebhookAttempt.id < before)
        rows = await session.execute(query.order_by(WebhookAttempt.id.desc()).limit(limit))
        return [(attempt, sent) for attempt, sent in rows]

    async def events_between(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        since: datetime,
        until: datetime,
        *,
        limit: int,
    ) -> Sequence[Event]:
        return (
            await session.scalars(
                select(Event)
                .where(
                    Event.workspace_id == workspace_id,
                    Event.occurred_at >= since,
                    Event.occurred_at < until,
                )
                .order_by(Event.position)
                .limit(limit)
            )
        ).all()

    async def stats(
        self, session: AsyncSession, endpoint_id: uuid.UUID, seconds: int
    ) -> dict[str, Any]:
        row = (
            await session.execute(
                text(
                    """
                    SELECT count(*) AS attempts,
                           count(*) FILTER (WHERE status_code BETWEEN 200 AND 299) AS succeeded,
                           percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,
                           percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99
                    FROM webhook_attempts
                    WHERE endpoint_id = :endpoint_id
                      AND attempted_at > now() - make_interval(secs => :seconds)
                    """
                ),
                {"endpoint_id": endpoint_id, "seconds": seconds},
            )
        ).one()
        return dict(row._mapping)

    async def backlog(self, session: AsyncSession, endpoint_id: uuid.UUID) -> tuple[int, float]:
        """(deliveries not finished, seconds the oldest of them has waited)."""
        row = (
            await session.execute(
                text(
                    """
                    SELECT count(*),
                           coalesce(extract(epoch FROM now() - min(created_at)), 0)
                    FROM webhook_deliveries
                    WHERE endpoint_id = :endpoint_id AND status IN ('pending', 'delivering')
                    """
                ),
                {"endpoint_id": endpoint_id},
            )
        ).one()
        return int(row[0]), float(row[1])


delivery_repository = DeliveryRepository()
