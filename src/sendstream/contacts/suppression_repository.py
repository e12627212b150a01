"""Queries of the suppression list API: pages, look-ups by key hash, removal.
(The writes every domain uses, and the batch check of delivery, are in
`suppression`.) Every query is scoped by workspace."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.models.suppression import Suppression


def _like(text: str) -> str:
    """`text` as a LIKE pattern that matches it anywhere, literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class SuppressionRepository:
    async def page(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        reason: str | None,
        search: str | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> Sequence[Suppression]:
        """Newest first, ties broken by key hash; `after` is the last entry
        of the previous page. `search` matches part of the address or the
        domain, case-insensitively."""
        query = select(Suppression).where(Suppression.workspace_id == workspace_id)
        if reason is not None:
            query = query.where(Suppression.reason == reason)
        if search is not None:
            pattern = _like(search)
            query = query.where(
                or_(Suppression.address.ilike(pattern), Suppression.domain.ilike(pattern))
            )
        if after is not None:
            query = query.where(
                tuple_(Suppression.created_at, Suppression.address_hash) < tuple_(*after)
            )
        query = query.order_by(Suppression.created_at.desc(), Suppression.address_hash.desc())
        return (await session.execute(query.limit(limit))).scalars().all()

    async def find(
        self, session: AsyncSession, workspace_id: uuid.UUID, key_hashes: Sequence[str]
    ) -> dict[str, Suppression]:
        """The entries with these key hashes, by hash."""
        rows = await session.execute(
            select(Suppression).where(
                Suppression.workspace_id == workspace_id,
                Suppression.address_hash.in_(list(key_hashes)),
            )
        )
        return {row.address_hash: row for row in rows.scalars()}

    async def remove(self, session: AsyncSession, workspace_id: uuid.UUID, key_hash: str) -> None:
        await session.execute(
            delete(Suppression).where(
                Suppression.workspace_id == workspace_id, Suppression.address_hash == key_hash
            )
        )


suppression_repository = SuppressionRepository()
