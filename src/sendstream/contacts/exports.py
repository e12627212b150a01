"""Contact export: everything, a list's subscribed members, or a filter, as
CSV (one column per custom field, lists and tags joined by `;`, so the file
imports back unchanged) or JSON lines (one contact object per line, the
shape of the API's contact).

PostgreSQL writes the file itself (`COPY (SELECT ...) TO STDOUT`) and the
bytes are passed on as they come, so memory stays flat whatever the size.
COPY takes no bound parameters, so the few values in the query (workspace,
list, status, tag) are quoted as literals by psycopg's `sql.Literal`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from psycopg import AsyncConnection, sql
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.contacts.errors import ListNotFound
from sendstream.contacts.import_repository import import_repository
from sendstream.core.db import get_database

ExportFormat = Literal["csv", "jsonl"]
BUILTIN_COLUMNS = (
    "email",
    "external_id",
    "first_name",
    "last_name",
    "timezone",
    "locale",
    "status",
)


@dataclass(frozen=True)
class PreparedExport:
    format: ExportFormat
    statement: sql.Composed


def _csv_value(key: str, kind: str) -> sql.Composable:
    value = sql.SQL("c.attributes -> {}").format(sql.Literal(key))
    if kind == "text_list":
        return sql.SQL("array_to_string(ARRAY(SELECT jsonb_array_elements_text({})), ';')").format(
            value
        )
    if kind == "json":
        return sql.SQL("({})::text").format(value)
    return sql.SQL("c.attributes ->> {}").format(sql.Literal(key))


class ExportService:
    async def prepare(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        format: ExportFormat = "csv",
        list_id: uuid.UUID | str | None = None,
        status: str | None = None,
        tag: str | None = None,
    ) -> PreparedExport:
        """Check the filters (a list must be this workspace's) and build the
        COPY statement."""
        joins: list[sql.Composable] = []
        where: list[sql.Composable] = [
            sql.SQL("c.workspace_id = {}").format(sql.Literal(str(workspace_id)))
        ]
        if list_id is not None:
            contact_list = await import_repository.find_list(session, workspace_id, list_id)
            if contact_list is None:
                raise ListNotFound(list_id)
            joins.append(
                sql.SQL(
                    " JOIN subscriptions AS s ON s.contact_id = c.id AND s.list_id = {} "
                    "AND s.status = 'subscribed'"
                ).format(sql.Literal(str(contact_list.id)))
            )
        if status is not None:
            where.append(sql.SQL("c.status = {}").format(sql.Literal(status)))
        if tag is not None:
            where.append(sql.SQL("c.tags @> ARRAY[{}]::text[]").format(sql.Literal(tag)))
        source = sql.SQL(" FROM contacts AS c{} WHERE {} ORDER BY c.id").format(
            sql.SQL("").join(joins), sql.SQL(" AND ").join(where)
        )
        if format == "csv":
            fields = await import_repository.fields(session, workspace_id)
            columns: list[sql.Composable] = [
                sql.SQL("c.id"),
                *(sql.SQL("c.{}").format(sql.Identifier(c)) for c in BUILTIN_COLUMNS),
                sql.SQL("array_to_string(c.tags, ';') AS tags"),
                *(
                    sql.SQL("{} AS {}").format(_csv_value(f.key, f.type), sql.Identifier(f.key))
                    for f in fields.values()
                ),
                sql.SQL("c.created_at"),
                sql.SQL("c.updated_at"),
            ]
            statement = sql.SQL("COPY (SELECT {}{}) TO STDOUT WITH (FORMAT csv, HEADER)").format(
                sql.SQL(", ").join(columns), source
            )
        else:
            body = sql.SQL(
                "jsonb_build_object('id', c.id, 'email', c.email, 'external_id', c.external_id, "
                "'first_name', c.first_name, 'last_name', c.last_name, 'timezone', c.timezone, "
                "'locale', c.locale, 'status', c.status, 'attributes', c.attributes, "
                "'tags', to_jsonb(c.tags), 'created_at', c.created_at, "
                "'updated_at', c.updated_at)::text"
            )
            # CSV mode with quote and delimiter characters JSON never holds
            # unescaped: each line is the JSON text as is (text mode would
            # double every backslash).
            statement = sql.SQL(
                "COPY (SELECT {}{}) TO STDOUT WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"
            ).format(body, source)
        return PreparedExport(format, statement)

    def errors_report(self, import_id: uuid.UUID) -> PreparedExport:
        """An import's rejected rows as CSV: row, field, message, value (the
        caller has checked the import is the workspace's)."""
        statement = sql.SQL(
            "COPY (SELECT row, field, message, value FROM contact_import_errors "
            "WHERE import_id = {} ORDER BY row, id) TO STDOUT WITH (FORMAT csv, HEADER)"
        ).format(sql.Literal(str(import_id)))
        return PreparedExport("csv", statement)

    async def stream(self, export: PreparedExport) -> AsyncIterator[bytes]:
        """The exported bytes, from a pooled connection of its own (the
        response outlives the request's unit of work)."""
        async with get_database().engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver: AsyncConnection[Any] = raw.driver_connection  # type: ignore[assignment]
            async with driver.cursor() as cursor:
                async with cursor.copy(export.statement) as copy:
                    async for data in copy:
                        yield bytes(data)


export_service = ExportService()
