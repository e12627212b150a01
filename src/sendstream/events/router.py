"""HTTP routes of the event stream (/v1/events). HTTP concerns only; the
rules live in `service.py`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.http import UnitOfWorkRoute, get_session
from sendstream.core.pagination import PageQuery
from sendstream.core.types import Timestamp
from sendstream.events.repository import EventQuery
from sendstream.events.schemas import EventPage, EventRead
from sendstream.events.service import event_service
from sendstream.workspaces.auth import Principal, require_scope

router = APIRouter(route_class=UnitOfWorkRoute)
Session = Annotated[AsyncSession, Depends(get_session)]
# An exact type (dotted lower-case names: `message.bounced`), `prefix.*` or
# `*`: a star only as the whole or after the last dot. A word without a dot
# is no event type, so `type=true` is refused by the schema, not read as one.
TYPE_PATTERN = r"^(\*|[a-z][a-z0-9_]*(\.[a-z0-9_]+)*\.\*|[a-z][a-z0-9_]*(\.[a-z0-9_]+)+)$"


@router.get(
    "/events",
    tags=["events"],
    summary="Read the workspace's event stream",
    description="Events in position order (1, 2, 3 ... per workspace, in commit order, "
    "without gaps), oldest first. To catch up after missed webhooks, pass the last "
    "position you handled as `after_position` (a webhook's `data.event_position`) and "
    "follow `next_cursor`. Filters combine with AND; `type` may repeat (OR).",
)
async def list_events(
    session: Session,
    page: PageQuery,
    types: Annotated[
        list[Annotated[str, Query(min_length=1, max_length=100, pattern=TYPE_PATTERN)]] | None,
        Query(
            alias="type",
            max_length=50,
            description="Event type (`message.bounced`) or pattern (`message.*`, `*`); repeat "
            "for several.",
        ),
    ] = None,
    contact_id: Annotated[
        uuid.UUID | None,
        Query(description="Events about this contact, or naming it in `data.contact_id`."),
    ] = None,
    message_id: Annotated[
        uuid.UUID | None,
        Query(description="Events about this message, or naming it in `data.message_id`."),
    ] = None,
    after: Annotated[
        Timestamp | None, Query(description="Events that occurred at or after this time.")
    ] = None,
    before: Annotated[
        Timestamp | None, Query(description="Events that occurred before this time.")
    ] = None,
    after_position: Annotated[
        int | None,
        Query(ge=0, lt=2**63, description="Only events after this position (`cursor` wins)."),
    ] = None,
    principal: Principal = require_scope("events:read"),
) -> EventPage:
    records, cursor = await event_service.list_events(
        session,
        principal.workspace_id,
        page,
        EventQuery(
            after_position=after_position or 0,
            types=tuple(types or ()),
            contact_id=contact_id,
            message_id=message_id,
            after=after,
            before=before,
        ),
    )
    return EventPage(data=[EventRead.of(r) for r in records], next_cursor=cursor)
