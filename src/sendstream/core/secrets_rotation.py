"""Re-encrypting every secret at rest under the current master key
(`sendstream secrets rotate`), so an old master key can be dropped.

Which columns hold secrets is said where they are declared: a model column
with `info={"encrypted": True}` holds `core.secrets` tokens whose context is
`"<table>.<column>:<row id>"`. The rotation walks every such column in
primary-key order, a batch per transaction, and rewrites a token only if it
is still the one it read (a concurrent writer's new token is kept). It can be
stopped and run again at any point: tokens already under the current key are
left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Table, and_, select, update

from sendstream.core import secrets
from sendstream.core.db import Database
from sendstream.core.settings import Settings, get_settings
from sendstream.models.base import Base

BATCH_SIZE = 500


@dataclass
class ColumnReport:
    table: str
    column: str
    # Tokens read (non-null values).
    secrets: int = 0
    # Tokens rewritten under the current master key.
    rotated: int = 0
    # Tokens still under an older key (`status` only; 0 after a rotation).
    outdated: int = 0


def encrypted_columns() -> list[tuple[Table, Column[Any]]]:
    """Every (table, column) declared `info={"encrypted": True}`, in a stable order."""
    import sendstream.models.all  # noqa: F401  (every table registered)

    found = []
    for table in sorted(Base.metadata.tables.values(), key=lambda t: t.name):
        for column in table.columns:
            if column.info.get("encrypted"):
                if len(table.primary_key.columns) != 1:
                    raise TypeError(f"{table.name}: encrypted columns need a one-column key")
                found.append((table, column))
    return found


def context(table: Table, column: Column[Any], row_id: Any) -> str:
    return f"{table.name}.{column.name}:{row_id}"


async def _walk(
    database: Database,
    table: Table,
    column: Column[Any],
    settings: Settings,
    *,
    rewrite: bool,
    batch_size: int,
) -> ColumnReport:
    key = next(iter(table.primary_key.columns))
    report = ColumnReport(table.name, column.name)
    after: Any = None
    while True:
        query = select(key, column).where(column.is_not(None)).order_by(key).limit(batch_size)
        if after is not None:
            query = query.where(key > after)
        async with database.session() as session:
            rows = (await session.execute(query)).all()
            for row_id, token in rows:
                report.secrets += 1
                if not secrets.needs_rotation(token, settings=settings):
                    continue
                if not rewrite:
                    report.outdated += 1
                    continue
                fresh = secrets.reencrypt(token, context(table, column, row_id), settings=settings)
                changed = await session.execute(
                    update(table)
                    .where(and_(key == row_id, column == token))
                    .values({column.name: fresh})
                )
                report.rotated += changed.rowcount  # type: ignore[attr-defined]
        if len(rows) < batch_size:
            return report
        after = rows[-1][0]


async def rotate(
    database: Database, settings: Settings | None = None, *, batch_size: int = BATCH_SIZE
) -> list[ColumnReport]:
    """Re-encrypt every token not under the current master key. Raises
    `secrets.SecretError` (naming the row) when a token cannot be read with
    any configured key; the batches before it stay rotated."""
    settings = settings or get_settings()
    return [
        await _walk(database, table, column, settings, rewrite=True, batch_size=batch_size)
        for table, column in encrypted_columns()
    ]


async def status(
    database: Database, settings: Settings | None = None, *, batch_size: int = BATCH_SIZE
) -> list[ColumnReport]:
    """How many tokens each column holds and how many are under an older key."""
    settings = settings or get_settings()
    return [
        await _walk(database, table, column, settings, rewrite=False, batch_size=batch_size)
        for table, column in encrypted_columns()
    ]
