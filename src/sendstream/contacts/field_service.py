"""Custom fields: declaring, renaming and deleting them safely.

A rename moves every contact's value to the new key and a delete removes the
values, each in the same transaction as the change to the field itself, so
no reader ever sees a value under a key that no field declares. An enum
option still held by some contact cannot be removed (the error says how
many hold it); a field's type never changes (declare a new field instead).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.contacts.errors import FieldExists, FieldNotFound, InvalidContact
from sendstream.contacts.repository import field_repository
from sendstream.contacts.schemas import FieldCreate, FieldUpdate
from sendstream.contacts.values import check_value
from sendstream.core import outbox
from sendstream.core.errors import Conflict
from sendstream.core.pagination import PageParams, encode_cursor
from sendstream.models.field import Field

_DEFINITION: Final = "invalid_field_definition"
# Built-in contact properties and import columns: a custom field cannot shadow them.
RESERVED_KEYS: Final = frozenset(
    {
        "id",
        "email",
        "external_id",
        "external_ids",
        "first_name",
        "last_name",
        "timezone",
        "locale",
        "status",
        "tags",
        "lists",
        "attributes",
        "created_at",
        "updated_at",
    }
)


def _check_definition(type_: str, options: Sequence[str] | None, default: Any) -> list[str] | None:
    if type_ == "enum":
        if not options:
            raise InvalidContact(
                "options: an enum field needs at least one option.", code=_DEFINITION
            )
        if len(set(options)) != len(options):
            raise InvalidContact("options: each option must appear once.", code=_DEFINITION)
    elif options:
        raise InvalidContact(
            f"options: only enum fields have options, not {type_} fields.", code=_DEFINITION
        )
    else:
        options = None
    if default is not None:
        try:
            check_value(type_, default, options)
        except ValueError as exc:
            raise InvalidContact(f"default: {exc}", code=_DEFINITION) from None
    return list(options) if options is not None else None


class FieldService:
    async def get_field(self, session: AsyncSession, workspace_id: uuid.UUID, key: str) -> Field:
        found = await field_repository.find(session, workspace_id, key)
        if found is None:
            raise FieldNotFound(key)
        return found

    async def list_fields(
        self, session: AsyncSession, workspace_id: uuid.UUID, page: PageParams
    ) -> tuple[Sequence[Field], str | None]:
        after = page.cursor.get("key") if page.cursor else None
        if after is not None and not isinstance(after, str):
            raise InvalidContact("cursor: not a cursor this list issued.", code="invalid_cursor")
        rows = list(
            await field_repository.page(session, workspace_id, after=after, limit=page.limit + 1)
        )
        if len(rows) > page.limit:
            rows = rows[: page.limit]
            return rows, encode_cursor({"key": rows[-1].key})
        return rows, None

    async def create_field(
        self, session: AsyncSession, workspace_id: uuid.UUID, data: FieldCreate
    ) -> Field:
        if data.key in RESERVED_KEYS:
            raise InvalidContact(
                f"key: {data.key!r} is a built-in contact property.", code="reserved_field_key"
            )
        options = _check_definition(data.type, data.options, data.default)
        if await field_repository.find(session, workspace_id, data.key) is not None:
            raise FieldExists(data.key)
        created = Field(
            workspace_id=workspace_id,
            key=data.key,
            label=data.label or data.key.replace("_", " ").capitalize(),
            type=data.type,
            options=options,
            default=data.default,
            description=data.description,
        )
        session.add(created)
        await session.flush()
        await session.refresh(created)
        outbox.emit(
            session, workspace_id, "field.created", {"key": created.key, "type": created.type}
        )
        return created

    async def update_field(
        self, session: AsyncSession, workspace_id: uuid.UUID, key: str, data: FieldUpdate
    ) -> Field:
        found = await field_repository.find(session, workspace_id, key, lock=True)
        if found is None:
            raise FieldNotFound(key)
        given = data.model_fields_set
        options = data.options if "options" in given else found.options
        default = data.default if "default" in given else found.default
        options = _check_definition(found.type, options, default)
        if found.type == "enum" and options is not None:
            for removed in set(found.options or ()) - set(options):
                held = await field_repository.count_using(session, workspace_id, key, removed)
                if held:
                    raise Conflict(
                        f"options: {removed!r} is held by {held} contact(s); change them first.",
                        code="field_option_in_use",
                    )
        if "key" in given and data.key is not None and data.key != key:
            if data.key in RESERVED_KEYS:
                raise InvalidContact(
                    f"key: {data.key!r} is a built-in contact property.", code="reserved_field_key"
                )
            if await field_repository.find(session, workspace_id, data.key) is not None:
                raise FieldExists(data.key)
            await field_repository.rename_values(session, workspace_id, key, data.key)
            found.key = data.key
        if "label" in given and data.label is not None:
            found.label = data.label
        if "description" in given:
            found.description = data.description
        found.options = options
        found.default = default
        await session.flush()
        await session.refresh(found)
        outbox.emit(session, workspace_id, "field.updated", {"key": found.key, "old_key": key})
        return found

    async def delete_field(self, session: AsyncSession, workspace_id: uuid.UUID, key: str) -> None:
        found = await field_repository.find(session, workspace_id, key, lock=True)
        if found is None:
            raise FieldNotFound(key)
        await field_repository.drop_values(session, workspace_id, key)
        await session.delete(found)
        await session.flush()
        outbox.emit(session, workspace_id, "field.deleted", {"key": key})


field_service = FieldService()
