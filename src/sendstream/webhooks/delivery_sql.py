"""The webhook sender's statements: claim, heartbeat, release and the next
due time (raw psycopg, autocommit: one round trip per batch), and the
outcome write: one statement with binary parameters for delivery states,
attempts and endpoint health, on the loop's autocommit connection when every
attempt succeeded (`write_succeeded`), else in a session with what failures
add (`write_outcomes`: failing endpoints, disabling, `webhook.disabled`
events), so each batch commits together.

Every statement that ends a claim is guarded by `status = 'delivering' AND
attempts = <the attempt we claimed>`: a sender whose lease ran out (and
whose delivery another took over) can never overwrite what happened since.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.outbox import emit

# Per endpoint (enabled, with due work, in random order so a cut-off batch
# does not always favour the same ones), up to its free concurrency: its
# `max_concurrency` less the deliveries in flight with a live lease, counted
# across every process. A FIFO endpoint's delivery waits while an earlier
# one with the same ordering key is pending or in flight. Expired leases
# (a sender that died) are taken over first. Columns: see `Claimed`.
#
# Claim positions: every claim turns pending rows into delivering ones, and
# until vacuum the due index keeps the entries of every delivery claimed so
# far (a status change is never a HOT update). Walked from an endpoint's
# start, each claim would read all of them (3.3 billion entries for 324,000
# deliveries). So the caller passes, per non-FIFO endpoint, the position
# (next_attempt_at, id) of the last delivery it claimed there, and the walk
# starts after it: a new delivery comes after it (a later fan-out, a later
# id) and a retry is due later than now. What can land behind a position (a
# claim given back at a graceful stop, a replay whose transaction began
# before the claim) is found by the claims that pass no positions: every
# lease/3 s and whenever the loop has been idle (see worker._claim_loop).
CLAIM: Final = """
WITH fl AS (
    SELECT * FROM unnest(
        %(floor_endpoints)s::uuid[], %(floor_at)s::timestamptz[], %(floor_id)s::bigint[]
    ) AS f(endpoint_id, at, id)
), ep AS (
    SELECT e.id, e.fifo, e.after_at, e.after_id,
           e.max_concurrency - (
               SELECT count(*) FROM webhook_deliveries b
               WHERE b.endpoint_id = e.id AND b.status = 'delivering'
                 AND b.lease_until >= now()
           ) AS room
    FROM (
        SELECT e.id, e.fifo, e.max_concurrency,
               coalesce(fl.at, '-infinity') AS after_at, coalesce(fl.id, 0) AS after_id
        FROM webhook_endpoints e LEFT JOIN fl ON fl.endpoint_id = e.id AND NOT e.fifo
        WHERE e.enabled
    ) AS e CROSS JOIN LATERAL (
        -- A lateral LIMIT 1, not EXISTS: as a semi-join the planner would
        -- read every due delivery of every endpoint.
        SELECT 1 FROM webhook_deliveries d
        WHERE d.endpoint_id = e.id AND d.status = 'pending' AND d.next_attempt_at <= now()
          AND (d.next_attempt_at, d.id) > (e.after_at, e.after_id)
        LIMIT 1
    ) AS due
    ORDER BY random()
), fresh AS (
    SELECT c.id, true AS fresh FROM ep CROSS JOIN LATERAL (
        SELECT d.id FROM webhook_deliveries d
        WHERE d.endpoint_id = ep.id AND d.status = 'pending' AND d.next_attempt_at <= now()
          -- A row comparison: the index range starts right after the
          -- position, also among the many deliveries of one fan-out instant.
          AND (d.next_attempt_at, d.id) > (ep.after_at, ep.after_id)
          AND (NOT ep.fifo OR d.ordering_key IS NULL OR NOT EXISTS (
              SELECT 1 FROM webhook_deliveries x
              WHERE x.endpoint_id = d.endpoint_id AND x.ordering_key = d.ordering_key
                AND x.status IN ('pending', 'delivering') AND x.id < d.id
          ))
        ORDER BY d.next_attempt_at, d.id
        LIMIT greatest(least(ep.room, %(limit)s), 0)
        FOR UPDATE SKIP LOCKED
    ) AS c
    LIMIT %(limit)s
), expired AS (
    -- Only every few seconds (`with_expired`): every delivery passes through
    -- 'delivering', so until vacuum this partial index is mostly dead entries.
    SELECT d.id, false AS fresh FROM webhook_deliveries d
    WHERE %(with_expired)s AND d.status = 'delivering' AND d.lease_until < now()
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT id, fresh FROM expired UNION ALL SELECT id, fresh FROM fresh LIMIT %(limit)s
)
UPDATE webhook_deliveries AS d
SET status = 'delivering',
    lease_until = now() + make_interval(secs => %(lease)s),
    attempts = d.attempts + 1
FROM picked, webhook_endpoints AS e, workspaces AS w
WHERE d.id = picked.id AND e.id = d.endpoint_id AND w.id = e.workspace_id
RETURNING d.id, d.workspace_id, d.endpoint_id, d.webhook_id, d.payload::text, d.attempts,
          d.created_at, e.url, e.updated_at, w.webhooks_allow_private_addresses,
          d.next_attempt_at, picked.fresh AND NOT e.fifo
"""

HEARTBEAT: Final = """
UPDATE webhook_deliveries SET lease_until = now() + make_interval(secs => %(lease)s)
WHERE id = ANY(%(ids)s) AND status = 'delivering'
"""

# Seconds until the next delivery comes due or a lease runs out, if any.
# Per enabled endpoint through the claim's own (endpoint_id, next_attempt_at)
# index: a second index on next_attempt_at alone tempted the planner into
# using it for the claim, walking every endpoint's claimed entries.
NEXT_DUE: Final = """
SELECT extract(epoch FROM least(
    (SELECT min(n.next_attempt_at) FROM webhook_endpoints e CROSS JOIN LATERAL (
        SELECT d.next_attempt_at FROM webhook_deliveries d
        WHERE d.endpoint_id = e.id AND d.status = 'pending'
        ORDER BY d.next_attempt_at LIMIT 1
    ) AS n WHERE e.enabled),
    (SELECT min(lease_until) FROM webhook_deliveries WHERE status = 'delivering')
) - now())
"""

# Give back claims never sent (a graceful stop): not counted as attempts.
RELEASE: Final = """
UPDATE webhook_deliveries AS d
SET status = 'pending', attempts = d.attempts - 1, lease_until = NULL
FROM unnest(%(ids)s::bigint[], %(attempts)s::int[]) AS v(id, attempt)
WHERE d.id = v.id AND d.status = 'delivering' AND d.attempts = v.attempt
"""


@dataclass(slots=True)
class Claimed:
    id: int
    workspace_id: uuid.UUID
    endpoint_id: uuid.UUID
    webhook_id: str
    payload: bytes
    attempts: int
    created_at: datetime
    url: str
    endpoint_updated_at: datetime
    allow_private: bool
    # When it came due; with `id`, its claim position (`CLAIM`).
    next_attempt_at: datetime
    # Claimed as due work of a non-FIFO endpoint (not a lease taken over):
    # its position may move the endpoint's claim position on.
    positions: bool


def claimed(row: tuple[Any, ...]) -> Claimed:
    (id_, ws, ep, wid, payload, attempts, created, url, updated, allow, due, positions) = row
    return Claimed(
        id_,
        ws,
        ep,
        wid,
        str(payload).encode(),
        attempts,
        created,
        url,
        updated,
        bool(allow),
        due,
        bool(positions),
    )


@dataclass(slots=True)
class Outcome:
    """One finished attempt, waiting to be written."""

    delivery_id: int
    workspace_id: uuid.UUID
    endpoint_id: uuid.UUID
    attempt: int
    status: str
    next_attempt_at: datetime | None
    status_code: int | None
    error: str | None
    attempted_at: datetime
    request_headers: dict[str, str]
    request_body: str | None  # None: the delivery's payload
    response_body: str | None
    latency_ms: float
    disable_reason: str | None


# Raw psycopg with binary parameters (`%b`: `%s` would dump lists of strings
# as text): dumping thirteen arrays as text (array literals, quoting and
# escaping each value) was a fifth of the sender's CPU.
# The endpoints of successful attempts are marked healthy in the same
# statement (a no-op update unless one was failing).
_WRITE: Final = """
WITH v AS (
    SELECT * FROM unnest(
        %(ids)b::bigint[], %(attempts)b::int[], %(statuses)b::text[],
        %(next)b::timestamptz[], %(codes)b::int[], %(errors)b::text[]
    ) AS v(id, attempt, status, next_attempt_at, code, error)
), upd AS (
    UPDATE webhook_deliveries AS d
    SET status = v.status,
        next_attempt_at = coalesce(v.next_attempt_at, d.next_attempt_at),
        lease_until = NULL,
        completed_at = CASE WHEN v.status IN ('succeeded', 'failed') THEN now() END,
        last_status_code = v.code,
        last_error = v.error
    FROM v
    WHERE d.id = v.id AND d.status = 'delivering' AND d.attempts = v.attempt
    RETURNING d.id, d.endpoint_id, v.status
), healthy AS (
    UPDATE webhook_endpoints SET failing_since = NULL
    WHERE id IN (SELECT endpoint_id FROM upd WHERE status = 'succeeded')
      AND failing_since IS NOT NULL
)
INSERT INTO webhook_attempts (delivery_id, workspace_id, endpoint_id, attempted_at,
    request_headers, request_body, status_code, response_body, latency_ms, error)
SELECT a.delivery_id, a.workspace_id, a.endpoint_id, a.attempted_at,
       CAST(a.request_headers AS jsonb), a.request_body, a.status_code, a.response_body,
       a.latency_ms, a.error
FROM unnest(
    %(ids)b::bigint[], %(workspaces)b::uuid[], %(endpoints)b::uuid[],
    %(attempted)b::timestamptz[], %(headers)b::text[], %(bodies)b::text[],
    %(codes)b::int[], %(responses)b::text[], %(latencies)b::real[], %(errors)b::text[]
) AS a(delivery_id, workspace_id, endpoint_id, attempted_at, request_headers,
       request_body, status_code, response_body, latency_ms, error)
WHERE a.delivery_id IN (SELECT id FROM upd)
RETURNING delivery_id
"""

_FAILING = text(
    "UPDATE webhook_endpoints SET failing_since = now() "
    "WHERE id = ANY(CAST(:ids AS uuid[])) AND failing_since IS NULL"
)
_DISABLE = text(
    """
    UPDATE webhook_endpoints
    SET enabled = false, disabled_reason = :reason, disabled_at = now(), updated_at = now()
    WHERE id = ANY(CAST(:ids AS uuid[])) AND enabled
      AND (:reason = 'gone' OR failing_since <= now() - make_interval(secs => :after))
    RETURNING id, workspace_id, url, failing_since, disabled_at
    """
)


def _write_params(outcomes: Sequence[Outcome]) -> dict[str, list[Any]]:
    return {
        "ids": [o.delivery_id for o in outcomes],
        "attempts": [o.attempt for o in outcomes],
        "statuses": [o.status for o in outcomes],
        "next": [o.next_attempt_at for o in outcomes],
        "codes": [o.status_code for o in outcomes],
        "errors": [o.error for o in outcomes],
        "workspaces": [o.workspace_id for o in outcomes],
        "endpoints": [o.endpoint_id for o in outcomes],
        "attempted": [o.attempted_at for o in outcomes],
        "headers": [json.dumps(o.request_headers) for o in outcomes],
        "bodies": [o.request_body for o in outcomes],
        "responses": [o.response_body for o in outcomes],
        "latencies": [o.latency_ms for o in outcomes],
    }


async def _write(conn: psycopg.AsyncConnection[Any], outcomes: Sequence[Outcome]) -> set[int]:
    async with conn.cursor(binary=True) as cur:
        await cur.execute(_WRITE, _write_params(outcomes))
        rows = await cur.fetchall()
    return {int(r[0]) for r in rows}


def all_succeeded(outcomes: Sequence[Outcome]) -> bool:
    """Whether `write_succeeded` may record these (else `write_outcomes`)."""
    return all(o.status == "succeeded" for o in outcomes)


async def write_succeeded(
    conn: psycopg.AsyncConnection[Any], outcomes: Sequence[Outcome]
) -> set[int]:
    """`write_outcomes` for successful attempts only, on an autocommit
    connection: one statement (so one atomic commit) and one round trip,
    without a session's checkout, ping and transaction. Returns the delivery
    ids written."""
    if not outcomes:
        return set()
    if not all_succeeded(outcomes):
        raise ValueError("write_succeeded takes successful attempts only")
    return await _write(conn, outcomes)


async def write_outcomes(
    session: AsyncSession, outcomes: Sequence[Outcome], *, disable_after_seconds: float
) -> set[int]:
    """Record the outcomes still ours and the endpoints' health; returns the
    delivery ids written (the others were taken over by another sender)."""
    if not outcomes:
        return set()
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: psycopg.AsyncConnection[Any] = raw.driver_connection  # type: ignore[assignment]
    written = await _write(driver, outcomes)
    mine = [o for o in outcomes if o.delivery_id in written]
    healthy = {o.endpoint_id for o in mine if o.status == "succeeded"}
    failing = {o.endpoint_id for o in mine if o.status != "succeeded"} - healthy
    gone = {o.endpoint_id for o in mine if o.disable_reason == "gone"}
    if failing:
        await session.execute(_FAILING, {"ids": sorted(failing)})
    for reason, ids in (("gone", gone), ("failing", failing - gone)):
        if not ids:
            continue
        disabled = await session.execute(
            _DISABLE, {"ids": sorted(ids), "reason": reason, "after": disable_after_seconds}
        )
        for endpoint_id, workspace_id, url, failing_since, disabled_at in disabled.all():
            emit(
                session,
                workspace_id,
                "webhook.disabled",
                {
                    "webhook_id": str(endpoint_id),
                    "url": url,
                    "reason": reason,
                    "failing_since": failing_since,
                    "disabled_at": disabled_at,
                },
                subject_type="webhook",
                subject_id=endpoint_id,
            )
    return written
