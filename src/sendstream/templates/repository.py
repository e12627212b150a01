"""Every query of templates and their versions. Each one is scoped by
`workspace_id`: an id or key from another workspace finds nothing, and a
partial or layout is only ever looked up in the workspace of the template
that names it."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Text, any_, func, literal, select, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from sendstream.models.template import Template
from sendstream.models.template_version import TemplateVersion


class TemplateRepository:
    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        template_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Template | None:
        query = select(Template).where(
            Template.workspace_id == workspace_id, Template.id == template_id
        )
        if for_update:
            query = query.with_for_update()
        return (await session.execute(query)).scalar_one_or_none()

    async def find_by_key(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        key: str,
        *,
        for_update: bool = False,
    ) -> Template | None:
        query = select(Template).where(Template.workspace_id == workspace_id, Template.key == key)
        if for_update:
            query = query.with_for_update()
        return (await session.execute(query)).scalar_one_or_none()

    async def insert(
        self, session: AsyncSession, workspace_id: uuid.UUID, values: dict[str, Any]
    ) -> Template | None:
        """The new template, or None when its key is taken (even by a
        concurrent insert: ON CONFLICT waits for it and then skips)."""
        template_id = (
            await session.execute(
                insert(Template)
                .values(workspace_id=workspace_id, **values)
                .on_conflict_do_nothing(index_elements=["workspace_id", "key"])
                .returning(Template.id)
            )
        ).scalar_one_or_none()
        if template_id is None:
            return None
        return await self.get(session, workspace_id, template_id)

    async def page(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        kind: str | None,
        archived: bool | None,
        after: uuid.UUID | None,
        limit: int,
    ) -> Sequence[tuple[Template, int | None]]:
        """Templates oldest first, each with its active version's number."""
        active = aliased(TemplateVersion)
        query = (
            select(Template, active.number)
            .outerjoin(active, active.id == Template.active_version_id)
            .where(Template.workspace_id == workspace_id)
            .order_by(Template.id)
            .limit(limit)
        )
        if kind is not None:
            query = query.where(Template.kind == kind)
        if archived is not None:
            query = query.where(
                Template.archived_at.is_not(None) if archived else Template.archived_at.is_(None)
            )
        if after is not None:
            query = query.where(Template.id > after)
        return [(row[0], row[1]) for row in await session.execute(query)]

    async def allocate_version_number(self, session: AsyncSession, template: Template) -> int:
        """The next version number; the caller holds the template's row lock,
        so two concurrent saves get 2 and 3, never 2 twice."""
        number = (
            await session.execute(
                update(Template)
                .where(Template.workspace_id == template.workspace_id, Template.id == template.id)
                .values(latest_version=Template.latest_version + 1, updated_at=func.now())
                .returning(Template.latest_version)
            )
        ).scalar_one()
        await session.refresh(template)
        return int(number)

    async def insert_version(
        self, session: AsyncSession, values: dict[str, Any]
    ) -> TemplateVersion:
        version = TemplateVersion(**values)
        session.add(version)
        await session.flush()
        await session.refresh(version)
        return version

    async def set_active(
        self, session: AsyncSession, template: Template, version_id: uuid.UUID
    ) -> None:
        template.active_version_id = version_id
        await session.flush()
        await session.refresh(template)

    async def archive(self, session: AsyncSession, template: Template) -> None:
        await session.execute(
            update(Template)
            .where(Template.workspace_id == template.workspace_id, Template.id == template.id)
            .values(archived_at=func.now(), updated_at=func.now())
        )
        await session.refresh(template)

    async def get_version(
        self, session: AsyncSession, workspace_id: uuid.UUID, template_id: uuid.UUID, number: int
    ) -> TemplateVersion | None:
        return (
            await session.execute(
                select(TemplateVersion).where(
                    TemplateVersion.workspace_id == workspace_id,
                    TemplateVersion.template_id == template_id,
                    TemplateVersion.number == number,
                )
            )
        ).scalar_one_or_none()

    async def get_version_by_id(
        self, session: AsyncSession, workspace_id: uuid.UUID, version_id: uuid.UUID
    ) -> tuple[Template, TemplateVersion] | None:
        row = (
            await session.execute(
                select(Template, TemplateVersion)
                .join(TemplateVersion, TemplateVersion.template_id == Template.id)
                .where(
                    Template.workspace_id == workspace_id,
                    TemplateVersion.workspace_id == workspace_id,
                    TemplateVersion.id == version_id,
                )
            )
        ).first()
        return (row[0], row[1]) if row is not None else None

    async def versions_page(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        template_id: uuid.UUID,
        *,
        before: int | None,
        limit: int,
    ) -> Sequence[TemplateVersion]:
        """Versions newest first."""
        query = (
            select(TemplateVersion)
            .where(
                TemplateVersion.workspace_id == workspace_id,
                TemplateVersion.template_id == template_id,
            )
            .order_by(TemplateVersion.number.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(TemplateVersion.number < before)
        return list(await session.scalars(query))

    async def with_active_versions(
        self, session: AsyncSession, workspace_id: uuid.UUID, keys: Collection[str]
    ) -> dict[str, tuple[Template, TemplateVersion | None]]:
        """Templates of this workspace by key, each with its active version
        (archived ones included, so the caller can say why one is unusable)."""
        if not keys:
            return {}
        rows = await session.execute(
            select(Template, TemplateVersion)
            .outerjoin(
                TemplateVersion,
                (TemplateVersion.id == Template.active_version_id)
                & (TemplateVersion.workspace_id == workspace_id),
            )
            .where(
                Template.workspace_id == workspace_id,
                Template.key == any_(literal(sorted(keys), ARRAY(Text))),
            )
        )
        return {row[0].key: (row[0], row[1]) for row in rows}

    async def used_by(
        self, session: AsyncSession, workspace_id: uuid.UUID, key: str, limit: int = 10
    ) -> list[str]:
        """Keys of live templates whose active version uses `key` as a
        partial or layout."""
        rows = await session.execute(
            select(Template.key)
            .join(TemplateVersion, TemplateVersion.id == Template.active_version_id)
            .where(
                Template.workspace_id == workspace_id,
                Template.archived_at.is_(None),
                Template.key != key,
                (TemplateVersion.layout_key == key)
                | (literal(key, Text) == any_(TemplateVersion.partial_keys)),
            )
            .order_by(Template.key)
            .limit(limit)
        )
        return [row[0] for row in rows]


template_repository = TemplateRepository()
