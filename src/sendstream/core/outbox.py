"""The transactional event outbox and its durable consumers.

Writing: `emit()` buffers an event on the session; `write_pending_events`, run
by `SyncSession.before_commit`, writes the buffer inside the committing
transaction. Per workspace it bumps `event_counters.last_position` (an upsert
whose row lock is held until commit), inserts the events with the consecutive
positions it got, and sends `NOTIFY sendstream_events, '<workspace id>'`.
Because the next writer to the same workspace waits on that row lock, positions
are handed out in commit order with no gaps: once a reader sees position p, it
has seen, or will never miss, every position below p. A rollback drops the
buffer, the counter bump and the events together.

Reading: a consumer is a name with an optional type filter and a durable
position per workspace. `read()` returns events after those positions, `ack()`
moves a position forward (never back), `seek()` moves it anywhere (replay), and
`lag()` says how far behind it is. `listen()`/`wait_for_events()` block on the
NOTIFY channel so a runner sleeps until there is something to read.

This module must not import `core.db` (db imports it); it takes sessions.
See docs/events.md for the contract consumers rely on.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal

import psycopg
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    event,
    false,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from sendstream.core.errors import InvalidInput, NotFound
from sendstream.models.event import ConsumerOffset, Event, EventConsumer, EventCounter

# NOTIFY channel; the payload is the workspace id whose events just committed.
CHANNEL = "sendstream_events"
_PENDING = "sendstream.outbox.pending"
_PSYCOPG_DIALECT = PGDialect_psycopg()  # type: ignore[no-untyped-call]

MAX_TYPE_LENGTH = 100
MAX_SUBJECT_TYPE_LENGTH = 50
MAX_SUBJECT_ID_LENGTH = 64
MAX_CONSUMER_NAME_LENGTH = 100


@dataclass(frozen=True)
class EventRecord:
    # An event is identified by (workspace_id, position).
    workspace_id: uuid.UUID
    # 1, 2, 3 ... per workspace, in commit order, without gaps.
    position: int
    type: str
    occurred_at: datetime
    subject_type: str | None
    subject_id: str | None
    data: dict[str, Any]


@dataclass(frozen=True)
class _Pending:
    workspace_id: uuid.UUID
    type: str
    occurred_at: datetime
    subject_type: str | None
    subject_id: str | None
    data: dict[str, Any]


# --- writing


def _sync_session(session: Session | AsyncSession) -> Session:
    return session.sync_session if isinstance(session, AsyncSession) else session


def json_default(value: Any) -> Any:
    """What event data's dates, ids and decimals become in JSON (`emit`);
    the `default=` of every `json.dumps` that writes event data or rows
    beside it, so events read the same whichever way they were written."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    raise TypeError(f"event data holds a {type(value).__name__}, which is not JSON")


def emit(
    session: Session | AsyncSession,
    workspace_id: uuid.UUID,
    type: str,
    data: Mapping[str, Any],
    *,
    subject_type: str | None = None,
    subject_id: str | uuid.UUID | None = None,
    occurred_at: datetime | None = None,
) -> None:
    """Record an event in `session`'s unit of work; it is written when (and
    only if) the session commits.

    `data` is copied through JSON now (UUIDs, datetimes and decimals become
    strings), so a non-JSON value fails here rather than at commit, and later
    changes to the caller's dict do not leak into the event."""
    if not type or len(type) > MAX_TYPE_LENGTH:
        raise ValueError(f"event type must be 1 to {MAX_TYPE_LENGTH} characters: {type!r}")
    if subject_type is not None and len(subject_type) > MAX_SUBJECT_TYPE_LENGTH:
        raise ValueError(f"subject_type longer than {MAX_SUBJECT_TYPE_LENGTH}: {subject_type!r}")
    subject = str(subject_id) if subject_id is not None else None
    if subject is not None and len(subject) > MAX_SUBJECT_ID_LENGTH:
        raise ValueError(f"subject_id longer than {MAX_SUBJECT_ID_LENGTH}: {subject!r}")
    if occurred_at is not None and occurred_at.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware")
    frozen = json.loads(json.dumps(dict(data), default=json_default))
    pending = _Pending(
        workspace_id=workspace_id,
        type=type,
        occurred_at=occurred_at or datetime.now(UTC),
        subject_type=subject_type,
        subject_id=subject,
        data=frozen,
    )
    _sync_session(session).info.setdefault(_PENDING, []).append(pending)


def pending_events(session: Session | AsyncSession) -> int:
    """How many events wait for this session's commit."""
    return len(_sync_session(session).info.get(_PENDING, ()))


def write_pending_events(session: Session) -> None:
    """`before_commit` hook: write the events buffered in this session."""
    pending: list[_Pending] = session.info.pop(_PENDING, [])
    if not pending:
        return
    by_workspace: dict[uuid.UUID, list[_Pending]] = {}
    for item in pending:
        by_workspace.setdefault(item.workspace_id, []).append(item)
    # One lock order for every transaction, so two commits that both touch
    # workspaces A and B cannot deadlock on each other's counters.
    for workspace_id in sorted(by_workspace):
        items = by_workspace[workspace_id]
        bump = pg_insert(EventCounter).values(workspace_id=workspace_id, last_position=len(items))
        bump = bump.on_conflict_do_update(
            index_elements=[EventCounter.workspace_id],
            set_={"last_position": EventCounter.last_position + bump.excluded.last_position},
        )
        last = session.execute(bump.returning(EventCounter.last_position)).scalar_one()
        first = last - len(items) + 1
        session.execute(
            insert(Event),
            [
                {
                    "workspace_id": workspace_id,
                    "position": first + offset,
                    "type": item.type,
                    "occurred_at": item.occurred_at,
                    "subject_type": item.subject_type,
                    "subject_id": item.subject_id,
                    "data": item.data,
                }
                for offset, item in enumerate(items)
            ],
        )
        session.execute(select(func.pg_notify(CHANNEL, str(workspace_id))))


_FROM_SELECT = """
WITH {ctes}outbox_src AS MATERIALIZED (
    SELECT s.type, s.subject_type, s.subject_id, s.data,
           row_number() OVER () AS n
    FROM ({select}) AS s
), outbox_total AS (
    SELECT count(*) AS c FROM outbox_src
), outbox_bump AS (
    INSERT INTO event_counters (workspace_id, last_position)
    SELECT :outbox_workspace_id, outbox_total.c FROM outbox_total WHERE outbox_total.c > 0
    ON CONFLICT (workspace_id)
        DO UPDATE SET last_position = event_counters.last_position + excluded.last_position
    RETURNING last_position
), outbox_ins AS (
    INSERT INTO events (workspace_id, position, type, occurred_at, subject_type, subject_id, data)
    SELECT :outbox_workspace_id, outbox_bump.last_position - outbox_total.c + outbox_src.n,
           outbox_src.type, now(), outbox_src.subject_type, outbox_src.subject_id,
           outbox_src.data
    FROM outbox_src, outbox_total, outbox_bump
    RETURNING type
)
SELECT type, count(*) FROM outbox_ins GROUP BY type
"""


# The same when the caller knows the row count and numbers the rows (`n`,
# 1..count): positions are allocated first, and the rows go straight from
# the SELECT into `events` instead of through a materialised copy. A number
# outside 1..count gets a NULL position, which `events` refuses; a count
# short of `:outbox_count` is refused after the statement (see below).
_FROM_NUMBERED = """
WITH {ctes}outbox_bump AS (
    INSERT INTO event_counters (workspace_id, last_position)
    VALUES (:outbox_workspace_id, :outbox_count)
    ON CONFLICT (workspace_id)
        DO UPDATE SET last_position = event_counters.last_position + excluded.last_position
    RETURNING last_position
), outbox_ins AS (
    INSERT INTO events (workspace_id, position, type, occurred_at, subject_type, subject_id, data)
    SELECT :outbox_workspace_id,
           CASE WHEN s.n BETWEEN 1 AND :outbox_count
                THEN outbox_bump.last_position - :outbox_count + s.n END,
           s.type, now(), s.subject_type, s.subject_id, s.data
    FROM ({select}) AS s, outbox_bump
    RETURNING type
)
SELECT type, count(*) FROM outbox_ins GROUP BY type
"""


async def write_events_from_select(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    select_sql: str,
    params: Mapping[str, Any] | None = None,
    *,
    ctes: str | None = None,
    count: int | None = None,
) -> dict[str, int]:
    """Write one event per row of `select_sql` in the session's current
    transaction, set-based, for bulk writers (contact imports) that would
    otherwise buffer a million `emit()` calls. Returns how many events of
    each type were written.

    `select_sql` must yield the columns `type`, `subject_type`, `subject_id`
    (text) and `data` (json or jsonb); events get consecutive positions in the order
    the rows come. `ctes` (`name AS (...), ...`) is put in front, so the
    change and its events can be one statement (`INSERT ... RETURNING` in a
    CTE, events selected from it). Positions are allocated exactly as
    `write_pending_events` does: one bump of `event_counters.last_position`
    by the row count, whose row lock is held until commit (so positions stay
    gapless and in commit order), then `NOTIFY`. Events `emit()`ted in the
    same transaction follow at commit with higher positions. Names starting
    `outbox_` (CTEs, and the `:outbox_*` parameters) are reserved.

    `count`, when the caller knows it, is how many rows `select_sql` yields,
    and `select_sql` then also yields `n`: the rows numbered 1..count, in
    the order their positions go. The rows are then not copied first (bulk
    writers save about a sixth of the insert's cost). A SELECT that breaks
    that promise fails (a number out of range) or raises `ValueError` (fewer
    rows); either way the caller's transaction must be rolled back, and no
    gap or duplicate position can commit."""
    if count is not None and count <= 0:
        return {}
    statement, bound = _events_statement(workspace_id, select_sql, params, ctes, count)
    rows = (await session.execute(text(statement), bound)).all()
    written = _written(rows, count)
    if written:
        await session.execute(select(func.pg_notify(CHANNEL, str(workspace_id))))
    return written


async def write_events_from_select_on(
    conn: psycopg.AsyncConnection[Any],
    workspace_id: uuid.UUID,
    select_sql: str,
    params: Mapping[str, Any] | None = None,
    *,
    ctes: str | None = None,
    count: int | None = None,
) -> dict[str, int]:
    """`write_events_from_select` on a psycopg connection, inside a
    transaction the caller holds open: the same statement and guarantees,
    for a hot loop that keeps its own connection (the delivery loop writes
    its outcomes and their events many times a second; an ORM session
    around each write cost more than the statement). `select_sql` and
    `ctes` use `:name` parameters, as for the session variant."""
    if count is not None and count <= 0:
        return {}
    statement, bound = _events_statement(workspace_id, select_sql, params, ctes, count)
    cur = await conn.execute(_psycopg_sql(statement), bound, prepare=True)
    written = _written(await cur.fetchall(), count)
    if written:
        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(workspace_id)))
    return written


def _events_statement(
    workspace_id: uuid.UUID,
    select_sql: str,
    params: Mapping[str, Any] | None,
    ctes: str | None,
    count: int | None,
) -> tuple[str, dict[str, Any]]:
    with_ctes = f"{ctes}, " if ctes else ""
    bound = {**(params or {}), "outbox_workspace_id": workspace_id}
    if count is not None:
        bound["outbox_count"] = count
        return _FROM_NUMBERED.format(ctes=with_ctes, select=select_sql), bound
    return _FROM_SELECT.format(ctes=with_ctes, select=select_sql), bound


def _written(rows: Sequence[Any], count: int | None) -> dict[str, int]:
    written = {str(kind): int(n) for kind, n in rows}
    if count is not None and sum(written.values()) != count:
        raise ValueError(
            f"write_events_from_select: the SELECT yielded {sum(written.values())} rows, "
            f"not the {count} it was given; roll the transaction back"
        )
    return written


@lru_cache(maxsize=64)
def _psycopg_sql(statement: str) -> str:
    """`:name` parameters as psycopg's `%(name)s` (and `%` doubled), by
    SQLAlchemy's own `text()` parser, so both variants read the SQL alike."""
    return str(text(statement).compile(dialect=_PSYCOPG_DIALECT))


@event.listens_for(Session, "after_transaction_end")
def _drop_pending(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction ended: committed (buffer already written) or
    # rolled back (its events must never appear). Savepoints keep the buffer.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


# --- consumers


def _validate_patterns(types: list[str]) -> list[str]:
    for pattern in types:
        body = pattern.removesuffix(".*") if pattern.endswith(".*") else pattern
        if not body or "*" in body or len(pattern) > MAX_TYPE_LENGTH:
            raise InvalidInput(
                f"types: {pattern!r} is neither an event type nor a `prefix.*` pattern.",
                code="invalid_event_type_filter",
            )
    return types


def _type_filter(types: list[str]) -> ColumnElement[bool]:
    if not types:
        return true()
    exact = [t for t in types if not t.endswith(".*")]
    prefixes = [t[:-1] for t in types if t.endswith(".*")]  # keep the dot
    clauses: list[ColumnElement[bool]] = []
    if exact:
        clauses.append(Event.type.in_(exact))
    clauses.extend(Event.type.startswith(p, autoescape=True) for p in prefixes)
    return or_(false(), *clauses)


async def register_consumer(
    session: AsyncSession,
    name: str,
    *,
    types: list[str] | None = None,
    start: Literal["beginning", "end"] = "beginning",
) -> None:
    """Create the consumer, or update its type filter if it exists (its
    positions are kept). A new consumer starting at "end" skips every event
    committed so far; at "beginning" it reads the whole history."""
    if not name or len(name) > MAX_CONSUMER_NAME_LENGTH:
        raise InvalidInput(
            f"name: a consumer name is 1 to {MAX_CONSUMER_NAME_LENGTH} characters.",
            code="invalid_event_consumer",
        )
    patterns = _validate_patterns(list(types or []))
    upsert = pg_insert(EventConsumer).values(name=name, types=patterns)
    upsert = upsert.on_conflict_do_update(
        index_elements=[EventConsumer.name], set_={"types": upsert.excluded.types}
    )
    # xmax is 0 only on a row this statement inserted rather than updated.
    created: bool = (
        await session.execute(upsert.returning(literal_column("xmax = 0")))
    ).scalar_one()
    if created and start == "end":
        await session.execute(
            pg_insert(ConsumerOffset)
            .from_select(
                ["consumer", "workspace_id", "position"],
                select(
                    literal(name, String()),
                    EventCounter.workspace_id,
                    EventCounter.last_position,
                ),
            )
            .on_conflict_do_nothing()
        )


async def _consumer_types(session: AsyncSession, consumer: str) -> list[str]:
    types = (
        await session.execute(select(EventConsumer.types).where(EventConsumer.name == consumer))
    ).scalar_one_or_none()
    if types is None:
        raise NotFound(
            f"No event consumer named {consumer!r}; register it first.",
            code="event_consumer_not_found",
        )
    return list(types)


async def read(
    session: AsyncSession,
    consumer: str,
    *,
    limit: int = 500,
    workspace_id: uuid.UUID | None = None,
) -> list[EventRecord]:
    """Up to `limit` events after the consumer's positions, ordered by
    workspace then position, filtered by the consumer's types.

    Reading does not move positions: `ack` what was handled. The one exception
    keeps filtered consumers from rescanning forever: when a workspace's new
    events hold nothing the filter wants, the position moves past them here
    (in this session's transaction), as there is nothing to hand over."""
    if limit < 1:
        raise ValueError("limit must be >= 1")
    types = await _consumer_types(session, consumer)
    acked = func.coalesce(ConsumerOffset.position, 0)
    # Only workspaces whose counter is ahead of this consumer are read, so an
    # idle tenant costs one row of this join, not an index probe on events.
    behind = (
        select(EventCounter.workspace_id, acked.label("acked"), EventCounter.last_position)
        .outerjoin(
            ConsumerOffset,
            and_(
                ConsumerOffset.workspace_id == EventCounter.workspace_id,
                ConsumerOffset.consumer == consumer,
            ),
        )
        .where(EventCounter.last_position > acked)
        .order_by(EventCounter.workspace_id)
    )
    if workspace_id is not None:
        behind = behind.where(EventCounter.workspace_id == workspace_id)
    wanted = _type_filter(types)
    records: list[EventRecord] = []
    for ws, after, last in (await session.execute(behind)).all():
        rows = (
            await session.execute(
                select(Event)
                .where(
                    Event.workspace_id == ws,
                    Event.position > after,
                    # Bounded by the counter read above: every event up to
                    # `last` is committed and visible, which makes the skip
                    # below safe.
                    Event.position <= last,
                    wanted,
                )
                .order_by(Event.position)
                .limit(limit - len(records))
            )
        ).scalars()
        found = [_record(row) for row in rows]
        if not found and types:
            await _move(session, consumer, ws, last, forward_only=True)
        records.extend(found)
        if len(records) >= limit:
            break
    return records


async def skip_uninterested(
    session: AsyncSession, consumer: str, interested: Select[uuid.UUID]
) -> None:
    """Move `consumer` to the newest position of every workspace that is not
    among `interested` (a SELECT of workspace ids), without reading its
    events: a consumer that serves few workspaces (webhooks: those with an
    endpoint) must not read every event of every other one.

    One statement, so one snapshot: the counters it reads and the rows
    `interested` sees are of the same moment."""
    acked = func.coalesce(ConsumerOffset.position, 0)
    behind = (
        select(literal(consumer, String()), EventCounter.workspace_id, EventCounter.last_position)
        .outerjoin(
            ConsumerOffset,
            and_(
                ConsumerOffset.workspace_id == EventCounter.workspace_id,
                ConsumerOffset.consumer == consumer,
            ),
        )
        .where(
            EventCounter.last_position > acked,
            EventCounter.workspace_id.not_in(interested),
            # An unregistered consumer is left to `read` to report.
            select(EventConsumer.name).where(EventConsumer.name == consumer).exists(),
        )
    )
    upsert = pg_insert(ConsumerOffset).from_select(["consumer", "workspace_id", "position"], behind)
    await session.execute(
        upsert.on_conflict_do_update(
            index_elements=[ConsumerOffset.consumer, ConsumerOffset.workspace_id],
            set_={
                "position": func.greatest(ConsumerOffset.position, upsert.excluded.position),
                "updated_at": func.now(),
            },
        )
    )


def _record(row: Event) -> EventRecord:
    return EventRecord(
        workspace_id=row.workspace_id,
        position=row.position,
        type=row.type,
        occurred_at=row.occurred_at,
        subject_type=row.subject_type,
        subject_id=row.subject_id,
        data=row.data,
    )


async def _move(
    session: AsyncSession,
    consumer: str,
    workspace_id: uuid.UUID,
    position: int,
    *,
    forward_only: bool,
) -> None:
    upsert = pg_insert(ConsumerOffset).values(
        consumer=consumer, workspace_id=workspace_id, position=position
    )
    new_position = (
        func.greatest(ConsumerOffset.position, upsert.excluded.position)
        if forward_only
        else upsert.excluded.position
    )
    await session.execute(
        upsert.on_conflict_do_update(
            index_elements=[ConsumerOffset.consumer, ConsumerOffset.workspace_id],
            set_={"position": new_position, "updated_at": func.now()},
        )
    )


async def _check_position(
    session: AsyncSession, consumer: str, workspace_id: uuid.UUID, position: int
) -> None:
    await _consumer_types(session, consumer)
    last = (
        await session.execute(
            select(EventCounter.last_position).where(EventCounter.workspace_id == workspace_id)
        )
    ).scalar_one_or_none() or 0
    if not 0 <= position <= last:
        # Past the end would silently skip events not yet written.
        raise InvalidInput(
            f"position: {position} is outside 0..{last}, the positions workspace "
            f"{workspace_id} has.",
            code="invalid_event_position",
        )


async def ack(session: AsyncSession, consumer: str, workspace_id: uuid.UUID, position: int) -> None:
    """Record that `consumer` handled every event of the workspace up to
    `position`. Never moves the position back (a late ack from a slower
    runner is harmless); use `seek` for that."""
    await _check_position(session, consumer, workspace_id, position)
    await _move(session, consumer, workspace_id, position, forward_only=True)


async def seek(
    session: AsyncSession, consumer: str, workspace_id: uuid.UUID, position: int
) -> None:
    """Set `consumer`'s position in the workspace, backwards to replay events
    after `position` (0: from the start) or forwards to skip them."""
    await _check_position(session, consumer, workspace_id, position)
    await _move(session, consumer, workspace_id, position, forward_only=False)


async def lag(session: AsyncSession, consumer: str) -> dict[uuid.UUID, int]:
    """Events committed but not acked, per workspace that has any events."""
    await _consumer_types(session, consumer)
    rows = await session.execute(
        select(
            EventCounter.workspace_id,
            EventCounter.last_position - func.coalesce(ConsumerOffset.position, 0),
        ).outerjoin(
            ConsumerOffset,
            and_(
                ConsumerOffset.workspace_id == EventCounter.workspace_id,
                ConsumerOffset.consumer == consumer,
            ),
        )
    )
    return {ws: int(behind) for ws, behind in rows.all()}


# --- waking up


async def listen(conn: psycopg.AsyncConnection[Any]) -> None:
    """Subscribe `conn` (autocommit) to the channel. Do it before reading, so
    an event committed between the read and the wait still wakes you."""
    if not conn.autocommit:
        raise ValueError("LISTEN needs an autocommit connection to take effect at once")
    await conn.execute(f"LISTEN {CHANNEL}")


# The timeout is psycopg's own (`notifies(timeout=)`), which ends the wait
# cleanly instead of cancelling a generator mid-read.
async def wait_for_events(
    conn: psycopg.AsyncConnection[Any],
    timeout: float,  # noqa: ASYNC109
) -> set[uuid.UUID]:
    """Block until events commit somewhere or `timeout` seconds pass; returns
    the workspaces notified (empty on timeout). Listens first if needed."""
    await listen(conn)
    woken: set[uuid.UUID] = set()
    async for note in conn.notifies(timeout=timeout, stop_after=1):
        woken.add(uuid.UUID(note.payload))
    return woken
