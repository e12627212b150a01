"""Queries of the send API: writing queued messages, reading them back with
their events, attachments and captured copies, and what a send needs to know
about its recipients (their contacts, list unsubscribes, which copies a
deferred attempt already delivered). Every query is scoped by workspace.
(The delivery loop's own hot statements are in `worker_sql.py`.)"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Text, any_, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.outbox import write_events_from_select
from sendstream.models.contact import Contact, ContactExternalId
from sendstream.models.contact_list import ContactList, Subscription
from sendstream.models.event import Event
from sendstream.models.message import AttachmentBlob, CapturedMessage, Message, MessageAttachment

# NOTIFY channel the delivery loop listens on; sent when due messages commit.
CHANNEL: Final = "sendstream_messages"
SUBJECT_TYPE: Final = "message"
# A message's events shown by GET /v1/messages/{id}; retries of a message
# that defers for days stay far below this.
MAX_EVENTS = 1000
# A subscription in one of these states refuses marketing mail for its list
# (`unconfirmed` does not: a double opt-in list may still send the reminder).
LIST_REFUSING: Final = ("unsubscribed", "bounced", "complained")
# The key of a `message.deferred` event that lists the copies (cc, bcc) the
# relay accepted on that attempt; a retry leaves them out of its envelope.
COPIES_ACCEPTED: Final = "copies_accepted"


# The rows of a send, one JSON array (one bound parameter, encoded by
# json.dumps in C: no per-row, per-column binding in Python), read into the
# `messages` row type and numbered in array order, which is the order of
# their events' positions. A row without `send_at` is due at the
# transaction's now(), the clock the delivery loop compares against.
_QUEUED_ROWS = """
queued_src AS MATERIALIZED (
    SELECT e.n, e.value -> 'event' AS event, r.*
    FROM json_array_elements(CAST(:rows AS json)) WITH ORDINALITY AS e(value, n),
         json_populate_record(NULL::messages, e.value) AS r
), queued_ins AS (
    INSERT INTO messages (
    id, workspace_id, stream, from_email, from_name, reply_to, to_email, to_email_key, to_name,
    contact_id, cc, bcc, list_id, template_version_id, data, subject, html, text, headers,
    metadata, tags, track_opens, track_clicks, message_id_header, send_at, next_attempt_at
    )
    SELECT
    id, workspace_id, stream, from_email, from_name, reply_to, to_email, to_email_key, to_name,
    contact_id, cc, bcc, list_id, template_version_id, data, subject, html, text, headers,
    metadata, tags, track_opens, track_clicks, message_id_header, send_at, coalesce(send_at, now())
    FROM queued_src
)"""
# Selected from `queued_src`, not from the INSERT's RETURNING (whose order
# PostgreSQL does not promise); the INSERT runs to completion either way,
# and a failed row fails the statement, events included.
_QUEUED_EVENTS = """
SELECT 'message.queued' AS type, 'message' AS subject_type, CAST(id AS text) AS subject_id,
       event AS data, n
FROM queued_src
"""


class MessageRepository:
    async def queue(
        self, session: AsyncSession, workspace_id: uuid.UUID, rows_json: str, count: int
    ) -> None:
        """Insert `count` queued messages and their `message.queued` events
        in one statement. `rows_json` is a JSON array of objects keyed by
        the columns `_QUEUED_ROWS` writes (a missing key is NULL) plus
        `event`, the event's data. The events get consecutive positions in
        array order, allocated by the outbox (`write_events_from_select`),
        gapless like every other event's; they precede events `emit()`ted
        in the same transaction, which are written at commit."""
        if count:
            await write_events_from_select(
                session,
                workspace_id,
                _QUEUED_EVENTS,
                {"rows": rows_json},
                ctes=_QUEUED_ROWS,
                count=count,
            )

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

    async def contacts(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        keys: Sequence[str] = (),
        ids: Sequence[uuid.UUID] = (),
    ) -> list[tuple[Contact, dict[str, str]]]:
        """The workspace's contacts with these matching keys or ids, each with
        its external ids ({system: id}); two queries for a whole batch."""
        if not keys and not ids:
            return []
        query = select(Contact).where(Contact.workspace_id == workspace_id)
        if keys:
            query = query.where(Contact.email_key == any_(literal(list(keys), ARRAY(Text))))
        else:
            query = query.where(Contact.id.in_(list(ids)))
        found = list((await session.scalars(query)).all())
        if not found:
            return []
        external: dict[uuid.UUID, dict[str, str]] = {}
        rows = await session.execute(
            select(
                ContactExternalId.contact_id,
                ContactExternalId.system,
                ContactExternalId.external_id,
            ).where(
                ContactExternalId.workspace_id == workspace_id,
                ContactExternalId.contact_id.in_([c.id for c in found]),
            )
        )
        for contact_id, system, external_id in rows:
            external.setdefault(contact_id, {})[system] = external_id
        return [(c, external.get(c.id, {})) for c in found]

    async def list_refusals(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        keys: Sequence[str],
        list_ids: Sequence[uuid.UUID],
    ) -> dict[tuple[str, uuid.UUID], str]:
        """{(matching key, list id): subscription status} for the contacts
        with these keys whose subscription to one of these lists refuses
        marketing mail (`LIST_REFUSING`); one query."""
        if not keys or not list_ids:
            return {}
        rows = await session.execute(
            select(Contact.email_key, Subscription.list_id, Subscription.status)
            .join(
                Subscription,
                (Subscription.contact_id == Contact.id)
                & (Subscription.workspace_id == Contact.workspace_id),
            )
            .where(
                Contact.workspace_id == workspace_id,
                Contact.email_key == any_(literal(list(keys), ARRAY(Text))),
                Subscription.list_id.in_(list(list_ids)),
                Subscription.status.in_(LIST_REFUSING),
            )
        )
        return {(key, list_id): status for key, list_id, status in rows}

    async def copies_accepted(
        self, session: AsyncSession, workspace_id: uuid.UUID, message_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, set[str]]:
        """{message id: lower-cased cc/bcc addresses a relay accepted on an
        earlier, deferred attempt}, read from the messages' `message.deferred`
        events (written in the same statement as the deferral, so what they
        say is exactly what was committed)."""
        if not message_ids:
            return {}
        rows = await session.execute(
            select(Event.subject_id, Event.data).where(
                Event.workspace_id == workspace_id,
                Event.subject_type == SUBJECT_TYPE,
                Event.subject_id.in_([str(i) for i in message_ids]),
                Event.type == "message.deferred",
            )
        )
        found: dict[uuid.UUID, set[str]] = {}
        for subject_id, data in rows:
            accepted = (data or {}).get(COPIES_ACCEPTED) or []
            if accepted:
                found.setdefault(uuid.UUID(subject_id), set()).update(
                    str(a).lower() for a in accepted
                )
        return found


message_repository = MessageRepository()
