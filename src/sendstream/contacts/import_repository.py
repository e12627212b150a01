"""Every row-at-a-time query of imports and exports (the set-based chunk
merge is in `imports_merge`). Every query is scoped by workspace, except
those a job runs by the id it was given."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import IO

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.contacts.imports_parse import FieldSpec
from sendstream.models.contact_import import ContactImport, ContactImportChunk, ContactImportError
from sendstream.models.contact_list import ContactList
from sendstream.models.field import Field

UPLOAD_CHUNK_BYTES = 1024 * 1024


class ImportRepository:
    async def get(
        self, session: AsyncSession, workspace_id: uuid.UUID, import_id: uuid.UUID
    ) -> ContactImport | None:
        return (
            await session.execute(
                select(ContactImport).where(
                    ContactImport.id == import_id, ContactImport.workspace_id == workspace_id
                )
            )
        ).scalar_one_or_none()

    async def lock(self, session: AsyncSession, import_id: uuid.UUID) -> ContactImport | None:
        """The import row, locked and re-read (a job holds only the id)."""
        return (
            await session.execute(
                select(ContactImport)
                .where(ContactImport.id == import_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).scalar_one_or_none()

    async def page(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        before: uuid.UUID | None,
        limit: int,
    ) -> Sequence[ContactImport]:
        """Newest first (ids are time-ordered)."""
        query = select(ContactImport).where(ContactImport.workspace_id == workspace_id)
        if before is not None:
            query = query.where(ContactImport.id < before)
        result = await session.execute(query.order_by(ContactImport.id.desc()).limit(limit))
        return result.scalars().all()

    def add(self, session: AsyncSession, contact_import: ContactImport) -> None:
        session.add(contact_import)

    async def store_upload(
        self, session: AsyncSession, contact_import: ContactImport, source: IO[bytes]
    ) -> int:
        """Copy the file into `contact_import_chunks`, 1 MB a row, one row in
        memory at a time. Returns the bytes stored."""
        total = 0
        seq = 0
        while True:
            data = source.read(UPLOAD_CHUNK_BYTES)
            if not data:
                return total
            await session.execute(
                insert(ContactImportChunk).values(
                    import_id=contact_import.id,
                    workspace_id=contact_import.workspace_id,
                    seq=seq,
                    data=data,
                )
            )
            total += len(data)
            seq += 1

    async def read_upload(
        self, session: AsyncSession, import_id: uuid.UUID, into: IO[bytes]
    ) -> int:
        """Write the stored file into `into`, chunk by chunk; returns bytes."""
        count = (
            await session.execute(
                select(func.count())
                .select_from(ContactImportChunk)
                .where(ContactImportChunk.import_id == import_id)
            )
        ).scalar_one()
        total = 0
        for seq in range(count):
            data = (
                await session.execute(
                    select(ContactImportChunk.data).where(
                        ContactImportChunk.import_id == import_id, ContactImportChunk.seq == seq
                    )
                )
            ).scalar_one()
            into.write(data)
            total += len(data)
        return total

    async def add_error(
        self,
        session: AsyncSession,
        contact_import: ContactImport,
        row: int,
        field: str | None,
        message: str,
        value: str | None = None,
    ) -> None:
        session.add(
            ContactImportError(
                import_id=contact_import.id,
                workspace_id=contact_import.workspace_id,
                row=row,
                field=field,
                message=message,
                value=value,
            )
        )

    async def errors(
        self, session: AsyncSession, import_id: uuid.UUID, *, batch: int = 5000
    ) -> AsyncIterator[Sequence[ContactImportError]]:
        """Every error of the import in row order, a batch at a time."""
        after = -1
        while True:
            rows = (
                (
                    await session.execute(
                        select(ContactImportError)
                        .where(
                            ContactImportError.import_id == import_id,
                            ContactImportError.id > after,
                        )
                        .order_by(ContactImportError.id)
                        .limit(batch)
                    )
                )
                .scalars()
                .all()
            )
            if not rows:
                return
            yield rows
            after = rows[-1].id

    async def fields(self, session: AsyncSession, workspace_id: uuid.UUID) -> dict[str, FieldSpec]:
        rows = await session.execute(
            select(Field.key, Field.type, Field.options, Field.default)
            .where(Field.workspace_id == workspace_id)
            .order_by(Field.key)
        )
        return {key: FieldSpec(key, kind, options, default) for key, kind, options, default in rows}

    async def find_list(
        self, session: AsyncSession, workspace_id: uuid.UUID, id_or_name: str | uuid.UUID
    ) -> ContactList | None:
        query = select(ContactList).where(ContactList.workspace_id == workspace_id)
        as_id: uuid.UUID | None = id_or_name if isinstance(id_or_name, uuid.UUID) else None
        if as_id is None:
            try:
                as_id = uuid.UUID(str(id_or_name))
            except ValueError:
                as_id = None
        if as_id is not None:
            query = query.where(ContactList.id == as_id)
        else:
            query = query.where(ContactList.name == str(id_or_name))
        return (await session.execute(query)).scalar_one_or_none()


import_repository = ImportRepository()
