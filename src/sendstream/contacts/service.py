"""The rules of contact writes and reads.

Every write (one contact, an upsert, a batch of up to 1,000) goes through
`_apply`, which validates each item, locks the contacts it will change in id
order, inserts new ones with `ON CONFLICT DO NOTHING` (a key taken meanwhile
by a concurrent writer turns the item into an update, so two clients upserting
one address at the same moment end with one contact), writes changed rows in
one statement, and emits one event per created or changed contact (a batch's
events go to the outbox as one statement). An item
that changes nothing is `unchanged` and emits nothing. A rejected item leaves
no trace; the others still apply.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, TypeVar
from zoneinfo import available_timezones

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.contacts.addresses import Address, InvalidAddress, normalize_address
from sendstream.contacts.consent import ConsentContext, consent_row, record_consent
from sendstream.contacts.errors import (
    ContactErased,
    ContactExists,
    ContactNotFound,
    InvalidContact,
    ListNotFound,
)
from sendstream.contacts.lists import subscription_service
from sendstream.contacts.repository import (
    MUTABLE_COLUMNS,
    contact_repository,
    field_repository,
)
from sendstream.contacts.schemas import (
    BatchResult,
    BatchSummary,
    ContactBatch,
    ContactCreate,
    ContactRead,
    ContactUpdate,
    ContactUpsert,
    TimelineEntry,
)
from sendstream.contacts.suppression import (
    address_hashes,
    erased_hashes,
    lift_erasure,
    lift_unsubscribes,
)
from sendstream.contacts.values import check_value
from sendstream.core import outbox
from sendstream.core.errors import SendstreamError
from sendstream.core.ids import uuid7
from sendstream.core.pagination import PageParams, cursor_int, cursor_uuid, encode_cursor
from sendstream.models.contact import Contact
from sendstream.models.field import Field

Match = Literal["email", "external_id", "id"]
Mode = Literal["upsert", "create_only", "update_only"]
T = TypeVar("T")
_SYSTEM = re.compile(r"^[a-z][a-z0-9_-]{0,49}$")
_SIMPLE = ("external_id", "first_name", "last_name", "timezone", "locale")


@dataclass
class _Item:
    index: int
    data: ContactUpsert
    context: ConsentContext
    address: Address | None = None
    attributes: dict[str, Any] | None = None
    contact_id: uuid.UUID | None = None
    error: SendstreamError | None = None
    outcome: str | None = None
    # The contact after the write, as `ContactRead` fields (external_ids
    # included only when the caller wants the contact back, see `_apply`).
    values: dict[str, Any] | None = field(default=None, repr=False)
    existing: dict[str, Any] | None = field(default=None, repr=False)


# An event the write path emits: (type, contact id, data).
_Event = tuple[str, uuid.UUID, dict[str, Any]]
# From this many events on, a write hands its events to the outbox as one
# statement instead of one `emit()` each.
_SET_BASED_EVENTS = 20
_NO_ID = uuid.UUID(int=0)


def _timestamp(value: datetime) -> str:
    # What pydantic writes for a datetime in JSON mode: ISO 8601, `Z` for UTC.
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def contact_json(values: dict[str, Any]) -> dict[str, Any]:
    """The contact as API responses and events show it: exactly
    `ContactRead.model_validate(values).model_dump(mode="json")` (a test
    holds the two together), built directly because a batch builds 1,000."""
    return {
        "id": str(values["id"]),
        "email": values["email"],
        "external_id": values["external_id"],
        "external_ids": dict(values.get("external_ids") or {}),
        "first_name": values["first_name"],
        "last_name": values["last_name"],
        "timezone": values["timezone"],
        "locale": values["locale"],
        "status": values["status"],
        "attributes": values["attributes"],
        "tags": list(values["tags"]),
        "created_at": _timestamp(values["created_at"]),
        "updated_at": _timestamp(values["updated_at"]),
    }


def contact_document(contact: Contact, external_ids: dict[str, str]) -> dict[str, Any]:
    """A loaded contact as API responses and events show it."""
    return contact_json({**_row(contact), "external_ids": external_ids})


def _row(contact: Contact) -> dict[str, Any]:
    return {
        "id": contact.id,
        "workspace_id": contact.workspace_id,
        "email": contact.email,
        "email_key": contact.email_key,
        "external_id": contact.external_id,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "timezone": contact.timezone,
        "locale": contact.locale,
        "status": contact.status,
        "attributes": dict(contact.attributes),
        "tags": list(contact.tags),
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
    }


def _check_attributes(
    given: dict[str, Any] | None, fields: dict[str, Field]
) -> dict[str, Any] | None:
    if given is None:
        return None
    checked: dict[str, Any] = {}
    for key, value in given.items():
        spec = fields.get(key)
        if spec is None:
            raise InvalidContact(
                f"attributes.{key}: unknown field {key!r}; declare it first under /v1/fields.",
                code="unknown_field",
            )
        try:
            checked[key] = check_value(spec.type, value, spec.options)
        except ValueError as exc:
            raise InvalidContact(f"attributes.{key}: {exc}", code="invalid_field_value") from None
    return checked


def _tags(tags: Sequence[str] | None) -> list[str] | None:
    return None if tags is None else list(dict.fromkeys(t.strip() for t in tags if t.strip()))


def _merged(existing: dict[str, Any], item: _Item, now: datetime) -> dict[str, Any]:
    data, new = item.data, dict(existing)
    given = data.model_fields_set
    if item.address is not None:
        new["email"], new["email_key"] = item.address.email, item.address.key
    for name in _SIMPLE:
        if name in given:
            new[name] = getattr(data, name)
    if "status" in given and data.status is not None:
        new["status"] = data.status
    if item.attributes is not None:
        attributes = dict(existing["attributes"])
        for key, value in item.attributes.items():
            if value is None:
                attributes.pop(key, None)
            else:
                attributes[key] = value
        new["attributes"] = attributes
    if "tags" in given:
        new["tags"] = _tags(data.tags) or []
    new["updated_at"] = now
    return new


def _changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, dict[str, Any]]:
    changes: dict[str, dict[str, Any]] = {}
    for name in ("email", *_SIMPLE, "status", "tags"):
        if old[name] != new[name]:
            changes[name] = {"old": old[name], "new": new[name]}
    for key in sorted(old["attributes"].keys() | new["attributes"].keys()):
        before, after = old["attributes"].get(key), new["attributes"].get(key)
        if before != after:
            changes[f"attributes.{key}"] = {"old": before, "new": after}
    return changes


class ContactService:
    # --- reads

    async def get_contact(
        self, session: AsyncSession, workspace_id: uuid.UUID, contact_id: uuid.UUID
    ) -> ContactRead:
        contact = await contact_repository.find(session, workspace_id, contact_id)
        if contact is None:
            raise ContactNotFound(contact_id)
        external = await contact_repository.external_ids(session, workspace_id, [contact.id])
        return ContactRead.model_validate(
            {**_row(contact), "external_ids": external.get(contact.id, {})}
        )

    async def list_contacts(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        page: PageParams,
        *,
        email: str | None = None,
        **filters: Any,
    ) -> tuple[list[ContactRead], str | None]:
        email_key = None
        if email is not None:
            try:
                email_key = normalize_address(email).key
            except InvalidAddress:
                # No contact holds an address that is not one: an empty page.
                email_key = email.strip().lower()
        query = contact_repository.filtered(workspace_id, email_key=email_key, **filters)
        after = cursor_uuid(page.cursor)
        rows = list(
            await contact_repository.page(session, query, after=after, limit=page.limit + 1)
        )
        cursor = None
        if len(rows) > page.limit:
            rows = rows[: page.limit]
            cursor = encode_cursor({"id": str(rows[-1].id)})
        external = await contact_repository.external_ids(
            session, workspace_id, [c.id for c in rows]
        )
        reads = [
            ContactRead.model_validate({**_row(c), "external_ids": external.get(c.id, {})})
            for c in rows
        ]
        return reads, cursor

    async def timeline(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        contact_id: uuid.UUID,
        page: PageParams,
    ) -> tuple[list[TimelineEntry], str | None]:
        if await contact_repository.find(session, workspace_id, contact_id) is None:
            raise ContactNotFound(contact_id)
        before = cursor_int(page.cursor, "position")
        rows = list(
            await contact_repository.timeline(
                session, workspace_id, contact_id, before=before, limit=page.limit + 1
            )
        )
        cursor = None
        if len(rows) > page.limit:
            rows = rows[: page.limit]
            cursor = encode_cursor({"position": rows[-1].position})
        entries = [
            TimelineEntry(position=e.position, type=e.type, occurred_at=e.occurred_at, data=e.data)
            for e in rows
        ]
        return entries, cursor

    # --- writes

    async def create_contact(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        data: ContactCreate,
        context: ConsentContext,
    ) -> ContactRead:
        upsert = ContactUpsert.model_validate(data.model_dump(exclude_unset=True))
        (item,) = await self._apply(
            session, workspace_id, [upsert], [context], match="email", mode="create_only"
        )
        return _result_or_raise(item)

    async def upsert_contact(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        data: ContactUpsert,
        context: ConsentContext,
        *,
        match: Literal["email", "external_id"],
    ) -> tuple[ContactRead, bool]:
        (item,) = await self._apply(
            session, workspace_id, [data], [context], match=match, mode="upsert"
        )
        return _result_or_raise(item), item.outcome == "created"

    async def update_contact(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        contact_id: uuid.UUID,
        data: ContactUpdate,
        context: ConsentContext,
    ) -> ContactRead:
        upsert = ContactUpsert.model_validate(data.model_dump(exclude_unset=True))
        (item,) = await self._apply(
            session,
            workspace_id,
            [upsert],
            [context],
            match="id",
            mode="update_only",
            ids=[contact_id],
        )
        return _result_or_raise(item)

    async def batch_upsert(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        batch: ContactBatch,
        context: ConsentContext,
    ) -> BatchSummary:
        parsed: list[ContactUpsert] = []
        rejected: dict[int, SendstreamError] = {}
        for index, raw in enumerate(batch.contacts):
            try:
                parsed.append(ContactUpsert.model_validate(raw))
            except ValidationError as exc:
                parsed.append(ContactUpsert())
                rejected[index] = InvalidContact(_first_error(exc))
        items = await self._apply(
            session,
            workspace_id,
            parsed,
            [context] * len(parsed),
            match=batch.match,
            mode="upsert",
            rejected=rejected,
            reads=False,
        )
        results = [
            BatchResult(
                index=item.index,
                status="rejected" if item.error else item.outcome,
                id=item.contact_id,
                code=item.error.code if item.error else None,
                error=item.error.message if item.error else None,
            )
            for item in items
        ]
        counts = {name: 0 for name in ("created", "updated", "unchanged", "rejected")}
        for result in results:
            counts[result.status] += 1
        return BatchSummary(**counts, results=results)

    async def delete_contact(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        contact_id: uuid.UUID,
        context: ConsentContext,
    ) -> None:
        contact = await contact_repository.find(session, workspace_id, contact_id, lock=True)
        if contact is None:
            raise ContactNotFound(contact_id)
        await contact_repository.delete(session, contact)
        outbox.emit(
            session,
            workspace_id,
            "contact.deleted",
            {"id": contact.id, "email": contact.email, "source": context.source},
            subject_type="contact",
            subject_id=contact.id,
        )

    # --- the one write path

    async def _apply(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        datas: Sequence[ContactUpsert],
        contexts: Sequence[ConsentContext],
        *,
        match: Match,
        mode: Mode,
        ids: Sequence[uuid.UUID] | None = None,
        rejected: dict[int, SendstreamError] | None = None,
        reads: bool = True,
    ) -> list[_Item]:
        """Apply the items; each ends with an `outcome` or an `error`. With
        `reads` false (batches: the answer holds no contacts) an item's
        `values` lack the external ids it was not given, which saves their
        lookup."""
        fields = {f.key: f for f in await field_repository.all(session, workspace_id)}
        items = [
            _Item(index=i, data=d, context=_with_consent(c, d))
            for i, (d, c) in enumerate(zip(datas, contexts, strict=True))
        ]
        for item in items:
            if rejected and item.index in rejected:
                item.error = rejected[item.index]
                continue
            try:
                self._prepare(item, fields, match)
            except SendstreamError as exc:
                item.error = exc

        # Find the contacts the items identify, locked in id order.
        live = [i for i in items if i.error is None]
        identity = _identities(live, match, ids)
        existing = await self._lock_existing(session, workspace_id, match, identity.values())
        await self._check_lists(session, workspace_id, live)

        creates: list[_Item] = []
        updates: list[_Item] = []
        for item in live:
            if item.error is not None:
                continue
            found = existing.get(identity[item.index])
            if found is None:
                if mode == "update_only":
                    item.error = ContactNotFound(identity[item.index])
                elif item.address is None:
                    item.error = InvalidContact(
                        "email: required to create a contact.", code="email_required"
                    )
                else:
                    creates.append(item)
            elif mode == "create_only":
                item.error = ContactExists("this email address", found["id"])
            else:
                item.existing = found
                if match == "email":
                    # Matched by its key: a differently-cased copy of the
                    # address is the same address, not a change.
                    item.address = Address(found["email"], found["email_key"])
                updates.append(item)

        # Matched by address, the locked rows are every contact holding one
        # of the batch's addresses: no need to look the addresses up again.
        known = existing if match == "email" else None
        await self._check_uniques(session, workspace_id, creates, updates, known)
        await self._check_erased(session, workspace_id, [*creates, *updates])
        now = datetime.now(UTC)
        events: list[_Event] = []
        raced = await self._insert(
            session, workspace_id, [c for c in creates if c.error is None], fields, events
        )
        if raced:
            # Created by a concurrent writer since we looked: update it instead.
            again = await contact_repository.lock_rows_by_keys(
                session, workspace_id, [i.address.key for i in raced if i.address]
            )
            by_key = {c["email_key"]: c for c in again}
            for item in raced:
                found = by_key.get(item.address.key) if item.address else None
                if found is None:
                    item.error = SendstreamError(
                        "A concurrent change to this contact got in the way; retry.",
                        code="concurrent_update",
                        status=503,
                    )
                elif mode == "create_only":
                    item.error = ContactExists("this email address", found["id"])
                else:
                    item.existing = found
                    item.address = Address(found["email"], found["email_key"])
                    updates.append(item)
        await self._update(
            session,
            workspace_id,
            [u for u in updates if u.error is None],
            now,
            events,
            reads=reads,
        )
        await _emit_all(session, workspace_id, events)
        await self._subscribe(session, workspace_id, [i for i in items if i.error is None])
        return items

    def _prepare(self, item: _Item, fields: dict[str, Field], match: Match) -> None:
        data = item.data
        if data.email is not None:
            try:
                item.address = normalize_address(data.email)
            except InvalidAddress as exc:
                raise InvalidContact(f"email: {exc}", code="invalid_email") from None
        if data.timezone is not None and data.timezone not in _zones():
            raise InvalidContact(
                f"timezone: unknown time zone {data.timezone!r}; use an IANA name such as "
                "Europe/Paris.",
                code="unknown_timezone",
            )
        for system in data.external_ids or {}:
            if not _SYSTEM.match(system):
                raise InvalidContact(
                    f"external_ids.{system}: a system name is 1-50 lower-case letters, digits, "
                    "`_` or `-`, starting with a letter (e.g. hubspot).",
                    code="invalid_system",
                )
        item.attributes = _check_attributes(data.attributes, fields)
        if match == "email" and item.address is None:
            raise InvalidContact("email: required when matching by email.", code="email_required")
        if match == "external_id" and not data.external_id:
            raise InvalidContact(
                "external_id: required when matching by external_id.", code="external_id_required"
            )

    async def _lock_existing(
        self, session: AsyncSession, workspace_id: uuid.UUID, match: Match, keys: Any
    ) -> dict[Any, dict[str, Any]]:
        wanted = set(keys)
        if match == "email":
            rows = await contact_repository.lock_rows_by_keys(session, workspace_id, wanted)
            return {c["email_key"]: c for c in rows}
        if match == "external_id":
            rows = await contact_repository.lock_rows_by_external_ids(session, workspace_id, wanted)
            return {c["external_id"]: c for c in rows}
        found: dict[Any, dict[str, Any]] = {}
        for contact_id in sorted(wanted):
            contact = await contact_repository.find(session, workspace_id, contact_id, lock=True)
            if contact is not None:
                found[contact_id] = _row(contact)
        return found

    async def _check_lists(
        self, session: AsyncSession, workspace_id: uuid.UUID, items: list[_Item]
    ) -> None:
        wanted = {list_id for item in items for list_id in item.data.lists}
        if not wanted:
            return
        known = await contact_repository.existing_list_ids(session, workspace_id, wanted)
        for item in items:
            missing = [str(i) for i in item.data.lists if i not in known]
            if missing:
                item.error = ListNotFound(", ".join(missing))

    async def _check_uniques(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        creates: list[_Item],
        updates: list[_Item],
        known: dict[Any, dict[str, Any]] | None,
    ) -> None:
        """Refuse items that would take an address, external id or connected-
        system id another contact holds (in the database or earlier in the
        batch). `known`: the locked contacts by address, when they are all
        the contacts that hold one of the items' addresses."""
        writing = [i for i in (*creates, *updates) if i.error is None]
        keys = {i.address.key for i in writing if i.address}
        externals = {i.data.external_id for i in writing if i.data.external_id}
        pairs = {
            (system, value)
            for i in writing
            for system, value in (i.data.external_ids or {}).items()
            if value is not None
        }
        if known is not None:
            key_owner = {key: known[key]["id"] for key in keys if key in known}
        else:
            key_owner = await contact_repository.owners_of_keys(session, workspace_id, keys)
        ext_owner = await contact_repository.owners_of_external_ids(
            session, workspace_id, externals
        )
        pair_owner = await contact_repository.external_id_owners(session, workspace_id, pairs)
        claimed: dict[tuple[str, Any], int] = {}
        for item in writing:
            own = item.existing["id"] if item.existing else None
            claims: list[tuple[str, Any, uuid.UUID | None, str]] = []
            if item.address:
                claims.append(
                    (
                        "email",
                        item.address.key,
                        key_owner.get(item.address.key),
                        "this email address",
                    )
                )
            if item.data.external_id:
                ext = item.data.external_id
                claims.append(("external_id", ext, ext_owner.get(ext), f"external_id {ext!r}"))
            for system, value in (item.data.external_ids or {}).items():
                if value is not None:
                    claims.append(
                        (
                            f"external_ids.{system}",
                            value,
                            pair_owner.get((system, value)),
                            f"{system} id {value!r}",
                        )
                    )
            for kind, value, owner, what in claims:
                if owner is not None and owner != own:
                    item.error = ContactExists(what, owner)
                    break
                earlier = claimed.get((kind, value))
                if earlier is not None:
                    item.error = InvalidContact(
                        f"{kind}: same as item {earlier} of this batch.", code="duplicate_in_batch"
                    )
                    break
            if item.error is None:
                for kind, value, _, _ in claims:
                    claimed[(kind, value)] = item.index

    async def _check_erased(
        self, session: AsyncSession, workspace_id: uuid.UUID, items: list[_Item]
    ) -> None:
        arriving = [
            (i.index, i.address.key)
            for i in items
            if i.error is None
            and i.address is not None
            and (i.existing is None or i.existing["email_key"] != i.address.key)
        ]
        hashes = address_hashes(key for _, key in arriving)
        new_addresses = {index: digest for (index, _), digest in zip(arriving, hashes, strict=True)}
        erased = await erased_hashes(session, workspace_id, new_addresses.values())
        if not erased:
            return
        lifted: list[str] = []
        for item in items:
            digest = new_addresses.get(item.index)
            if digest not in erased:
                continue
            consent = item.data.consent
            if consent is not None and consent.explicit_opt_in:
                lifted.append(digest)
            else:
                item.error = ContactErased()
        await lift_erasure(session, workspace_id, lifted)

    async def _insert(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        items: list[_Item],
        fields: dict[str, Field],
        events: list[_Event],
    ) -> list[_Item]:
        """Insert new contacts; return the items whose address a concurrent
        writer took first."""
        defaults = {k: f.default for k, f in fields.items() if f.default is not None}
        rows: list[dict[str, Any]] = []
        consents: dict[int, dict[str, Any]] = {}
        for item in items:
            address = _present(item.address)
            data = item.data
            attributes = {
                **defaults,
                **{k: v for k, v in (item.attributes or {}).items() if v is not None},
            }
            rows.append(
                {
                    "id": uuid7(),
                    "workspace_id": workspace_id,
                    "email": address.email,
                    "email_key": address.key,
                    "external_id": data.external_id,
                    "first_name": data.first_name,
                    "last_name": data.last_name,
                    "timezone": data.timezone,
                    "locale": data.locale,
                    "status": data.status or "active",
                    "attributes": attributes,
                    "tags": _tags(data.tags) or [],
                }
            )
            # Items share their request's context unless they carry their own.
            context = consents.get(id(item.context))
            if context is None:
                context = consents[id(item.context)] = _consent_fields(item.context)
            rows[-1].update(context)
        inserted = await contact_repository.insert_rows(session, workspace_id, rows)
        raced: list[_Item] = []
        for item, row in zip(items, rows, strict=True):
            got = inserted.get(row["email_key"])
            if got is None:
                raced.append(item)
                continue
            row["id"], row["created_at"], row["updated_at"] = got
            item.contact_id, item.outcome = got[0], "created"
            external_ids = {
                k: v for k, v in (item.data.external_ids or {}).items() if v is not None
            }
            if external_ids:
                await contact_repository.set_external_ids(
                    session, workspace_id, got[0], dict(external_ids)
                )
            row["external_ids"] = external_ids
            item.values = row
            events.append(
                (
                    "contact.created",
                    got[0],
                    {"contact": contact_json(row), "source": item.context.source},
                )
            )
        return raced

    async def _update(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        items: list[_Item],
        now: datetime,
        events: list[_Event],
        *,
        reads: bool,
    ) -> None:
        writes: list[dict[str, Any]] = []
        # Matching keys of contacts set back to `active` (see `lift_unsubscribes`).
        reactivated: list[str] = []
        # Only items that change external ids need the old ones, unless the
        # caller wants the contacts back.
        external = await contact_repository.external_ids(
            session,
            workspace_id,
            [i.existing["id"] for i in items if i.existing and (reads or i.data.external_ids)],
        )
        for item in items:
            old = _present(item.existing)
            new = _merged(old, item, now)
            changes = _changes(old, new)
            item.contact_id = old["id"]
            ext_old = external.get(old["id"], {})
            ext_new = dict(ext_old)
            for system, value in (item.data.external_ids or {}).items():
                if value is None:
                    ext_new.pop(system, None)
                else:
                    ext_new[system] = value
            if ext_new != ext_old:
                changes["external_ids"] = {"old": ext_old, "new": ext_new}
                await contact_repository.set_external_ids(
                    session,
                    workspace_id,
                    old["id"],
                    {s: ext_new.get(s) for s in ext_old.keys() | ext_new.keys()},
                )
            if not changes:
                item.outcome = "unchanged"
                item.values = {**old, "external_ids": ext_old}
                continue
            item.outcome = "updated"
            writes.append(
                {"id": old["id"], **{c: new[c] for c in (*MUTABLE_COLUMNS, "updated_at")}}
            )
            item.values = {**new, "external_ids": ext_new}
            events.append(
                (
                    "contact.updated",
                    old["id"],
                    {
                        "id": old["id"],
                        "email": new["email"],
                        "changes": changes,
                        "source": item.context.source,
                    },
                )
            )
            if "status" in changes:
                self._status_changed(
                    session, workspace_id, item, old["status"], new["status"], events
                )
                if new["status"] == "active":
                    reactivated.append(new["email_key"])
        await contact_repository.update_rows(session, workspace_id, writes)
        await lift_unsubscribes(session, workspace_id, reactivated)

    def _status_changed(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        item: _Item,
        old: str,
        new: str,
        events: list[_Event],
    ) -> None:
        contact_id, values = _present(item.contact_id), _present(item.values)
        record_consent(
            session,
            workspace_id=workspace_id,
            contact_id=contact_id,
            list_id=None,
            status=new,
            previous_status=old,
            context=item.context,
        )
        events.append(
            (
                "contact.unsubscribed" if new == "unsubscribed" else "contact.subscribed",
                contact_id,
                {
                    "id": contact_id,
                    "email": values["email"],
                    "list_id": None,
                    "status": new,
                    "source": item.context.source,
                },
            )
        )

    async def _subscribe(
        self, session: AsyncSession, workspace_id: uuid.UUID, items: list[_Item]
    ) -> None:
        for item in items:
            if item.data.lists and item.contact_id is not None:
                await subscription_service.subscribe(
                    session, workspace_id, item.contact_id, item.data.lists, item.context
                )


def _identities(
    items: list[_Item], match: Match, ids: Sequence[uuid.UUID] | None
) -> dict[int, Any]:
    """Each live item's identity under `match`; a repeat within the batch is rejected."""
    found: dict[int, Any] = {}
    seen: dict[Any, int] = {}
    for item in items:
        if match == "email":
            key: Any = _present(item.address).key
        elif match == "external_id":
            key = item.data.external_id
        else:
            key = _present(ids)[item.index]
        if key in seen:
            item.error = InvalidContact(
                f"{match}: same contact as item {seen[key]} of this batch.",
                code="duplicate_in_batch",
            )
            continue
        seen[key] = item.index
        found[item.index] = key
    return found


async def _emit_all(session: AsyncSession, workspace_id: uuid.UUID, events: list[_Event]) -> None:
    """Hand the write's events to the outbox, in order. Many at once go in one
    statement (positions taken now; the counter's row lock, which orders
    commits, is held from here to commit), unless events emitted earlier in
    this transaction still wait for the commit: they must keep lower
    positions."""
    if len(events) >= _SET_BASED_EVENTS and outbox.pending_events(session) == 0:
        await contact_repository.write_events(session, workspace_id, events)
        return
    for kind, contact_id, data in events:
        outbox.emit(
            session, workspace_id, kind, data, subject_type="contact", subject_id=contact_id
        )


def _consent_fields(context: ConsentContext) -> dict[str, Any]:
    """The context columns of a consent record (`consent_row`'s), nulls left out."""
    row = consent_row(
        workspace_id=_NO_ID,
        contact_id=_NO_ID,
        list_id=None,
        status="",
        previous_status=None,
        context=context,
    )
    return {
        name: row[name]
        for name in ("source", "actor", "ip", "user_agent", "consent_text")
        if row[name] is not None
    }


def _with_consent(context: ConsentContext, data: ContactUpsert) -> ConsentContext:
    consent = data.consent
    if consent is None:
        return context
    return replace(
        context,
        source=consent.source,
        ip=str(consent.ip) if consent.ip is not None else None,
        user_agent=consent.user_agent,
        text=consent.text,
    )


def _result_or_raise(item: _Item) -> ContactRead:
    if item.error is not None:
        raise item.error
    return ContactRead.model_validate(_present(item.values))


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _present(value: T | None) -> T:
    if value is None:
        raise RuntimeError("contact write: a value the write path set earlier is missing")
    return value


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "body"
    return f"{where}: {error['msg']}"


contact_service = ContactService()
