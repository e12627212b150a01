"""Every query of contacts, custom fields and timelines. Each one is scoped by
workspace; rows that will be changed are locked in id order, so concurrent
batches touching the same contacts wait for each other instead of deadlocking."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Text,
    any_,
    delete,
    func,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core import outbox
from sendstream.core.pagination import rows_after
from sendstream.models.contact import Contact, ContactExternalId
from sendstream.models.contact_list import ContactList, Subscription
from sendstream.models.event import Event
from sendstream.models.field import Field

# Columns a write may change; `id`, `workspace_id`, `created_at` never change.
MUTABLE_COLUMNS = (
    "email",
    "email_key",
    "external_id",
    "first_name",
    "last_name",
    "timezone",
    "locale",
    "status",
    "attributes",
    "tags",
)


_COLUMNS = (
    Contact.id,
    Contact.workspace_id,
    Contact.email,
    Contact.email_key,
    Contact.external_id,
    Contact.first_name,
    Contact.last_name,
    Contact.timezone,
    Contact.locale,
    Contact.status,
    Contact.attributes,
    Contact.tags,
    Contact.created_at,
    Contact.updated_at,
)
# New contacts and the consent record of each (its global state, as given),
# in one statement. The consent's context comes with each row.
_INSERT_ROWS = text(
    "WITH r AS MATERIALIZED (SELECT * FROM ROWS FROM (jsonb_to_recordset(CAST(:rows AS jsonb)) "
    "AS (id uuid, email text, email_key text, external_id text, first_name text, "
    "last_name text, timezone text, locale text, status text, attributes jsonb, tags text[], "
    "source text, actor text, ip inet, user_agent text, consent_text text)) WITH ORDINALITY "
    "AS r(id, email, email_key, external_id, first_name, last_name, timezone, locale, status, "
    "attributes, tags, source, actor, ip, user_agent, consent_text, n)), "
    "ins AS (INSERT INTO contacts (id, workspace_id, email, email_key, external_id, "
    "first_name, last_name, timezone, locale, status, attributes, tags) "
    "SELECT r.id, :ws, r.email, r.email_key, r.external_id, r.first_name, r.last_name, "
    "r.timezone, r.locale, r.status, r.attributes, r.tags FROM r ORDER BY r.email_key "
    "ON CONFLICT (workspace_id, email_key) DO NOTHING "
    "RETURNING email_key, id, status, created_at, updated_at), "
    "consents AS (INSERT INTO consent_records (workspace_id, contact_id, list_id, status, "
    "previous_status, source, actor, ip, user_agent, consent_text) "
    "SELECT :ws, ins.id, NULL, ins.status, NULL, r.source, r.actor, r.ip, r.user_agent, "
    "r.consent_text FROM ins JOIN r ON r.id = ins.id ORDER BY r.n) "
    "SELECT email_key, id, created_at, updated_at FROM ins"
).columns(Contact.email_key, Contact.id, Contact.created_at, Contact.updated_at)
_UPDATE_ROWS = text(
    "UPDATE contacts AS c SET email = r.email, email_key = r.email_key, "
    "external_id = r.external_id, first_name = r.first_name, last_name = r.last_name, "
    "timezone = r.timezone, locale = r.locale, status = r.status, "
    "attributes = r.attributes, tags = r.tags, updated_at = r.updated_at "
    "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
    "AS r(id uuid, "
    "email text, email_key text, external_id text, first_name text, last_name text, "
    "timezone text, locale text, status text, attributes jsonb, tags text[], "
    "updated_at timestamptz) "
    "WHERE c.workspace_id = :ws AND c.id = r.id"
)


def _any(values: Collection[str]) -> ColumnElement[Any]:
    # `= ANY(array)`: one parameter, where `IN (...)` renders, sends and
    # parses one per value (1,000 for a batch).
    return any_(literal(list(values), ARRAY(Text)))


def _json(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps(list(rows), default=outbox.json_default, separators=(",", ":"))


# Events from one JSON array, in array order (`write_events_from_select`
# numbers rows in the order they come).
_EVENTS_SELECT = (
    "SELECT e.value ->> 'type' AS type, CAST('contact' AS text) AS subject_type, "
    "e.value ->> 'subject_id' AS subject_id, e.value -> 'data' AS data "
    "FROM json_array_elements(CAST(:events AS json)) WITH ORDINALITY AS e(value, n) "
    "ORDER BY e.n"
)


class ContactRepository:
    async def find(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        contact_id: uuid.UUID,
        *,
        lock: bool = False,
    ) -> Contact | None:
        query = select(Contact).where(
            Contact.workspace_id == workspace_id, Contact.id == contact_id
        )
        if lock:
            query = query.with_for_update()
        return (await session.execute(query)).scalar_one_or_none()

    async def lock_by_keys(
        self, session: AsyncSession, workspace_id: uuid.UUID, keys: Collection[str]
    ) -> Sequence[Contact]:
        if not keys:
            return []
        query = (
            select(Contact)
            .where(Contact.workspace_id == workspace_id, Contact.email_key.in_(list(keys)))
            .order_by(Contact.id)
            .with_for_update()
        )
        return (await session.execute(query)).scalars().all()

    async def lock_by_external_ids(
        self, session: AsyncSession, workspace_id: uuid.UUID, external_ids: Collection[str]
    ) -> Sequence[Contact]:
        if not external_ids:
            return []
        query = (
            select(Contact)
            .where(
                Contact.workspace_id == workspace_id, Contact.external_id.in_(list(external_ids))
            )
            .order_by(Contact.id)
            .with_for_update()
        )
        return (await session.execute(query)).scalars().all()

    async def lock_rows_by_keys(
        self, session: AsyncSession, workspace_id: uuid.UUID, keys: Collection[str]
    ) -> list[dict[str, Any]]:
        """`lock_by_keys` as plain column dicts: a batch writer reads 1,000
        rows it only compares and copies, so it skips the ORM identity map."""
        if not keys:
            return []
        query = (
            select(*_COLUMNS)
            .where(Contact.workspace_id == workspace_id, Contact.email_key == _any(keys))
            .order_by(Contact.id)
            .with_for_update()
        )
        return [dict(row) for row in (await session.execute(query)).mappings()]

    async def lock_rows_by_external_ids(
        self, session: AsyncSession, workspace_id: uuid.UUID, external_ids: Collection[str]
    ) -> list[dict[str, Any]]:
        if not external_ids:
            return []
        query = (
            select(*_COLUMNS)
            .where(Contact.workspace_id == workspace_id, Contact.external_id == _any(external_ids))
            .order_by(Contact.id)
            .with_for_update()
        )
        return [dict(row) for row in (await session.execute(query)).mappings()]

    async def owners_of_keys(
        self, session: AsyncSession, workspace_id: uuid.UUID, keys: Collection[str]
    ) -> dict[str, uuid.UUID]:
        if not keys:
            return {}
        rows = await session.execute(
            select(Contact.email_key, Contact.id).where(
                Contact.workspace_id == workspace_id, Contact.email_key.in_(list(keys))
            )
        )
        return {key: contact_id for key, contact_id in rows}

    async def owners_of_external_ids(
        self, session: AsyncSession, workspace_id: uuid.UUID, external_ids: Collection[str]
    ) -> dict[str, uuid.UUID]:
        if not external_ids:
            return {}
        rows = await session.execute(
            select(Contact.external_id, Contact.id).where(
                Contact.workspace_id == workspace_id, Contact.external_id.in_(list(external_ids))
            )
        )
        return {str(ext): contact_id for ext, contact_id in rows}

    async def insert_new(
        self, session: AsyncSession, rows: Sequence[dict[str, Any]]
    ) -> dict[str, tuple[uuid.UUID, datetime, datetime]]:
        """Insert rows whose key is still free; returns key -> (id, created_at,
        updated_at) of those inserted. A key taken meanwhile by a concurrent
        writer is skipped, for the caller to treat as an update."""
        if not rows:
            return {}
        statement = (
            insert(Contact)
            .on_conflict_do_nothing(index_elements=["workspace_id", "email_key"])
            .returning(Contact.email_key, Contact.id, Contact.created_at, Contact.updated_at)
        )
        # executemany: SQLAlchemy batches the rows into multi-row VALUES with
        # a cached statement ("insertmanyvalues"); a 1,000-row `.values()`
        # would be compiled afresh on every call (~0.3 s).
        result = await session.execute(statement, list(rows))
        return {key: (cid, created, updated) for key, cid, created, updated in result}

    async def insert_rows(
        self, session: AsyncSession, workspace_id: uuid.UUID, rows: Sequence[dict[str, Any]]
    ) -> dict[str, tuple[uuid.UUID, datetime, datetime]]:
        """`insert_new` for many rows as one statement with one JSON parameter
        (a multi-row VALUES of 1,000 rows costs more to build and parse than
        to run), which also writes each new contact's consent record from the
        row's `source`, `actor`, `ip`, `user_agent` and `consent_text` (absent
        means null). Rows are inserted in `email_key` order, so two batches
        creating overlapping addresses wait for each other instead of
        deadlocking. `rows` hold JSON values, UUIDs and datetimes."""
        if not rows:
            return {}
        result = await session.execute(_INSERT_ROWS, {"ws": workspace_id, "rows": _json(rows)})
        return {key: (cid, created, updated) for key, cid, created, updated in result}

    async def update_rows(
        self, session: AsyncSession, workspace_id: uuid.UUID, rows: Sequence[dict[str, Any]]
    ) -> None:
        """`write_changes` as one statement with one JSON parameter: every
        mutable column and `updated_at` of each (already locked) row."""
        if rows:
            await session.execute(_UPDATE_ROWS, {"ws": workspace_id, "rows": _json(rows)})

    async def write_events(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        events: Sequence[tuple[str, uuid.UUID, dict[str, Any]]],
    ) -> None:
        """Write (type, contact id, data) events through the outbox in one
        statement, in the given order, instead of one buffered `emit()` each
        (1,000 events: one JSON document instead of 1,000 rows to encode,
        decode and bind)."""
        payload = [
            {"type": kind, "subject_id": str(contact_id), "data": data}
            for kind, contact_id, data in events
        ]
        await outbox.write_events_from_select(
            session,
            workspace_id,
            _EVENTS_SELECT,
            {"events": json.dumps(payload, default=outbox.json_default, separators=(",", ":"))},
        )

    async def write_changes(self, session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
        """Write every mutable column of each row (one executemany round trip);
        `updated_at` follows from the column's `onupdate`."""
        if rows:
            await session.execute(
                update(Contact).execution_options(synchronize_session=False),
                list(rows),
            )

    async def delete(self, session: AsyncSession, contact: Contact) -> None:
        await session.execute(
            delete(Contact).where(
                Contact.workspace_id == contact.workspace_id, Contact.id == contact.id
            )
        )

    def filtered(
        self,
        workspace_id: uuid.UUID,
        *,
        status: str | None = None,
        tag: str | None = None,
        email_key: str | None = None,
        external_id: str | None = None,
        list_id: uuid.UUID | None = None,
        list_status: str | None = None,
        where: dict[str, Any] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        updated_after: datetime | None = None,
    ) -> Select[Contact]:
        query = select(Contact).where(Contact.workspace_id == workspace_id)
        if status is not None:
            query = query.where(Contact.status == status)
        if tag is not None:
            query = query.where(Contact.tags.contains([tag]))
        if email_key is not None:
            query = query.where(Contact.email_key == email_key)
        if external_id is not None:
            query = query.where(Contact.external_id == external_id)
        if where:
            query = query.where(Contact.attributes.contains(where))
        if created_after is not None:
            query = query.where(Contact.created_at >= created_after)
        if created_before is not None:
            query = query.where(Contact.created_at < created_before)
        if updated_after is not None:
            query = query.where(Contact.updated_at >= updated_after)
        if list_id is not None:
            member = select(Subscription.contact_id).where(
                Subscription.workspace_id == workspace_id, Subscription.list_id == list_id
            )
            if list_status is not None:
                member = member.where(Subscription.status == list_status)
            query = query.where(Contact.id.in_(member))
        return query

    async def page(
        self,
        session: AsyncSession,
        query: Select[Contact],
        *,
        after: uuid.UUID | None,
        limit: int,
    ) -> Sequence[Contact]:
        return await rows_after(session, query, Contact.id, after=after, limit=limit)

    async def existing_list_ids(
        self, session: AsyncSession, workspace_id: uuid.UUID, list_ids: Collection[uuid.UUID]
    ) -> set[uuid.UUID]:
        result = await session.scalars(
            select(ContactList.id).where(
                ContactList.workspace_id == workspace_id, ContactList.id.in_(list(list_ids))
            )
        )
        return set(result.all())

    # --- external ids

    async def external_ids(
        self, session: AsyncSession, workspace_id: uuid.UUID, contact_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, dict[str, str]]:
        ids = list(contact_ids)
        found: dict[uuid.UUID, dict[str, str]] = {}
        if not ids:
            return found
        rows = await session.execute(
            select(
                ContactExternalId.contact_id,
                ContactExternalId.system,
                ContactExternalId.external_id,
            ).where(
                ContactExternalId.workspace_id == workspace_id,
                ContactExternalId.contact_id.in_(ids),
            )
        )
        for contact_id, system, external_id in rows:
            found.setdefault(contact_id, {})[system] = external_id
        return found

    async def external_id_owners(
        self, session: AsyncSession, workspace_id: uuid.UUID, pairs: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], uuid.UUID]:
        if not pairs:
            return {}
        systems = {system for system, _ in pairs}
        ids = {value for _, value in pairs}
        rows = await session.execute(
            select(
                ContactExternalId.system,
                ContactExternalId.external_id,
                ContactExternalId.contact_id,
            ).where(
                ContactExternalId.workspace_id == workspace_id,
                ContactExternalId.system.in_(systems),
                ContactExternalId.external_id.in_(ids),
            )
        )
        return {(s, e): c for s, e, c in rows if (s, e) in pairs}

    async def set_external_ids(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        contact_id: uuid.UUID,
        values: dict[str, str | None],
    ) -> None:
        for system, value in values.items():
            await session.execute(
                delete(ContactExternalId).where(
                    ContactExternalId.workspace_id == workspace_id,
                    ContactExternalId.contact_id == contact_id,
                    ContactExternalId.system == system,
                )
            )
            if value is not None:
                await session.execute(
                    insert(ContactExternalId).values(
                        workspace_id=workspace_id,
                        contact_id=contact_id,
                        system=system,
                        external_id=value,
                    )
                )

    # --- timeline

    async def timeline(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        contact_id: uuid.UUID,
        *,
        before: int | None,
        limit: int,
    ) -> Sequence[Event]:
        query = select(Event).where(
            Event.workspace_id == workspace_id,
            Event.subject_type == "contact",
            Event.subject_id == str(contact_id),
        )
        if before is not None:
            query = query.where(Event.position < before)
        result = await session.execute(query.order_by(Event.position.desc()).limit(limit))
        return result.scalars().all()


class FieldRepository:
    async def all(self, session: AsyncSession, workspace_id: uuid.UUID) -> Sequence[Field]:
        result = await session.execute(
            select(Field).where(Field.workspace_id == workspace_id).order_by(Field.key)
        )
        return result.scalars().all()

    async def find(
        self, session: AsyncSession, workspace_id: uuid.UUID, key: str, *, lock: bool = False
    ) -> Field | None:
        query = select(Field).where(Field.workspace_id == workspace_id, Field.key == key)
        if lock:
            query = query.with_for_update()
        return (await session.execute(query)).scalar_one_or_none()

    async def page(
        self, session: AsyncSession, workspace_id: uuid.UUID, *, after: str | None, limit: int
    ) -> Sequence[Field]:
        query = select(Field).where(Field.workspace_id == workspace_id)
        if after is not None:
            query = query.where(Field.key > after)
        return (await session.execute(query.order_by(Field.key).limit(limit))).scalars().all()

    async def count_using(
        self, session: AsyncSession, workspace_id: uuid.UUID, key: str, value: Any
    ) -> int:
        result = await session.scalar(
            select(func.count())
            .select_from(Contact)
            .where(Contact.workspace_id == workspace_id, Contact.attributes.contains({key: value}))
        )
        return int(result or 0)

    async def rename_values(
        self, session: AsyncSession, workspace_id: uuid.UUID, old: str, new: str
    ) -> None:
        await session.execute(
            text(
                "UPDATE contacts SET attributes = (attributes - :old) "
                "|| jsonb_build_object(CAST(:new AS text), attributes -> :old) "
                "WHERE workspace_id = :ws AND attributes ? :old"
            ),
            {"old": old, "new": new, "ws": workspace_id},
        )

    async def drop_values(self, session: AsyncSession, workspace_id: uuid.UUID, key: str) -> None:
        await session.execute(
            text(
                "UPDATE contacts SET attributes = attributes - :key "
                "WHERE workspace_id = :ws AND attributes ? :key"
            ),
            {"key": key, "ws": workspace_id},
        )


contact_repository = ContactRepository()
field_repository = FieldRepository()
