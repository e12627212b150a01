"""Every query of webhook endpoints, each scoped by `workspace_id`: an id
from another workspace finds nothing."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.pagination import rows_after
from sendstream.models.webhook_endpoint import WebhookEndpoint
from sendstream.models.workspace import Workspace


class EndpointRepository:
    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> WebhookEndpoint | None:
        query = select(WebhookEndpoint).where(
            WebhookEndpoint.workspace_id == workspace_id, WebhookEndpoint.id == endpoint_id
        )
        if for_update:
            # populate_existing: a row already in the session is overwritten
            # with what the lock saw, not served from the identity map.
            query = query.with_for_update().execution_options(populate_existing=True)
        return (await session.execute(query)).scalar_one_or_none()

    async def add(self, session: AsyncSession, endpoint: WebhookEndpoint) -> WebhookEndpoint:
        session.add(endpoint)
        await session.flush()
        await session.refresh(endpoint)
        return endpoint

    async def save(self, session: AsyncSession, endpoint: WebhookEndpoint) -> WebhookEndpoint:
        """Flush changes made to a loaded endpoint; reloads server-set columns
        (`updated_at`)."""
        await session.flush()
        await session.refresh(endpoint)
        return endpoint

    async def page(
        self, session: AsyncSession, workspace_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
    ) -> Sequence[WebhookEndpoint]:
        """Oldest first (ids are time-ordered UUIDv7)."""
        query = select(WebhookEndpoint).where(WebhookEndpoint.workspace_id == workspace_id)
        return await rows_after(session, query, WebhookEndpoint.id, after=after, limit=limit)

    async def delete(self, session: AsyncSession, endpoint: WebhookEndpoint) -> None:
        await session.execute(
            delete(WebhookEndpoint).where(
                WebhookEndpoint.workspace_id == endpoint.workspace_id,
                WebhookEndpoint.id == endpoint.id,
            )
        )

    async def private_addresses_allowed(
        self, session: AsyncSession, workspace_id: uuid.UUID
    ) -> bool:
        allowed = (
            await session.execute(
                select(Workspace.webhooks_allow_private_addresses).where(
                    Workspace.id == workspace_id
                )
            )
        ).scalar_one_or_none()
        return bool(allowed)

    async def set_private_addresses_allowed(
        self, session: AsyncSession, workspace_id: uuid.UUID, allowed: bool
    ) -> None:
        await session.execute(
            update(Workspace)
            .where(Workspace.id == workspace_id)
            .values(webhooks_allow_private_addresses=allowed)
        )


endpoint_repository = EndpointRepository()
