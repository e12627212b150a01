"""The set-based half of an import: one chunk of checked rows goes into the
database in one transaction.

1. COPY the rows into a temporary staging table (`ON COMMIT DROP`).
2. One statement merges them into `contacts`: `INSERT ... ON CONFLICT
   (workspace_id, email_key) DO UPDATE ... WHERE` something changed (or a
   plain INSERT / UPDATE for create_only / update_only), reading the old rows
   first in the same statement (`FOR UPDATE`) so `contact.updated` can carry
   old and new values computed in SQL. What happened to each contact lands in
   a second temporary table as the event it causes.
3. With a list: new subscriptions, their consent records (source `import`)
   and `contact.subscribed` events, set-based too.
4. The events wait in a second temporary table (`contact_import_events`,
   data and order settled) until `write_staged_events` writes them with
   `outbox.write_events_from_select` (positions allocated like every other
   event) as the last statement before the commit: two chunks can merge at
   the same time on two connections, and only the short events insert waits
   for the earlier chunk's commit (the event counter's row lock). The
   rejected rows are COPYed into `contact_import_errors`.

Semantics, matching the API: empty cells never overwrite (built-ins are
`coalesce`d), attributes merge per key (`||`), tags are added to the
contact's set (an import never removes a tag), field defaults apply to
contacts the import creates. A contact whose values would not change is not
written and emits nothing.
"""

# SQL here is assembled from module constants and field keys (quoted by
# `_literal`, and limited to [a-z0-9_] by the fields API); values always go
# as bound parameters.
# ruff: noqa: S608

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from psycopg import AsyncConnection
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.contacts.imports_parse import TAG_JOIN, FieldSpec, RowError, shown
from sendstream.core.outbox import write_events_from_select

STAGE: Final = "contact_import_stage"
EVENTS: Final = "contact_import_events"
BUILTIN_COLUMNS: Final = (
    "row",
    "email",
    "email_key",
    "external_id",
    "first_name",
    "last_name",
    "timezone",
    "locale",
    "tags",
)
# jsonb_build_object takes at most 100 arguments: 50 key/value pairs.
_PAIRS_PER_CALL: Final = 40
_STAGE_TYPES: Final = {
    "number": "numeric",
    "boolean": "boolean",
    "text_list": "jsonb",
    "json": "jsonb",
}
# RFC 9562 version 7 UUIDs made in SQL (PostgreSQL 15 has no uuidv7()): the
# millisecond clock over the first 48 bits of a random UUID, version bits set.
_UUID7: Final = (
    "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing "
    "substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) "
    "FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid"
)
_BUILTIN_TEXT: Final = ("external_id", "first_name", "last_name", "timezone", "locale")


@dataclass(frozen=True)
class MergeOptions:
    workspace_id: uuid.UUID
    import_id: uuid.UUID
    mode: str
    list_id: uuid.UUID | None
    actor: str | None
    consent_text: str | None
    # Custom fields of the stage columns after the built-ins, in order.
    fields: Sequence[FieldSpec]
    # Defaults of the workspace's fields, applied to contacts created.
    defaults: dict[str, Any]
    # One `contact.created` (and `contact.subscribed`) per contact the import
    # creates (events "each"), or none: `contact_import.completed` announces
    # them together (events "summary"). Changes to contacts that existed
    # before the import are announced one by one either way.
    each_created: bool = False


@dataclass
class MergeCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    subscribed: int = 0
    # Events staged for `write_staged_events`.
    events: int = 0
    # Rows the database turned away (an external id another contact has).
    rejected: list[RowError] = field(default_factory=list)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _column(index: int) -> str:
    return f"f{index}"


def _attributes_sql(fields: Sequence[FieldSpec], alias: str) -> str:
    """The row's attributes as jsonb from its stage columns: every non-null
    value under its field key."""
    plain = [(i, f) for i, f in enumerate(fields) if f.type not in ("text_list", "json")]
    nested = [(i, f) for i, f in enumerate(fields) if f.type in ("text_list", "json")]
    parts: list[str] = []
    for start in range(0, len(plain), _PAIRS_PER_CALL):
        pairs = ", ".join(
            f"{_literal(f.key)}, {alias}.{_column(i)}"
            for i, f in plain[start : start + _PAIRS_PER_CALL]
        )
        parts.append(f"jsonb_strip_nulls(jsonb_build_object({pairs}))")
    for i, f in nested:
        col = f"{alias}.{_column(i)}"
        parts.append(
            f"CASE WHEN {col} IS NULL THEN '{{}}'::jsonb "
            f"ELSE jsonb_build_object({_literal(f.key)}, {col}) END"
        )
    return " || ".join(parts) if parts else "'{}'::jsonb"


def _flat_sql(alias: str) -> str:
    """A contact's comparable values as one flat object (attributes as
    `attributes.<key>`), the shape `contact.updated` reports changes in."""
    builtins = ", ".join(f"'{c}', {alias}.{c}" for c in _BUILTIN_TEXT)
    return (
        f"(jsonb_build_object({builtins}, 'tags', to_jsonb({alias}.tags)) || coalesce("
        f"(SELECT jsonb_object_agg('attributes.' || a.key, a.value) "
        f"FROM jsonb_each({alias}.attributes) AS a), '{{}}'::jsonb))"
    )


def _changes_sql() -> str:
    return (
        "(SELECT coalesce(jsonb_object_agg(k, jsonb_build_object('old', o.v, 'new', n.v)), "
        f"'{{}}'::jsonb) FROM jsonb_each({_flat_sql('up')}) AS n(k, v) "
        f"FULL JOIN jsonb_each({_flat_sql('old')}) AS o(k, v) USING (k) "
        "WHERE o.v IS DISTINCT FROM n.v)"
    )


def _new_values(src: str) -> dict[str, str]:
    """SET expressions: what a contact becomes when the row `src` is applied."""
    values = {c: f"coalesce({src}.{c}, c.{c})" for c in _BUILTIN_TEXT}
    values["attributes"] = f"c.attributes || {src}.attributes"
    values["tags"] = (
        f"c.tags || ARRAY(SELECT t FROM unnest({src}.tags) AS t WHERE t <> ALL (c.tags))"
    )
    return values


def _changed(src: str) -> str:
    columns = ", ".join(f"c.{c}" for c in _BUILTIN_TEXT)
    merged = ", ".join(f"coalesce({src}.{c}, c.{c})" for c in _BUILTIN_TEXT)
    return (
        f"({columns}) IS DISTINCT FROM ({merged}) "
        f"OR (c.attributes || {src}.attributes) <> c.attributes "
        f"OR NOT (c.tags @> {src}.tags)"
    )


_RETURNING: Final = (
    "c.id, c.email, c.email_key, c.external_id, c.first_name, c.last_name, c.timezone, "
    "c.locale, c.status, c.attributes, c.tags, c.created_at, c.updated_at"
)


def _probe(alias: str) -> str:
    """A lookup of the staged row `alias` among the workspace's contacts, one
    index probe per row: `OFFSET 0` keeps the planner from turning it into a
    join that reads every contact of the workspace (its row estimates for a
    chunk are guesses)."""
    return (
        f"SELECT x.id, x.email FROM contacts AS x WHERE x.workspace_id = :ws "
        f"AND x.email_key = {alias}.email_key OFFSET 0"
    )


def merge_sql(options: MergeOptions) -> tuple[str, str]:
    """The CTEs that apply the staged rows in `options.mode`, and the SELECT
    of the events they cause (for `write_events_from_select`)."""
    with_defaults = bool(options.defaults) and options.mode != "update_only"
    existing = (
        f", (SELECT x.id FROM ({_probe('s')}) AS x) AS existing_id"
        if with_defaults and options.mode == "upsert"
        else ""
    )
    src = (
        "src AS MATERIALIZED (SELECT s.email, s.email_key, "
        + ", ".join(f"s.{c}" for c in _BUILTIN_TEXT)
        + f", coalesce(string_to_array(s.tags, {_literal(TAG_JOIN)}), '{{}}') AS tags, "
        f"{_attributes_sql(options.fields, 's')} AS attributes{existing} FROM {STAGE} AS s)"
    )
    insert_columns = (
        "id, workspace_id, email, email_key, " + ", ".join(_BUILTIN_TEXT) + ", attributes, tags"
    )
    if with_defaults and options.mode == "upsert":
        attributes = (
            "CASE WHEN src.existing_id IS NULL THEN CAST(:defaults AS jsonb) || src.attributes "
            "ELSE src.attributes END"
        )
    elif with_defaults:
        attributes = "CAST(:defaults AS jsonb) || src.attributes"
    else:
        attributes = "src.attributes"
    insert_select = (
        f"INSERT INTO contacts AS c ({insert_columns}) SELECT {_UUID7}, :ws, src.email, "
        "src.email_key, "
        + ", ".join(f"src.{c}" for c in _BUILTIN_TEXT)
        + f", {attributes}, src.tags FROM src"
    )
    if options.mode == "upsert":
        sets = ", ".join(f"{k} = {v}" for k, v in _new_values("excluded").items())
        up = (
            f", up AS ({insert_select} ON CONFLICT (workspace_id, email_key) DO UPDATE SET "
            f"{sets}, updated_at = now() WHERE {_changed('excluded')} "
            f"RETURNING {_RETURNING}, (c.xmax = 0) AS created)"
        )
    elif options.mode == "create_only":
        up = (
            f", up AS ({insert_select} ON CONFLICT (workspace_id, email_key) DO NOTHING "
            f"RETURNING {_RETURNING}, true AS created)"
        )
    else:
        sets = ", ".join(f"{k} = {v}" for k, v in _new_values("src").items())
        up = (
            ", matched AS MATERIALIZED (SELECT src.email_key, x.id FROM src "
            f"CROSS JOIN LATERAL ({_probe('src')}) AS x)"
            f", up AS (UPDATE contacts AS c SET {sets}, updated_at = now() "
            "FROM src JOIN matched USING (email_key) "
            f"WHERE c.id = matched.id AND ({_changed('src')}) "
            f"RETURNING {_RETURNING}, false AS created)"
        )
    # Old values of the contacts the statement updated: every part of one
    # statement reads the snapshot taken before it, so `contacts` here still
    # holds them. Probed by primary key, for updated rows only.
    old = (
        ", old AS MATERIALIZED (SELECT o.* FROM up CROSS JOIN LATERAL ("
        "SELECT c.id, "
        + ", ".join(f"c.{c}" for c in _BUILTIN_TEXT)
        + ", c.attributes, c.tags FROM contacts AS c WHERE c.id = up.id OFFSET 0) AS o "
        "WHERE NOT up.created)"
    )
    # `contact.created` from an import names the contact and the import
    # (as HubSpot's creation webhooks do); it does not copy a million
    # contacts into the log: that copy was a fifth of a first import's cost.
    # `contact.updated` carries its changes as from the API.
    events = (
        "SELECT CASE WHEN up.created THEN 'contact.created' ELSE 'contact.updated' END AS type, "
        "'contact' AS subject_type, up.id::text AS subject_id, "
        "CASE WHEN up.created THEN json_build_object('id', up.id, 'email', up.email, "
        "'source', 'import', 'import_id', CAST(:import_id AS text)) "
        "ELSE json_build_object('id', up.id, 'email', up.email, "
        f"'changes', {_changes_sql()}, 'source', 'import', "
        "'import_id', CAST(:import_id AS text)) END AS data "
        "FROM up LEFT JOIN old ON old.id = up.id"
    )
    return src + up + old, events


def subscribe_sql(options: MergeOptions) -> tuple[str, str]:
    only_created = (
        # Created by this transaction (this chunk), not found existing.
        " WHERE c.id IN (SELECT x.id FROM contacts AS x WHERE x.id = c.id AND x.created_at = now())"
        if options.mode == "create_only"
        else ""
    )
    ctes = (
        f"targets AS (SELECT c.id, c.email FROM {STAGE} AS s CROSS JOIN LATERAL ("
        f"{_probe('s')}) AS c{only_created}), "
        "subscribed AS (INSERT INTO subscriptions (workspace_id, list_id, contact_id, status) "
        "SELECT :ws, :list_id, id, 'subscribed' FROM targets "
        "ON CONFLICT (list_id, contact_id) DO NOTHING RETURNING contact_id), "
        "consent AS (INSERT INTO consent_records (workspace_id, contact_id, list_id, status, "
        "previous_status, source, actor, consent_text) SELECT :ws, contact_id, :list_id, "
        "'subscribed', NULL, 'import', :actor, :consent_text FROM subscribed)"
    )
    # Without `each_created`, contacts this transaction created (created_at
    # is the transaction's start) are left to `contact_import.completed`.
    created_here = (
        ""
        if options.each_created
        else " WHERE NOT EXISTS (SELECT 1 FROM contacts AS x WHERE x.id = t.id "
        "AND x.created_at = now())"
    )
    events = (
        "SELECT 'contact.subscribed' AS type, 'contact' AS subject_type, t.id::text AS "
        "subject_id, json_build_object('id', t.id, 'email', t.email, 'list_id', "
        "CAST(:list_id AS text), 'status', 'subscribed', 'source', 'import', "
        "'import_id', CAST(:import_id AS text)) AS data "
        f"FROM subscribed JOIN targets AS t ON t.id = subscribed.contact_id{created_here}"
    )
    return ctes, events


async def _raw(session: AsyncSession) -> AsyncConnection[Any]:
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: AsyncConnection[Any] = raw.driver_connection  # type: ignore[assignment]
    return driver


async def create_stage(session: AsyncSession, fields: Sequence[FieldSpec]) -> None:
    customs = "".join(
        f", {_column(i)} {_STAGE_TYPES.get(f.type, 'text')}" for i, f in enumerate(fields)
    )
    await session.execute(
        text(
            f"CREATE TEMPORARY TABLE {STAGE} (row bigint, email text, email_key text, "
            "external_id text, first_name text, last_name text, timezone text, locale text, "
            f"tags text{customs}) ON COMMIT DROP"
        )
    )
    # `n` numbers the events in the order they are staged (and will get
    # their positions in).
    await session.execute(
        text(
            f"CREATE TEMPORARY TABLE {EVENTS} (n bigint GENERATED ALWAYS AS IDENTITY, "
            "type text, subject_type text, subject_id text, data json) ON COMMIT DROP"
        )
    )


async def _reject_taken_external_ids(
    session: AsyncSession, workspace_id: uuid.UUID
) -> list[RowError]:
    """Take out of the stage the rows whose external id belongs to another
    contact of the workspace: each is a rejected row, not a failed chunk.
    (Two rows of the file with the same external id are caught while
    reading.)"""
    rows = await session.execute(
        text(
            f"DELETE FROM {STAGE} AS s WHERE s.external_id IS NOT NULL AND EXISTS ("
            "SELECT 1 FROM contacts AS x WHERE x.workspace_id = :ws "
            "AND x.external_id = s.external_id AND x.email_key <> s.email_key) "
            "RETURNING s.row, s.external_id"
        ),
        {"ws": workspace_id},
    )
    return [
        RowError(int(row), "external_id", "already belongs to another contact", shown(external))
        for row, external in rows
    ]


async def _stage_merge(
    session: AsyncSession, ctes: str, select_sql: str, params: dict[str, Any], *, each: bool
) -> tuple[int, int, int]:
    """Run the merge in `ctes` and keep the events of `select_sql` in the
    events table (`contact.created` only when `each`); how many contacts it
    created and updated, and how many events it staged."""
    keep = "" if each else " WHERE e.type <> 'contact.created'"
    row = (
        await session.execute(
            text(
                f"WITH {ctes}, staged AS (INSERT INTO {EVENTS} (type, subject_type, subject_id, "
                f"data) SELECT e.type, e.subject_type, e.subject_id, e.data FROM ({select_sql}) "
                f"AS e{keep} RETURNING 1) SELECT (SELECT count(*) FROM up WHERE up.created), "
                "(SELECT count(*) FROM up WHERE NOT up.created), (SELECT count(*) FROM staged)"
            ),
            params,
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


async def write_staged_events(
    session: AsyncSession, workspace_id: uuid.UUID, counts: MergeCounts
) -> None:
    """Write the events `merge_chunk` staged into the outbox, in their
    staged order. The event counter's row lock is taken here and held until
    the commit: call this last."""
    if not counts.events:
        return
    # `n` runs 1..events: the identity of a table made in this transaction,
    # filled by statements that all succeeded.
    await write_events_from_select(
        session,
        workspace_id,
        f"SELECT e.n, e.type, e.subject_type, e.subject_id, e.data FROM {EVENTS} AS e",
        count=counts.events,
    )


async def copy_rows(session: AsyncSession, data: bytes, width: int) -> None:
    """Send the chunk, already in COPY text format, into the staging table."""
    columns = ", ".join([*BUILTIN_COLUMNS, *(_column(i) for i in range(width))])
    conn = await _raw(session)
    async with conn.cursor() as cursor:
        async with cursor.copy(f"COPY {STAGE} ({columns}) FROM STDIN") as copy:
            await copy.write(data)


async def copy_errors(
    session: AsyncSession, workspace_id: uuid.UUID, import_id: uuid.UUID, errors: Sequence[RowError]
) -> None:
    if not errors:
        return
    conn = await _raw(session)
    async with conn.cursor() as cursor:
        async with cursor.copy(
            "COPY contact_import_errors (import_id, workspace_id, row, field, message, value) "
            "FROM STDIN"
        ) as copy:
            for e in errors:
                message = e.message.replace("\x00", "")
                await copy.write_row((import_id, workspace_id, e.row, e.field, message, e.value))


async def erased_among(
    session: AsyncSession, workspace_id: uuid.UUID, hashes: Sequence[str]
) -> set[str]:
    """Which of `hashes` belong to addresses erased at the person's request."""
    if not hashes:
        return set()
    rows = await session.execute(
        text(
            "SELECT address_hash FROM suppressions WHERE workspace_id = :ws "
            "AND reason = 'erased' AND address_hash = ANY(:hashes)"
        ),
        {"ws": workspace_id, "hashes": list(hashes)},
    )
    return {r[0] for r in rows}


async def any_erased(session: AsyncSession, workspace_id: uuid.UUID) -> bool:
    found = await session.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM suppressions WHERE workspace_id = :ws "
            "AND reason = 'erased')"
        ),
        {"ws": workspace_id},
    )
    return bool(found.scalar_one())


async def merge_chunk(
    session: AsyncSession,
    options: MergeOptions,
    rows: int,
    copy_data: bytes,
) -> MergeCounts:
    """Apply `rows` checked rows (`copy_data`: them in COPY text format) in
    the session's transaction and stage their events; `write_staged_events`
    writes those later in the same transaction. Takes no lock another chunk
    of the same import waits for."""
    counts = MergeCounts()
    if not rows:
        return counts
    # The planner cannot know a chunk's shape (temporary tables, CTEs), its
    # cost guesses run to millions and switch JIT on, which then spends
    # longer compiling than the statement runs; sorts of a chunk fit in memory.
    # A chunk is one statement of bounded size, but on a slow or busy server
    # it may outlast the API's statement timeout. (One round trip for all three.)
    await session.execute(
        text(
            "SELECT set_config('jit', 'off', true), set_config('work_mem', '64MB', true), "
            "set_config('statement_timeout', '15min', true)"
        )
    )
    await create_stage(session, options.fields)
    await copy_rows(session, copy_data, len(options.fields))
    counts.rejected = await _reject_taken_external_ids(session, options.workspace_id)
    rows -= len(counts.rejected)
    params: dict[str, Any] = {"ws": options.workspace_id, "import_id": options.import_id}
    if options.defaults and options.mode != "update_only":
        params["defaults"] = json.dumps(options.defaults)
    ctes, events = merge_sql(options)
    counts.created, counts.updated, counts.events = await _stage_merge(
        session, ctes, events, params, each=options.each_created
    )
    if options.mode == "upsert":
        counts.unchanged = rows - counts.created - counts.updated
    elif options.mode == "create_only":
        counts.skipped = rows - counts.created
    else:
        matched = (
            await session.execute(
                text(f"SELECT count(*) FROM {STAGE} AS s CROSS JOIN LATERAL ({_probe('s')}) AS x"),
                params,
            )
        ).scalar_one()
        counts.unchanged = int(matched) - counts.updated
        counts.skipped = rows - int(matched)
    if options.list_id is not None:
        ctes, events = subscribe_sql(options)
        row = (
            await session.execute(
                text(
                    f"WITH {ctes}, staged AS (INSERT INTO {EVENTS} (type, subject_type, "
                    f"subject_id, data) {events} RETURNING 1) SELECT "
                    "(SELECT count(*) FROM subscribed), (SELECT count(*) FROM staged)"
                ),
                {
                    "ws": options.workspace_id,
                    "import_id": options.import_id,
                    "list_id": options.list_id,
                    "actor": options.actor,
                    "consent_text": options.consent_text,
                },
            )
        ).one()
        counts.subscribed = int(row[0])
        counts.events += int(row[1])
    return counts
