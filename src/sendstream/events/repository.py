"""Queries of the workspace's event stream (table `events`), each scoped by
`workspace_id`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, false, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.models.event import Event


@dataclass(frozen=True)
class EventQuery:
    after_position: int = 0
    # Exact types or `prefix.*` / `*` patterns; empty: every type.
    types: Sequence[str] = ()
    contact_id: uuid.UUID | None = None
    message_id: uuid.UUID | None = None
    after: datetime | None = None
    before: datetime | None = None
    limit: int = 50


def _types(patterns: Sequence[str]) -> ColumnElement[bool]:
    if not patterns or "*" in patterns:
        return true()
    exact = [p for p in patterns if not p.endswith(".*")]
    prefixes = [p[:-1] for p in patterns if p.endswith(".*")]  # keep the dot
    clauses: list[ColumnElement[bool]] = []
    if exact:
        clauses.append(Event.type.in_(exact))
    clauses.extend(Event.type.startswith(p, autoescape=True) for p in prefixes)
    return or_(false(), *clauses)


def _about(subject_type: str, key: str, value: uuid.UUID) -> ColumnElement[bool]:
    """Events whose subject is the object, or whose data names it under
    `key` (an open names its contact, a contact event names no message)."""
    text_value = str(value)
    return or_(
        and_(Event.subject_type == subject_type, Event.subject_id == text_value),
        Event.data[key].as_string() == text_value,
    )


class EventRepository:
    async def page(
        self, session: AsyncSession, workspace_id: uuid.UUID, query: EventQuery
    ) -> Sequence[Event]:
        """Up to `query.limit` events after `query.after_position`, oldest
        position first, that pass every filter given."""
        statement = select(Event).where(
            Event.workspace_id == workspace_id,
            Event.position > query.after_position,
            _types(query.types),
        )
        if query.contact_id is not None:
            statement = statement.where(_about("contact", "contact_id", query.contact_id))
        if query.message_id is not None:
            statement = statement.where(_about("message", "message_id", query.message_id))
        if query.after is not None:
            statement = statement.where(Event.occurred_at >= query.after)
        if query.before is not None:
            statement = statement.where(Event.occurred_at < query.before)
        return (await session.scalars(statement.order_by(Event.position).limit(query.limit))).all()


event_repository = EventRepository()
