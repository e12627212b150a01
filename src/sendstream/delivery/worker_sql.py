"""The delivery loop's statements, raw psycopg on the loop's own
connections: claim, heartbeat, the next due time (autocommit: each is one
round trip for a whole batch), and the outcome writes (one transaction: the
state change, its events and the captured copies commit together). An ORM
session around each write cost the loop more than the statement itself.

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

import psycopg
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.outbox import json_default, write_events_from_select_on
from sendstream.delivery import mime
from sendstream.models.message import AttachmentBlob, MessageAttachment

# Columns the claim returns, in `compose.Outgoing` order (see worker.py),
# then whether the message has attachments (most have none, and their batch
# then needs no attachments query).
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
          coalesce(m.send_at, m.created_at),
          EXISTS (SELECT FROM message_attachments a WHERE a.message_id = m.id)
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

# The outcomes arrive as one JSON array of objects (`_outcome_rows`):
# one parameter that PostgreSQL parses in C, instead of eleven arrays that
# the driver would quote element by element in Python.
_OUTCOMES = """
v AS (
    SELECT * FROM json_to_recordset(CAST(:rows AS json)) AS v(
        id uuid, workspace_id uuid, attempt int, status text, next_attempt_at timestamptz,
        code int, response text, relay text, size bigint, sent_at timestamptz, event json
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
    -- Rows are found by id only. No constant the planner could match to an
    -- index other than the primary key: the workspace is matched per row,
    -- and the status through a sub-select, which no partial index can be
    -- proved from. With statistics taken before a bulk send, a constant
    -- `workspace_id` made the planner walk the workspace's whole index for
    -- every write (313 million index entries read in one 100,000-message
    -- send), and `status = 'sending'` made it walk the partial index of
    -- leases, every dead entry of every message sent since the last vacuum.
    WHERE m.id = v.id AND m.workspace_id = v.workspace_id
      AND m.status = (SELECT 'sending') AND m.attempts = v.attempt
    RETURNING m.id, v.status, v.event
)"""
_OUTCOME_EVENTS = """
SELECT 'message.' || status AS type, 'message' AS subject_type, id::text AS subject_id,
       event AS data
FROM upd
"""

_RELEASE: Final = """
UPDATE messages AS m
SET status = CASE WHEN m.attempts > 1 THEN 'deferred' ELSE 'queued' END,
    attempts = m.attempts - 1,
    lease_until = NULL,
    updated_at = now()
FROM unnest(%(ids)s::uuid[], %(attempts)s::int[]) AS v(id, attempt)
WHERE m.id = v.id AND m.status = 'sending' AND m.attempts = v.attempt
"""

# A retried message keeps its latest copy.
_CAPTURE: Final = """
INSERT INTO captured_messages (message_id, workspace_id, mail_from, recipients, raw)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (message_id) DO UPDATE
SET mail_from = excluded.mail_from, recipients = excluded.recipients, raw = excluded.raw,
    created_at = now()
"""


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
    conn: psycopg.AsyncConnection[Any], workspace_id: uuid.UUID, outcomes: Sequence[Outcome]
) -> dict[str, int]:
    """One UPDATE for every outcome of the workspace, and one event per row
    it changed (`message.sent`, `.deferred`, `.failed`), in one statement,
    inside the caller's transaction."""
    return await write_events_from_select_on(
        conn,
        workspace_id,
        _OUTCOME_EVENTS,
        {"rows": _outcome_rows(workspace_id, outcomes)},
        ctes=_OUTCOMES,
    )


def _outcome_rows(workspace_id: uuid.UUID, outcomes: Sequence[Outcome]) -> str:
    return json.dumps(
        [
            {
                "id": o.message_id,
                "workspace_id": workspace_id,
                "attempt": o.attempt,
                "status": o.status,
                "next_attempt_at": o.next_attempt_at,
                "code": o.code,
                "response": o.response,
                "relay": o.relay,
                "size": o.size,
                "sent_at": o.sent_at,
                "event": o.event,
            }
            for o in outcomes
        ],
        default=json_default,
    )


async def write_captured(conn: psycopg.AsyncConnection[Any], captured: Sequence[Captured]) -> None:
    """The capture transport's copies (local development), in the caller's
    transaction."""
    if captured:
        async with conn.cursor() as cur:
            await cur.executemany(
                _CAPTURE,
                [
                    (c.message_id, c.workspace_id, c.mail_from, list(c.recipients), c.raw)
                    for c in captured
                ],
            )


async def release(
    conn: psycopg.AsyncConnection[Any], held: Sequence[tuple[uuid.UUID, int]]
) -> None:
    """Give claimed messages back without an attempt (shutdown before their
    SMTP transaction began)."""
    if held:
        await conn.execute(
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
