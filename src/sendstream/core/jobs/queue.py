"""The job queue's SQL: enqueue in the caller's transaction, and the claim,
heartbeat, completion, retry, release and reaping statements the worker runs.

Enqueue goes through the caller's SQLAlchemy session so a job is written, and
its NOTIFY sent, only if the caller's transaction commits. The worker's
statements run on raw psycopg connections in autocommit: they are the hot path,
each is one round trip for a whole batch, and psycopg prepares them
server-side after a few executions.

Every statement that ends a run is guarded by `state = 'running' AND locked_by
= <this worker>`, so a worker whose lease expired (or whose job was cancelled)
can never overwrite what happened to the job since.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.jobs.registry import find_kind
from sendstream.core.settings import get_settings

# LISTEN/NOTIFY channel (spelled out in the statements below, which keeps them
# plain literals); the payload is the job kind (informational: any
# notify wakes a worker, since any worker may run any kind).
CHANNEL: Final = "sendstream_jobs"

QUEUED: Final = "queued"
RUNNING: Final = "running"
SUCCEEDED: Final = "succeeded"
DEAD: Final = "dead"
CANCELLED: Final = "cancelled"
STATES: Final = (QUEUED, RUNNING, SUCCEEDED, DEAD, CANCELLED)
FINISHED_STATES: Final = (SUCCEEDED, DEAD, CANCELLED)

_ENQUEUE = text(
    """
    WITH ins AS (
        INSERT INTO jobs (workspace_id, kind, payload, priority, run_at, max_attempts, unique_key)
        VALUES (:workspace_id, :kind, CAST(:payload AS jsonb), :priority,
                coalesce(CAST(:run_at AS timestamptz), now()) + make_interval(secs => :delay),
                :max_attempts, :unique_key)
        ON CONFLICT (unique_key)
            WHERE state IN ('queued', 'running') AND unique_key IS NOT NULL
            DO NOTHING
        RETURNING id
    )
    SELECT ins.id FROM ins CROSS JOIN LATERAL (SELECT pg_notify('sendstream_jobs', :kind)) AS n
    """
)

_ENQUEUE_MANY = text(
    """
    WITH ins AS (
        INSERT INTO jobs (workspace_id, kind, payload, priority, run_at, max_attempts, unique_key)
        SELECT :workspace_id, :kind, CAST(t.payload AS jsonb), :priority,
               coalesce(CAST(:run_at AS timestamptz), now()) + make_interval(secs => :delay),
               :max_attempts, t.unique_key
        FROM unnest(CAST(:payloads AS text[]), CAST(:unique_keys AS text[]))
             AS t(payload, unique_key)
        ON CONFLICT (unique_key)
            WHERE state IN ('queued', 'running') AND unique_key IS NOT NULL
            DO NOTHING
        RETURNING id
    ), n AS (
        SELECT pg_notify('sendstream_jobs', :kind) FROM (SELECT 1 FROM ins LIMIT 1) AS any_inserted
    )
    SELECT id FROM ins, (SELECT count(*) FROM n) AS notified
    """
)

_LIVE_BY_UNIQUE_KEY = text(
    """
    SELECT id FROM jobs
    WHERE unique_key = :unique_key AND state IN ('queued', 'running') AND unique_key IS NOT NULL
    LIMIT 1
    """
)


def _defaults(kind: str, priority: int | None, max_attempts: int | None) -> tuple[int, int]:
    registered = find_kind(kind)
    if priority is None:
        priority = registered.priority if registered else 100
    if max_attempts is None:
        max_attempts = (
            registered.max_attempts
            if registered and registered.max_attempts
            else get_settings().jobs.default_max_attempts
        )
    return priority, max_attempts


def _delay_seconds(delay: timedelta | float | None) -> float:
    if delay is None:
        return 0.0
    return delay.total_seconds() if isinstance(delay, timedelta) else float(delay)


async def enqueue(
    session: AsyncSession,
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    workspace_id: uuid.UUID | None = None,
    run_at: datetime | None = None,
    delay: timedelta | float | None = None,
    unique_key: str | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
) -> int:
    """Queue one job in the caller's transaction (no commit) and return its id.

    When `unique_key` belongs to a job still queued or running, nothing is
    written and that job's id is returned: the same logical job is never queued
    twice. Keys are global, so include the workspace in them. Workers are woken
    by a NOTIFY that PostgreSQL delivers only if this transaction commits.
    """
    priority, max_attempts = _defaults(kind, priority, max_attempts)
    params = {
        "workspace_id": workspace_id,
        "kind": kind,
        "payload": json.dumps(payload or {}),
        "priority": priority,
        "run_at": run_at,
        "delay": _delay_seconds(delay),
        "max_attempts": max_attempts,
        "unique_key": unique_key,
    }
    job_id = (await session.execute(_ENQUEUE, params)).scalar_one_or_none()
    if job_id is None:
        # The key is taken. This statement runs with a fresh snapshot, so it
        # sees the live job even when that job committed while we waited on it.
        job_id = (
            await session.execute(_LIVE_BY_UNIQUE_KEY, {"unique_key": unique_key})
        ).scalar_one_or_none()
        if job_id is None:
            # The holder finished in between; the key is free again.
            return await enqueue(
                session,
                kind,
                payload,
                workspace_id=workspace_id,
                run_at=run_at,
                delay=delay,
                unique_key=unique_key,
                priority=priority,
                max_attempts=max_attempts,
            )
    return int(job_id)


async def enqueue_many(
    session: AsyncSession,
    kind: str,
    payloads: Sequence[dict[str, Any]],
    *,
    unique_keys: Sequence[str | None] | None = None,
    workspace_id: uuid.UUID | None = None,
    run_at: datetime | None = None,
    delay: timedelta | float | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
) -> list[int]:
    """Queue many jobs of one kind in one statement, in the caller's
    transaction. Returns the ids of the jobs written; a payload whose unique key
    is already live is skipped (its id is not returned). One NOTIFY per call."""
    if unique_keys is not None and len(unique_keys) != len(payloads):
        raise ValueError("unique_keys must have one entry per payload")
    if not payloads:
        return []
    priority, max_attempts = _defaults(kind, priority, max_attempts)
    params = {
        "workspace_id": workspace_id,
        "kind": kind,
        "payloads": [json.dumps(p) for p in payloads],
        "unique_keys": list(unique_keys) if unique_keys is not None else [None] * len(payloads),
        "priority": priority,
        "run_at": run_at,
        "delay": _delay_seconds(delay),
        "max_attempts": max_attempts,
    }
    return [int(r) for r in (await session.execute(_ENQUEUE_MANY, params)).scalars()]


# --- worker statements (raw psycopg, `%s` placeholders, autocommit)

# Claims up to N runnable jobs in priority order; a row another worker is
# claiming right now is skipped, never waited for.
CLAIM: Final = """
UPDATE jobs AS j
SET state = 'running', attempts = j.attempts + 1, locked_by = %(worker)s,
    lease_until = now() + make_interval(secs => %(lease)s), updated_at = now()
FROM (
    SELECT id FROM jobs
    WHERE state = 'queued' AND run_at <= now()
    ORDER BY priority, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
) AS c
WHERE j.id = c.id
RETURNING j.id, j.kind, j.payload, j.attempts, j.max_attempts, j.workspace_id
"""

# Seconds until the next queued job is due (None: nothing queued), so an idle
# worker's fallback timer fires exactly when a scheduled job becomes runnable.
NEXT_DUE: Final = """
SELECT extract(epoch FROM min(run_at) - now())::float8 FROM jobs WHERE state = 'queued'
"""

# Extends the leases this worker still holds; the ids it returns are the jobs
# still ours. A held id missing from the result was cancelled or lost.
HEARTBEAT: Final = """
UPDATE jobs SET lease_until = now() + make_interval(secs => %(lease)s)
WHERE id = ANY(%(ids)s::bigint[]) AND state = 'running' AND locked_by = %(worker)s
RETURNING id
"""

COMPLETE_MANY: Final = """
UPDATE jobs SET state = 'succeeded', finished_at = now(), updated_at = now(), lease_until = NULL
WHERE id = ANY(%(ids)s::bigint[]) AND state = 'running' AND locked_by = %(worker)s
"""

# The same for one job, inside the handler's own transaction (SQLAlchemy).
COMPLETE_ONE: Final = text(
    """
    UPDATE jobs SET state = 'succeeded', finished_at = now(), updated_at = now(),
                    lease_until = NULL
    WHERE id = :id AND state = 'running' AND locked_by = :worker
    """
)

# Ends one attempt that did not succeed: back to queued at `run_at` (retry),
# or finished as dead / cancelled.
FINISH_ATTEMPT: Final = """
UPDATE jobs AS j
SET state = p.state, last_error = %(error)s, lease_until = NULL, updated_at = now(),
    run_at = CASE WHEN p.state = 'queued'
                  THEN now() + make_interval(secs => %(delay)s) ELSE j.run_at END,
    locked_by = CASE WHEN p.state = 'queued' THEN NULL ELSE j.locked_by END,
    finished_at = CASE WHEN p.state = 'queued' THEN NULL ELSE now() END
FROM (SELECT CAST(%(state)s AS varchar) AS state) AS p
WHERE j.id = %(id)s AND j.state = 'running' AND j.locked_by = %(worker)s
"""

# Gives jobs back without burning the attempt (graceful shutdown).
RELEASE: Final = """
WITH released AS (
    UPDATE jobs SET state = 'queued', attempts = greatest(attempts - 1, 0), lease_until = NULL,
                    locked_by = NULL, updated_at = now()
    WHERE id = ANY(%(ids)s::bigint[]) AND state = 'running' AND locked_by = %(worker)s
    RETURNING id
)
SELECT count(*), pg_notify('sendstream_jobs', 'released') FROM released
"""

# Jobs whose worker stopped heartbeating: the attempt it made counts; with
# attempts left they run again at once, otherwise they are dead.
REAP_EXPIRED: Final = """
WITH reaped AS (
    UPDATE jobs AS j
    SET state = CASE WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'queued' END,
        last_error = 'lease expired: worker ' || coalesce(j.locked_by, '?')
                     || ' stopped heartbeating (died or lost the database)',
        finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END,
        locked_by = NULL, lease_until = NULL, run_at = now(), updated_at = now()
    FROM (
        SELECT id FROM jobs
        WHERE state = 'running' AND lease_until < now()
        LIMIT 1000
        FOR UPDATE SKIP LOCKED
    ) AS e
    WHERE j.id = e.id
    RETURNING j.id, j.state
), n AS (
    SELECT pg_notify('sendstream_jobs', 'reaped')
    FROM (SELECT 1 FROM reaped WHERE state = 'queued' LIMIT 1) AS any_requeued
)
SELECT
    count(*) FILTER (WHERE state = 'queued'),
    count(*) FILTER (WHERE state = 'dead'),
    (SELECT count(*) FROM n)
FROM reaped
"""

# Finished jobs past retention, a slice at a time so one cleanup never holds
# long locks.
DELETE_EXPIRED: Final = """
DELETE FROM jobs WHERE id IN (
    SELECT id FROM jobs
    WHERE finished_at IS NOT NULL AND finished_at < now() - make_interval(hours => %(hours)s)
    LIMIT 5000
    FOR UPDATE SKIP LOCKED
)
"""


async def notify(session: AsyncSession, kind: str) -> None:
    """Wake workers when the caller's transaction commits (after an operator
    puts a job back in the queue)."""
    await session.execute(text("SELECT pg_notify('sendstream_jobs', :kind)"), {"kind": kind})
