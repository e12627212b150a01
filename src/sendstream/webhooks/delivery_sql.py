"""The webhook sender's statements: claim, heartbeat, release and the next
due time (raw psycopg, autocommit: one round trip per batch), and the
outcome write (a session: delivery states, attempts, endpoint health and
`webhook.disabled` events commit together).

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

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.outbox import emit

# Per endpoint (enabled, with due work, in random order so a cut-off batch
# does not always favour the same ones), up to its free concurrency: its
# `max_concurrency` less the deliveries in flight with a live lease, counted
# across every process. A FIFO endpoint's delivery waits while an earlier
# one with the same ordering key is pending or in flight. Expired leases
# (a sender that died) are taken over first. Columns: see `Claimed`.
CLAIM: Final = """
WITH ep AS (
    SELECT e.id, e.fifo,
           e.max_concurrency - (
               SELECT count(*) FROM webhook_deliveries b
               WHERE b.endpoint_id = e.id AND b.status = 'delivering'
                 AND b.lease_until >= now()
           ) AS room
    FROM webhook_endpoints e
    WHERE e.enabled AND EXISTS (
        SELECT 1 FROM webhook_deliveries d
        WHERE d.endpoint_id = e.id AND d.status = 'pending' AND d.next_attempt_at <= now()
    )
    ORDER BY random()
), fresh AS (
    SELECT c.id FROM ep CROSS JOIN LATERAL (
        SELECT d.id FROM webhook_deliveries d
        WHERE d.endpoint_id = ep.id AND d.status = 'pending' AND d.next_attempt_at <= now()
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
    SELECT d.id FROM webhook_deliveries d
    WHERE %(with_expired)s AND d.status = 'delivering' AND d.lease_until < now()
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT id FROM expired UNION ALL SELECT id FROM fresh LIMIT %(limit)s
)
UPDATE webhook_deliveries AS d
SET status = 'delivering',
    lease_until = now() + make_interval(secs => %(lease)s),
    attempts = d.attempts + 1
FROM picked, webhook_endpoints AS e, workspaces AS w
WHERE d.id = picked.id AND e.id = d.endpoint_id AND w.id = e.workspace_id
RETURNING d.id, d.workspace_id, d.endpoint_id, d.webhook_id, d.payload::text, d.attempts,
          d.created_at, e.url, e.updated_at, w.webhooks_allow_private_addresses
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


def claimed(row: tuple[Any, ...]) -> Claimed:
    (id_, ws, ep, wid, payload, attempts, created, url, updated, allow) = row
    return Claimed(
        id_, ws, ep, wid, str(payload).encode(), attempts, created, url, updated, bool(allow)
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


_WRITE = text(
    """
    WITH v AS (
        SELECT * FROM unnest(
            CAST(:ids AS bigint[]), CAST(:attempts AS int[]), CAST(:statuses AS text[]),
            CAST(:next AS timestamptz[]), CAST(:codes AS int[]), CAST(:errors AS text[])
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
        RETURNING d.id
    )
    INSERT INTO webhook_attempts (delivery_id, workspace_id, endpoint_id, attempted_at,
        request_headers, request_body, status_code, response_body, latency_ms, error)
    SELECT a.delivery_id, a.workspace_id, a.endpoint_id, a.attempted_at,
           CAST(a.request_headers AS jsonb), a.request_body, a.status_code, a.response_body,
           a.latency_ms, a.error
    FROM unnest(
        CAST(:ids AS bigint[]), CAST(:workspaces AS uuid[]), CAST(:endpoints AS uuid[]),
        CAST(:attempted AS timestamptz[]), CAST(:headers AS text[]), CAST(:bodies AS text[]),
        CAST(:codes AS int[]), CAST(:responses AS text[]), CAST(:latencies AS real[]),
        CAST(:errors AS text[])
    ) AS a(delivery_id, workspace_id, endpoint_id, attempted_at, request_headers,
           request_body, status_code, response_body, latency_ms, error)
    WHERE a.delivery_id IN (SELECT id FROM upd)
    RETURNING delivery_id
    """
)

_HEALTHY = text(
    "UPDATE webhook_endpoints SET failing_since = NULL "
    "WHERE id = ANY(CAST(:ids AS uuid[])) AND failing_since IS NOT NULL"
)
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


async def write_outcomes(
    session: AsyncSession, outcomes: Sequence[Outcome], *, disable_after_seconds: float
) -> set[int]:
    """Record the outcomes still ours and the endpoints' health; returns the
    delivery ids written (the others were taken over by another sender)."""
    if not outcomes:
        return set()
    rows = (
        await session.execute(
            _WRITE,
            {
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
            },
        )
    ).all()
    written = {int(r[0]) for r in rows}
    mine = [o for o in outcomes if o.delivery_id in written]
    healthy = {o.endpoint_id for o in mine if o.status == "succeeded"}
    failing = {o.endpoint_id for o in mine if o.status != "succeeded"} - healthy
    gone = {o.endpoint_id for o in mine if o.disable_reason == "gone"}
    if healthy:
        await session.execute(_HEALTHY, {"ids": sorted(healthy)})
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
