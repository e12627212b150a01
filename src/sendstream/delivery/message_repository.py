"""Queries of the send API: writing queued messages, reading them back with
their events, attachments and captured copies. Every query is scoped by
workspace. (The delivery loop's own statements are in `worker_sql.py`.)"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.models.contact_list import ContactList
from sendstream.models.event import Event
from sendstream.models.message import AttachmentBlob, CapturedMessage, Message, MessageAttachment

# NOTIFY channel the delivery loop listens on; sent when due messages commit.
CHANNEL: Final = "sendstream_messages"
SUBJECT_TYPE: Final = "message"
# A message's events shown by GET /v1/messages/{id}; retries of a message
# that defers for days stay far below this.
MAX_EVENTS = 1000


class MessageRepository:
    async def insert_messages(self, session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            await session.execute(insert(Message), list(rows))

    async def store_blobs(
        self, session: AsyncSession, workspace_id: uuid.UUID, blobs: Mapping[str, bytes]
    ) -> None:
        """Attachment contents by SHA-256, once per workspace: a file already
        stored (by this request or an earlier one) is not written again."""
        if not blobs:
            return
        statement = insert(AttachmentBlob).on_conflict_do_nothing()
        await session.execute(
            statement,
            [
                {"workspace_id": workspace_id, "sha256": sha, "data": data, "size_bytes": len(data)}
                for sha, data in blobs.items()
            ],
        )

    async def insert_attachments(
        self, session: AsyncSession, rows: Sequence[dict[str, Any]]
    ) -> None:
        if rows:
            await session.execute(insert(MessageAttachment), list(rows))

    async def notify_due(self, session: AsyncSession) -> None:
        """Wake the delivery loops when this transaction commits."""
        await session.execute(select(func.pg_notify(CHANNEL, "")))

    async def get(
        self, session: AsyncSession, workspace_id: uuid.UUID, message_id: uuid.UUID
    ) -> Message | None:
        found: Message | None = await session.scalar(
            select(Message).where(Message.workspace_id == workspace_id, Message.id == message_id)
        )
        return found

    async def page(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        before: uuid.UUID | None,
        limit: int,
        status: str | None = None,
        stream: str | None = None,
        to_key: str | None = None,
        tag: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> Sequence[Message]:
        """Newest first: ids are time-ordered (UUIDv7), so `id` is the order
        and the cursor."""
        query = select(Message).where(Message.workspace_id == workspace_id)
        if before is not None:
            query = query.where(Message.id < before)
        if status is not None:
            query = query.where(Message.status == status)
        if stream is not None:
            query = query.where(Message.stream == stream)
        if to_key is not None:
            query = query.where(Message.to_email_key == to_key)
        if tag is not None:
            query = query.where(Message.tags.contains([tag]))
        if created_after is not None:
            query = query.where(Message.created_at >= created_after)
        if created_before is not None:
            query = query.where(Message.created_at < created_before)
        rows = await session.scalars(query.order_by(Message.id.desc()).limit(limit))
        return rows.all()

    async def events(
        self, session: AsyncSession, workspace_id: uuid.UUID, message_id: uuid.UUID
    ) -> Sequence[Event]:
        rows = await session.scalars(
            select(Event)
            .where(
                Event.workspace_id == workspace_id,
                Event.subject_type == SUBJECT_TYPE,
                Event.subject_id == str(message_id),
            )
            .order_by(Event.position)
            .limit(MAX_EVENTS)
        )
        return rows.all()

    async def attachments(
        self, session: AsyncSession, workspace_id: uuid.UUID, message_id: uuid.UUID
    ) -> list[tuple[MessageAttachment, int]]:
        rows = await session.execute(
            select(MessageAttachment, AttachmentBlob.size_bytes)
            .join(
                AttachmentBlob,
                (AttachmentBlob.workspace_id == MessageAttachment.workspace_id)
                & (AttachmentBlob.sha256 == MessageAttachment.sha256),
            )
            .where(
                MessageAttachment.workspace_id == workspace_id,
                MessageAttachment.message_id == message_id,
            )
            .order_by(MessageAttachment.position)
        )
        return [(attachment, int(size)) for attachment, size in rows]

    async def captured(
        self, session: AsyncSession, workspace_id: uuid.UUID, message_id: uuid.UUID
    ) -> CapturedMessage | None:
        found: CapturedMessage | None = await session.scalar(
            select(CapturedMessage).where(
                CapturedMessage.workspace_id == workspace_id,
                CapturedMessage.message_id == message_id,
            )
        )
        return found

    async def recent_captured(
        self, session: AsyncSession, workspace_id: uuid.UUID, limit: int
    ) -> Sequence[CapturedMessage]:
        rows = await session.scalars(
            select(CapturedMessage)
            .where(CapturedMessage.workspace_id == workspace_id)
            .order_by(CapturedMessage.created_at.desc(), CapturedMessage.message_id.desc())
            .limit(limit)
        )
        return rows.all()

    async def existing_lists(
        self, session: AsyncSession, workspace_id: uuid.UUID, ids: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Which of `ids` name a list of this workspace (one query for a
        batch; the lists service's reads also count members, which a send
        does not need)."""
        if not ids:
            return set()
        rows = await session.scalars(
            select(ContactList.id).where(
                ContactList.workspace_id == workspace_id, ContactList.id.in_(list(ids))
            )
        )
        return set(rows.all())


message_repository = MessageRepository()
