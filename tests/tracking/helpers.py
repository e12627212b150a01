"""Small shared steps of the tracking tests: messages as the delivery
pipeline leaves them once sent, tokens for them, and what they recorded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from sendstream.core.db import Database
from sendstream.core.settings import Settings, override_settings
from sendstream.models.message import Message
from sendstream.tracking.tokens import Kind, make_token

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)
BROWSER = {"User-Agent": IPHONE}


@dataclass(frozen=True)
class SentMessage:
    id: uuid.UUID
    workspace_id: uuid.UUID
    contact_id: uuid.UUID | None
    list_id: uuid.UUID | None

    def token(self, kind: Kind, url: str | None = None) -> str:
        return make_token(kind, self.workspace_id, self.id, self.contact_id, self.list_id, url)


async def sent_message(
    db: Database,
    workspace_id: uuid.UUID,
    *,
    to: str = "ada@example.com",
    contact_id: str | uuid.UUID | None = None,
    list_id: str | uuid.UUID | None = None,
    stream: str = "marketing",
    sent_ago: timedelta | None = timedelta(minutes=5),
    track_opens: bool = True,
    track_clicks: bool = True,
) -> SentMessage:
    contact = uuid.UUID(str(contact_id)) if contact_id is not None else None
    listed = uuid.UUID(str(list_id)) if list_id is not None else None
    async with db.session() as session:
        message = Message(
            workspace_id=workspace_id,
            stream=stream,
            status="sent",
            from_email="news@sender.example",
            to_email=to,
            to_email_key=to.lower(),
            contact_id=contact,
            list_id=listed,
            track_opens=track_opens,
            track_clicks=track_clicks,
            message_id_header=f"<{uuid.uuid4()}@sender.example>",
            sent_at=datetime.now(UTC) - sent_ago if sent_ago is not None else None,
        )
        session.add(message)
        await session.flush()
        return SentMessage(message.id, workspace_id, contact, listed)


async def message_row(db: Database, message_id: uuid.UUID) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT opens, clicks, first_opened_at, first_clicked_at "
                    "FROM messages WHERE id = :id"
                ),
                {"id": message_id},
            )
        ).one()
    return dict(row._mapping)


async def message_events(db: Database, message_id: uuid.UUID, *types: str) -> list[dict[str, Any]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT type, data FROM events WHERE subject_type = 'message' "
                "AND subject_id = :id ORDER BY position"
            ),
            {"id": str(message_id)},
        )
        return [{"type": r.type, **r.data} for r in rows if not types or r.type in types]


@contextmanager
def tracking_settings(settings: Settings, **changes: Any) -> Iterator[Settings]:
    """The process settings with `tracking` fields changed, for the block."""
    tracking = settings.tracking.model_copy(update=changes)
    changed = settings.model_copy(update={"tracking": tracking})
    override_settings(changed)
    try:
        yield changed
    finally:
        override_settings(settings)
