"""Every query of sending domains, each scoped by `workspace_id`: an id from
another workspace finds nothing."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.pagination import rows_after
from sendstream.models.sending_domain import SendingDomain


class DomainRepository:
    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        domain_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> SendingDomain | None:
        query = select(SendingDomain).where(
            SendingDomain.workspace_id == workspace_id, SendingDomain.id == domain_id
        )
        if for_update:
            # populate_existing: a row already in the session is overwritten
            # with what the lock saw, not served from the identity map.
            query = query.with_for_update().execution_options(populate_existing=True)
        return (await session.execute(query)).scalar_one_or_none()

    async def insert(
        self, session: AsyncSession, workspace_id: uuid.UUID, values: dict[str, Any]
    ) -> SendingDomain | None:
        """The new domain, or None when the workspace already has one of that
        name (even one inserted concurrently: ON CONFLICT waits for it, then
        skips)."""
        domain_id = (
            await session.execute(
                insert(SendingDomain)
                .values(workspace_id=workspace_id, **values)
                .on_conflict_do_nothing(index_elements=["workspace_id", "name"])
                .returning(SendingDomain.id)
            )
        ).scalar_one_or_none()
        if domain_id is None:
            return None
        return await self.get(session, workspace_id, domain_id)

    async def page(
        self, session: AsyncSession, workspace_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
    ) -> Sequence[SendingDomain]:
        """Oldest first (ids are time-ordered UUIDv7)."""
        query = select(SendingDomain).where(SendingDomain.workspace_id == workspace_id)
        return await rows_after(session, query, SendingDomain.id, after=after, limit=limit)

    async def find_covering(
        self, session: AsyncSession, workspace_id: uuid.UUID, candidates: Sequence[str]
    ) -> SendingDomain | None:
        """The registered domain among `candidates` (a name and its parents)
        with the longest name: the closest one covering the name."""
        if not candidates:
            return None
        return (
            await session.execute(
                select(SendingDomain)
                .where(
                    SendingDomain.workspace_id == workspace_id,
                    SendingDomain.name.in_(list(candidates)),
                )
                .order_by(func.length(SendingDomain.name).desc())
                .limit(1)
            )
        ).scalar_one_or_none()

    async def delete(self, session: AsyncSession, domain: SendingDomain) -> None:
        await session.execute(
            delete(SendingDomain).where(
                SendingDomain.workspace_id == domain.workspace_id, SendingDomain.id == domain.id
            )
        )


domain_repository = DomainRepository()
