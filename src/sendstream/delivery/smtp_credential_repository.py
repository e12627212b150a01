"""Every query of SMTP credentials. Tenant-owned lookups take the workspace
id; `find_by_username` is the one global lookup (AUTH names no workspace)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.pagination import rows_after
from sendstream.models.smtp_credential import SmtpCredential


class SmtpCredentialRepository:
    async def find_by_username(self, session: AsyncSession, username: str) -> SmtpCredential | None:
        result = await session.execute(
            select(SmtpCredential).where(SmtpCredential.username == username)
        )
        return result.scalar_one_or_none()

    async def username_taken(self, session: AsyncSession, username: str) -> bool:
        result = await session.execute(
            select(SmtpCredential.id).where(SmtpCredential.username == username)
        )
        return result.first() is not None

    async def get(
        self, session: AsyncSession, workspace_id: uuid.UUID, credential_id: uuid.UUID
    ) -> SmtpCredential | None:
        result = await session.execute(
            select(SmtpCredential).where(
                SmtpCredential.workspace_id == workspace_id, SmtpCredential.id == credential_id
            )
        )
        return result.scalar_one_or_none()

    async def page(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        after: uuid.UUID | None,
        limit: int,
    ) -> Sequence[SmtpCredential]:
        query = select(SmtpCredential).where(SmtpCredential.workspace_id == workspace_id)
        return await rows_after(session, query, SmtpCredential.id, after=after, limit=limit)

    async def live_ids(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        ids: Sequence[uuid.UUID],
        now: datetime,
    ) -> set[uuid.UUID]:
        """Those of `ids` that are neither revoked nor expired (one query)."""
        if not ids:
            return set()
        result = await session.execute(
            select(SmtpCredential.id).where(
                SmtpCredential.workspace_id == workspace_id,
                SmtpCredential.id.in_(ids),
                SmtpCredential.revoked_at.is_(None),
                or_(SmtpCredential.expires_at.is_(None), SmtpCredential.expires_at > now),
            )
        )
        return set(result.scalars().all())

    async def touch(
        self,
        session: AsyncSession,
        credential_id: uuid.UUID,
        *,
        ip: str | None,
        now: datetime,
        min_interval: timedelta,
    ) -> None:
        """Record a use unless one was recorded less than `min_interval` ago."""
        await session.execute(
            update(SmtpCredential)
            .where(
                SmtpCredential.id == credential_id,
                or_(
                    SmtpCredential.last_used_at.is_(None),
                    SmtpCredential.last_used_at <= now - min_interval,
                ),
            )
            .values(last_used_at=now, last_used_ip=ip)
            .execution_options(synchronize_session=False)
        )


smtp_credential_repository = SmtpCredentialRepository()
