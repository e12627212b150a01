"""The delivery loop's statements: claim, heartbeat, the next due time (raw
psycopg, autocommit: each is one round trip for a whole batch), and the
outcome writes (a SQLAlchemy session: the state change, its events and the
captured copies commit together).

Every statement that ends a claim is guarded by `status = 'sending' AND
attempts = <the attempt we claimed>`: `attempts` goes up on every claim, so
a worker whose lease ran out (and whose message someone else took) can
never overwrite what happened since.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.outbox import write_events_from_select
from sendstream.delivery import mime
from sendstream.models.message import AttachmentBlob, CapturedMessage, MessageAttachment

# Columns the claim returns, in `compose.Outgoing` order (see worker.py).
CLAIM: Final = """
WITH fresh AS (
    SELECT id FROM messages
    WHERE status IN ('queued', 'deferred') AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), expired AS (
    -- Only every few seconds (`with_expired`): every message passes through
    -- 'sending', so until vacuum this partial index is mostly dead entries,
    -- and walking them on every claim made a big send quadratic.
    SELECT id FROM messages
    WHERE %(with_expired)s AND status = 'sending' AND lease_until < now()
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT id FROM expired UNION ALL SELECT id FROM fresh LIMIT %(limit)s
)
UPDATE messages AS m
SET status = 'sending',
    lease_until = now() + make_interval(secs => %(lease)s),
    attempts = m.attempts + 1,
    updated_at = now()
FROM picked
WHERE m.id = picked.id
RETURNING m.id, m.workspace_id, m.stream, m.from_email, m.from_name, m.reply_to,
          m.to_email, m.to_name, m.message_id_header, m.to_email_key, m.cc, m.bcc,
          m.contact_id, m.list_id, m.template_version_id, m.data, m.subject, m.html,
          m.text, m.headers, m.track_opens, m.track_clicks, m.attempts,
          coalesce(m.send_at, m.created_at)
"""

HEARTBEAT: Final = """
UPDATE messages SET lease_until = now() + make_interval(secs => %(lease)s)
WHERE id = ANY(%(ids)s) AND status = 'sending'
"""

# Seconds until the next message comes due (or a lease runs out), if any.
NEXT_DUE: Final = """
SELECT extract(epoch FROM least(
    (SELECT min(next_attempt_at) FROM messages WHERE status IN ('queued', 'deferred')),
    (SELECT min(lease_until) FROM messages WHERE status = 'sending')
) - now())
"""

_OUTCOMES = """
v AS (
    SELECT * FROM unnest(
        CAST(:ids AS uuid[]), CAST(:workspaces AS uuid[]), CAST(:attempts AS int[]),
        CAST(:statuses AS text[]), CAST(:next AS timestamptz[]), CAST(:codes AS int[]),
        CAST(:responses AS text[]), CAST(:relays AS text[]), CAST(:sizes AS bigint[]),
        CAST(:sent AS timestamptz[]), CAST(:events AS text[])
    ) AS v(
        id, workspace_id, attempt, status, next_attempt_at, code, response, relay, size,
        sent_at, event
    )
), upd AS (
    UPDATE messages AS m
    SET status = v.status,
        next_attempt_at = coalesce(v.next_attempt_at, m.next_attempt_at),
        lease_until = NULL,
        last_status_code = v.code,
        last_response = v.response,
        relay = coalesce(v.relay, m.relay),
        size_bytes = coalesce(v.size, m.size_bytes),
        sent_at = coalesce(v.sent_at, m.sent_at),
        updated_at = now()
    FROM v
    -- The workspace is matched per row (an array, not `= :workspace_id`):
    -- with stale statistics after a bulk queueing, the constant made the
    -- planner walk the workspace's whole (workspace_id, id) index for every
    -- write (313 million index entries read in one 100,000-message send).
    WHERE m.id = v.id AND m.workspace_id = v.workspace_id
      AND m.status = 'sending' AND m.attempts = v.attempt
    RETURNING m.id, v.status, v.event
)"""
_OUTCOME_EVENTS = """
SELECT 'message.' || status AS type, 'message' AS subject_type, id::text AS subject_id,
       CAST(event AS json) AS data
FROM upd
"""

_RELEASE = text(
    """
    UPDATE messages AS m
    SET status = CASE WHEN m.attempts > 1 THEN 'deferred' ELSE 'queued' END,
        attempts = m.attempts - 1,
        lease_until = NULL,
        updated_at = now()
    FROM unnest(CAST(:ids AS uuid[]), CAST(:attempts AS int[])) AS v(id, attempt)
    WHERE m.id = v.id AND m.status = 'sending' AND m.attempts = v.attempt
    """
)


@dataclass(slots=True)
class Outcome:
    """How one claimed attempt ended, waiting to be written."""

    workspace_id: uuid.UUID
    message_id: uuid.UUID
    attempt: int
    # sent | deferred | failed
    status: str
    code: int | None
    response: str
    event: dict[str, Any]
    next_attempt_at: datetime | None = None
    relay: str | None = None
    size: int | None = None
    sent_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Captured:
    workspace_id: uuid.UUID
    message_id: uuid.UUID
    mail_from: str
    recipients: tuple[str, ...]
    raw: bytes


async def write_outcomes(
    session: AsyncSession, workspace_id: uuid.UUID, outcomes: Sequence[Outcome]
) -> dict[str, int]:
    """One UPDATE for every outcome of the workspace, and one event per row
    it changed (`message.sent`, `.deferred`, `.failed`), in one statement."""
    written = await write_events_from_select(
        session,
        workspace_id,
        _OUTCOME_EVENTS,
        {
            "workspace_id": workspace_id,
            "ids": [o.message_id for o in outcomes],
            "workspaces": [workspace_id] * len(outcomes),
            "attempts": [o.attempt for o in outcomes],
            "statuses": [o.status for o in outcomes],
            "next": [o.next_attempt_at for o in outcomes],
            "codes": [o.code for o in outcomes],
            "responses": [o.response for o in outcomes],
            "relays": [o.relay for o in outcomes],
            "sizes": [o.size for o in outcomes],
            "sent": [o.sent_at for o in outcomes],
            "events": [json.dumps(o.event, default=str) for o in outcomes],
        },
        ctes=_OUTCOMES,
    )
    return written


async def write_captured(session: AsyncSession, captured: Sequence[Captured]) -> None:
    """The capture transport's copies; a retried message keeps its latest."""
    if not captured:
        return
    statement = insert(CapturedMessage)
    statement = statement.on_conflict_do_update(
        index_elements=[CapturedMessage.message_id],
        set_={
            "mail_from": statement.excluded.mail_from,
            "recipients": statement.excluded.recipients,
            "raw": statement.excluded.raw,
            "created_at": statement.excluded.created_at,
        },
    )
    await session.execute(
        statement,
        [
            {
                "message_id": c.message_id,
                "workspace_id": c.workspace_id,
                "mail_from": c.mail_from,
                "recipients": list(c.recipients),
                "raw": c.raw,
            }
            for c in captured
        ],
    )


async def release(session: AsyncSession, held: Sequence[tuple[uuid.UUID, int]]) -> None:
    """Give claimed messages back without an attempt (shutdown before their
    SMTP transaction began)."""
    if held:
        await session.execute(
            _RELEASE, {"ids": [i for i, _ in held], "attempts": [a for _, a in held]}
        )


async def attachments_for(
    session: AsyncSession, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[mime.Attachment]]:
    """Each message's attachments, in order (one query for a batch)."""
    if not ids:
        return {}
    rows = await session.execute(
        select(
            MessageAttachment.message_id,
            MessageAttachment.filename,
            MessageAttachment.content_type,
            MessageAttachment.content_id,
            AttachmentBlob.data,
        )
        .join(
            AttachmentBlob,
            (AttachmentBlob.workspace_id == MessageAttachment.workspace_id)
            & (AttachmentBlob.sha256 == MessageAttachment.sha256),
        )
        .where(MessageAttachment.message_id.in_(list(ids)))
        .order_by(MessageAttachment.message_id, MessageAttachment.position)
    )
    found: dict[uuid.UUID, list[mime.Attachment]] = {}
    for message_id, filename, content_type, content_id, data in rows:
        found.setdefault(message_id, []).append(
            mime.Attachment(filename, content_type, bytes(data), content_id)
        )
    return found
