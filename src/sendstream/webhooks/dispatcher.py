"""The fan-out of outbox events into webhook deliveries: the outbox consumer
`webhooks`.

One transaction per round: take the fan-out lock (a transaction-scoped
advisory lock, so of several worker processes one fans out at a time and
the others only send), read up to `dispatch_batch_size` events after the
consumer's positions, match them against each workspace's enabled
endpoints, insert the deliveries, and ack the positions, all in the same
commit: a crash before it leaves the events unread, a crash after it has
every delivery written, so the fan-out is neither lost nor doubled.

An endpoint receives the events that happened at or after its creation
whose type matches one of its patterns (`catalogue.matches`) and whose data
passes its filters (`catalogue.passes_filters`). A batching endpoint
(`batch_max_events` set) gets its events appended to an open batch: a
pending, never-tried delivery whose `next_attempt_at` is the end of its
window; a full batch is due at once. A batch is closed (its payload fixed)
when a sender claims it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core import outbox
from sendstream.core.errors import NotFound
from sendstream.core.outbox import EventRecord
from sendstream.models.webhook_endpoint import WebhookEndpoint
from sendstream.webhooks.catalogue import matches, passes_filters
from sendstream.webhooks.delivery_repository import NewDelivery, Target, delivery_repository

CONSUMER = "webhooks"
# pg_advisory_xact_lock key of the fan-out ("wh" "fan" in ASCII).
FAN_OUT_LOCK = 0x77_68_66_61_6E
# NOTIFY channel of new due deliveries (no payload): wakes every sender.
DELIVERY_CHANNEL = "sendstream_webhooks"
BATCH_TYPE = "batch"
# The ordering key every batch of a FIFO endpoint shares: its batches go
# one after the other.
BATCH_ORDERING_KEY = "*"


def short_id(endpoint_id: uuid.UUID) -> str:
    # The random tail of the UUIDv7 (its head is a timestamp).
    return endpoint_id.hex[-16:]


def webhook_id_for(position: int, endpoint_id: uuid.UUID) -> str:
    """The `webhook-id` of one event sent to one endpoint: the same on every
    retry and every replay, so receivers can drop duplicates by it."""
    return f"msg_{position}_{short_id(endpoint_id)}"


def batch_webhook_id_for(first_position: int, endpoint_id: uuid.UUID) -> str:
    return f"msg_{first_position}b_{short_id(endpoint_id)}"


def timestamp_of(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_body(event: EventRecord) -> dict[str, Any]:
    """The Standard Webhooks payload of one event."""
    data = dict(event.data)
    data["workspace_id"] = str(event.workspace_id)
    data["event_position"] = event.position
    return {"type": event.type, "timestamp": timestamp_of(event.occurred_at), "data": data}


def batch_body(bodies: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"type": BATCH_TYPE, "timestamp": bodies[0]["timestamp"], "data": {"events": bodies}}


def ordering_key_of(event: EventRecord) -> str | None:
    """The contact an event is about, which orders a FIFO endpoint's deliveries."""
    contact = event.data.get("contact_id")
    if contact:
        return str(contact)[:64]
    if event.subject_type == "contact" and event.subject_id:
        return event.subject_id
    return None


def wanted(target: Target, event: EventRecord) -> bool:
    return (
        event.occurred_at >= target.created_at
        and matches(target.event_types, event.type)
        and passes_filters(target.filters, event.data)
    )


def single_deliveries(
    target: Target, events: Iterable[EventRecord], *, next_attempt_at: datetime | None = None
) -> list[NewDelivery]:
    return [
        NewDelivery(
            workspace_id=target.workspace_id,
            endpoint_id=target.id,
            webhook_id=webhook_id_for(e.position, target.id),
            event_positions=[e.position],
            event_type=e.type,
            ordering_key=ordering_key_of(e) if target.fifo else None,
            payload=event_body(e),
            next_attempt_at=next_attempt_at,
        )
        for e in events
    ]


def batch_deliveries(
    target: Target, events: Sequence[EventRecord], *, due: datetime | None
) -> list[NewDelivery]:
    """Closed batches of `batch_max_events` (the last may be short): due at
    `due` (None: at once)."""
    size = target.batch_max_events or 1
    out: list[NewDelivery] = []
    for start in range(0, len(events), size):
        chunk = events[start : start + size]
        out.append(
            NewDelivery(
                workspace_id=target.workspace_id,
                endpoint_id=target.id,
                webhook_id=batch_webhook_id_for(chunk[0].position, target.id),
                event_positions=[e.position for e in chunk],
                event_type=BATCH_TYPE,
                ordering_key=BATCH_ORDERING_KEY if target.fifo else None,
                payload=batch_body([event_body(e) for e in chunk]),
                next_attempt_at=None if len(chunk) == size else due,
            )
        )
    return out


async def _append_to_open_batch(
    session: AsyncSession, target: Target, events: list[EventRecord]
) -> list[EventRecord]:
    """Put as many of `events` as fit into the endpoint's open batch; the
    rest is returned."""
    size = target.batch_max_events or 1
    found = await delivery_repository.open_batch(session, target.id, size)
    if found is None:
        return events
    delivery_id, payload_text, count = found
    room = size - count
    taken, rest = events[:room], events[room:]
    payload = json.loads(payload_text)
    payload["data"]["events"].extend(event_body(e) for e in taken)
    await delivery_repository.extend_batch(
        session,
        delivery_id,
        payload=payload,
        positions=[e.position for e in taken],
        due_now=count + len(taken) >= size,
    )
    return rest


async def fan_out(session: AsyncSession, target: Target, events: list[EventRecord]) -> int:
    """Write `target`'s deliveries for `events` (already matched); returns
    how many rows were inserted."""
    if not events:
        return 0
    if target.batch_max_events is None:
        rows = single_deliveries(target, events)
    else:
        rest = await _append_to_open_batch(session, target, events)
        due = datetime.now(UTC) + timedelta(milliseconds=target.batch_window_ms)
        rows = batch_deliveries(target, rest, due=due)
    await delivery_repository.insert_many(session, rows)
    return len(rows)


async def dispatch_once(session: AsyncSession, *, limit: int) -> tuple[int, int]:
    """One fan-out round in `session`'s transaction (the caller commits).
    Returns (events read, deliveries written); (0, 0) also when another
    process holds the fan-out lock."""
    locked = (
        await session.execute(select(func.pg_try_advisory_xact_lock(FAN_OUT_LOCK)))
    ).scalar_one()
    if not locked:
        return 0, 0
    # Workspaces without an enabled endpoint have nothing to fan out: their
    # events are passed over unread (most events of a busy sender).
    await outbox.skip_uninterested(
        session,
        CONSUMER,
        select(WebhookEndpoint.workspace_id).where(WebhookEndpoint.enabled.is_(True)),
    )
    try:
        events = await outbox.read(session, CONSUMER, limit=limit)
    except NotFound:
        # The migration registers it; a wiped table (tests, a restore) loses it.
        await outbox.register_consumer(session, CONSUMER)
        events = await outbox.read(session, CONSUMER, limit=limit)
    if not events:
        return 0, 0
    by_workspace: dict[uuid.UUID, list[EventRecord]] = {}
    for event in events:
        by_workspace.setdefault(event.workspace_id, []).append(event)
    targets = await delivery_repository.enabled_targets(session, list(by_workspace))
    written = 0
    for workspace_id, batch in by_workspace.items():
        for target in targets.get(workspace_id, []):
            written += await fan_out(session, target, [e for e in batch if wanted(target, e)])
        await outbox.ack(session, CONSUMER, workspace_id, batch[-1].position)
    if written:
        await session.execute(text(f"NOTIFY {DELIVERY_CHANNEL}"))
    return len(events), written
