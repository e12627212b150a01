"""Reading the workspace's event stream.

Pages go by position: the cursor holds the last position of the page, and
`after_position` lets a client resume from a position it stored itself
(the cursor wins when both are given). Ordering by position, not time,
is what makes catching up exact: a position seen means every lower one is
committed, which no timestamp promises.
"""

from __future__ import annotations

import dataclasses
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.errors import InvalidInput
from sendstream.core.outbox import EventRecord
from sendstream.core.pagination import PageParams, cursor_int, trim_page
from sendstream.events.repository import EventQuery, event_repository
from sendstream.models.event import Event

MAX_TYPE_LENGTH = 100


def validate_type_patterns(types: list[str]) -> list[str]:
    for pattern in types:
        body = pattern[:-2] if pattern.endswith(".*") else pattern
        if pattern != "*" and (not body or "*" in body):
            raise InvalidInput(
                f"type: {pattern[:100]!r} is neither an event type nor a `prefix.*` pattern.",
                code="invalid_event_type_filter",
            )
    return types


def _record(row: Event) -> EventRecord:
    return EventRecord(
        workspace_id=row.workspace_id,
        position=row.position,
        type=row.type,
        occurred_at=row.occurred_at,
        subject_type=row.subject_type,
        subject_id=row.subject_id,
        data=row.data,
    )


class EventService:
    async def list_events(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        page: PageParams,
        query: EventQuery,
    ) -> tuple[list[EventRecord], str | None]:
        validate_type_patterns(list(query.types))
        after = cursor_int(page.cursor, "position")
        if after is not None:
            query = dataclasses.replace(query, after_position=after)
        rows = list(
            await event_repository.page(
                session, workspace_id, dataclasses.replace(query, limit=page.limit + 1)
            )
        )
        rows, cursor = trim_page(rows, page.limit, lambda row: {"position": row.position})
        return [_record(row) for row in rows], cursor


event_service = EventService()
