"""Every query of the workspaces domain. Each tenant-owned lookup takes the
workspace id, so a row of another workspace is simply not found."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.pagination import rows_after
from sendstream.models.api_key import ApiKey
from sendstream.models.audit import AuditLogEntry
from sendstream.models.user import User
from sendstream.models.workspace import Workspace


class WorkspaceRepository:
    async def get(self, session: AsyncSession, workspace_id: uuid.UUID) -> Workspace | None:
        return await session.get(Workspace, workspace_id)

    async def find_by_slug(self, session: AsyncSession, slug: str) -> Workspace | None:
        result = await session.execute(select(Workspace).where(Workspace.slug == slug))
        return result.scalar_one_or_none()

    async def slug_taken(self, session: AsyncSession, slug: str) -> bool:
        result = await session.execute(select(Workspace.id).where(Workspace.slug == slug))
        return result.first() is not None

    async def list(self, session: AsyncSession) -> Sequence[Workspace]:
        result = await session.execute(select(Workspace).order_by(Workspace.created_at))
        return result.scalars().all()

    async def count(self, session: AsyncSession) -> int:
        result = await session.execute(select(func.count()).select_from(Workspace))
        return int(result.scalar_one())


class UserRepository:
    async def get(
        self, session: AsyncSession, workspace_id: uuid.UUID, user_id: uuid.UUID
    ) -> User | None:
        result = await session.execute(
            select(User).where(User.workspace_id == workspace_id, User.id == user_id)
        )
        return result.scalar_one_or_none()

    async def get_for_update(
        self, session: AsyncSession, workspace_id: uuid.UUID, user_id: uuid.UUID
    ) -> User | None:
        result = await session.execute(
            select(User)
            .where(User.workspace_id == workspace_id, User.id == user_id)
            .with_for_update()
        )
        return result.scalar_one_or_none()

    async def find_by_email_key(
        self, session: AsyncSession, workspace_id: uuid.UUID, email_key: str
    ) -> User | None:
        result = await session.execute(
            select(User).where(User.workspace_id == workspace_id, User.email_key == email_key)
        )
        return result.scalar_one_or_none()

    async def page(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        after: uuid.UUID | None,
        limit: int,
    ) -> Sequence[User]:
        query = select(User).where(User.workspace_id == workspace_id)
        return await rows_after(session, query, User.id, after=after, limit=limit)

    async def lock_active_owner_ids(
        self, session: AsyncSession, workspace_id: uuid.UUID
    ) -> list[uuid.UUID]:
        # Locking every owner row serialises concurrent demotions and removals,
        # so two requests cannot each remove "one of two" owners.
        result = await session.execute(
            select(User.id)
            .where(
                User.workspace_id == workspace_id,
                User.role == "owner",
                User.disabled_at.is_(None),
            )
            .order_by(User.id)
            .with_for_update()
        )
        return list(result.scalars().all())


class ApiKeyRepository:
    async def find_by_prefix(self, session: AsyncSession, prefix: str) -> ApiKey | None:
        result = await session.execute(select(ApiKey).where(ApiKey.prefix == prefix))
        return result.scalar_one_or_none()

    async def get(
        self, session: AsyncSession, workspace_id: uuid.UUID, key_id: uuid.UUID
    ) -> ApiKey | None:
        result = await session.execute(
            select(ApiKey).where(ApiKey.workspace_id == workspace_id, ApiKey.id == key_id)
        )
        return result.scalar_one_or_none()

    async def find_in_workspace_by_prefix(
        self, session: AsyncSession, workspace_id: uuid.UUID, prefix: str
    ) -> ApiKey | None:
        result = await session.execute(
            select(ApiKey).where(ApiKey.workspace_id == workspace_id, ApiKey.prefix == prefix)
        )
        return result.scalar_one_or_none()

    async def page(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        after: uuid.UUID | None,
        limit: int,
    ) -> Sequence[ApiKey]:
        query = select(ApiKey).where(ApiKey.workspace_id == workspace_id)
        return await rows_after(session, query, ApiKey.id, after=after, limit=limit)

    async def touch(
        self,
        session: AsyncSession,
        key_id: uuid.UUID,
        *,
        ip: str | None,
        now: datetime,
        min_interval: timedelta,
    ) -> bool:
        """Record a use unless one was recorded less than `min_interval` ago;
        the condition is re-checked in SQL so racing processes write once."""
        result = await session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == key_id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= now - min_interval),
            )
            .values(last_used_at=now, last_used_ip=ip)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))


class AuditRepository:
    def add(self, session: AsyncSession, entry: AuditLogEntry) -> None:
        session.add(entry)

    async def page(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        before_id: int | None,
        limit: int,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Sequence[AuditLogEntry]:
        query = select(AuditLogEntry).where(AuditLogEntry.workspace_id == workspace_id)
        if before_id is not None:
            query = query.where(AuditLogEntry.id < before_id)
        if actor is not None:
            query = query.where(AuditLogEntry.actor_id == actor)
        if action is not None:
            query = query.where(AuditLogEntry.action == action)
        if since is not None:
            query = query.where(AuditLogEntry.occurred_at >= since)
        if until is not None:
            query = query.where(AuditLogEntry.occurred_at < until)
        # Newest first; the (workspace_id, id) index serves both order and cursor.
        result = await session.execute(query.order_by(AuditLogEntry.id.desc()).limit(limit))
        return result.scalars().all()


workspace_repository = WorkspaceRepository()
user_repository = UserRepository()
api_key_repository = ApiKeyRepository()
audit_repository = AuditRepository()
