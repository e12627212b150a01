"""Every query of inbound routing: domains, routes, parsed mail and attachments.

API queries are scoped by `workspace_id`. Two go across workspaces by
design, because the MX learns the workspace from the recipient's domain:
`find_domain_by_name` (a domain belongs to one workspace, unique name) and
`routes_for_domain` (the routes of the domain found)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from sendstream.core.pagination import rows_after
from sendstream.models.inbound_email import InboundAttachment, InboundEmail
from sendstream.models.inbound_message import InboundMessage
from sendstream.models.inbound_route import InboundDomain, InboundRoute
from sendstream.models.message import Message


class InboundRepository:
    # --- domains

    async def find_domain_by_name(self, session: AsyncSession, name: str) -> InboundDomain | None:
        return (
            await session.execute(select(InboundDomain).where(InboundDomain.name == name))
        ).scalar_one_or_none()

    async def get_domain(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        domain_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> InboundDomain | None:
        query = select(InboundDomain).where(
            InboundDomain.workspace_id == workspace_id, InboundDomain.id == domain_id
        )
        if for_update:
            query = query.with_for_update().execution_options(populate_existing=True)
        return (await session.execute(query)).scalar_one_or_none()

    async def page_domains(
        self, session: AsyncSession, workspace_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
    ) -> Sequence[InboundDomain]:
        query = select(InboundDomain).where(InboundDomain.workspace_id == workspace_id)
        return await rows_after(session, query, InboundDomain.id, after=after, limit=limit)

    async def delete_domain(
        self, session: AsyncSession, workspace_id: uuid.UUID, domain_id: uuid.UUID
    ) -> None:
        await session.execute(
            delete(InboundDomain).where(
                InboundDomain.workspace_id == workspace_id, InboundDomain.id == domain_id
            )
        )

    async def add(self, session: AsyncSession, row: Any) -> Any:
        session.add(row)
        await session.flush()
        await session.refresh(row)
        return row

    async def save(self, session: AsyncSession, row: Any) -> Any:
        await session.flush()
        await session.refresh(row)
        return row

    # --- routes

    async def routes_for_domain(
        self, session: AsyncSession, domain_id: uuid.UUID
    ) -> Sequence[InboundRoute]:
        """The domain's enabled routes, the one that wins first."""
        query = (
            select(InboundRoute)
            .where(InboundRoute.domain_id == domain_id, InboundRoute.enabled.is_(True))
            .order_by(InboundRoute.priority, InboundRoute.id)
        )
        return (await session.scalars(query)).all()

    async def get_route(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        route_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> InboundRoute | None:
        query = select(InboundRoute).where(
            InboundRoute.workspace_id == workspace_id, InboundRoute.id == route_id
        )
        if for_update:
            query = query.with_for_update().execution_options(populate_existing=True)
        return (await session.execute(query)).scalar_one_or_none()

    async def page_routes(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        domain_id: uuid.UUID | None,
        after: uuid.UUID | None,
        limit: int,
    ) -> Sequence[InboundRoute]:
        query = select(InboundRoute).where(InboundRoute.workspace_id == workspace_id)
        if domain_id is not None:
            query = query.where(InboundRoute.domain_id == domain_id)
        return await rows_after(session, query, InboundRoute.id, after=after, limit=limit)

    async def delete_route(
        self, session: AsyncSession, workspace_id: uuid.UUID, route_id: uuid.UUID
    ) -> None:
        await session.execute(
            delete(InboundRoute).where(
                InboundRoute.workspace_id == workspace_id, InboundRoute.id == route_id
            )
        )

    # --- parsed mail

    async def email_for_inbound(
        self, session: AsyncSession, inbound_message_id: uuid.UUID
    ) -> uuid.UUID | None:
        return (
            await session.execute(
                select(InboundEmail.id).where(InboundEmail.inbound_message_id == inbound_message_id)
            )
        ).scalar_one_or_none()

    async def get_email(
        self, session: AsyncSession, workspace_id: uuid.UUID, email_id: uuid.UUID
    ) -> InboundEmail | None:
        return (
            await session.execute(
                select(InboundEmail).where(
                    InboundEmail.workspace_id == workspace_id, InboundEmail.id == email_id
                )
            )
        ).scalar_one_or_none()

    async def page_emails(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        route_id: uuid.UUID | None,
        in_reply_to_message_id: uuid.UUID | None,
        from_address: str | None,
        since: datetime | None,
        before: uuid.UUID | None,
        limit: int,
    ) -> Sequence[InboundEmail]:
        """Newest first; bodies are not loaded (the list does not show them)."""
        query = (
            select(InboundEmail)
            .options(defer(InboundEmail.text_body), defer(InboundEmail.html_body))
            .where(InboundEmail.workspace_id == workspace_id)
        )
        if route_id is not None:
            query = query.where(InboundEmail.route_id == route_id)
        if in_reply_to_message_id is not None:
            query = query.where(InboundEmail.in_reply_to_message_id == in_reply_to_message_id)
        if from_address is not None:
            query = query.where(InboundEmail.from_address.ilike(from_address))
        if since is not None:
            query = query.where(InboundEmail.created_at >= since)
        if before is not None:
            query = query.where(InboundEmail.id < before)
        return (await session.scalars(query.order_by(InboundEmail.id.desc()).limit(limit))).all()

    async def attachments(
        self, session: AsyncSession, workspace_id: uuid.UUID, email_id: uuid.UUID
    ) -> Sequence[InboundAttachment]:
        """Metadata only (the content stays unloaded)."""
        query = (
            select(InboundAttachment)
            .options(defer(InboundAttachment.content))
            .where(
                InboundAttachment.workspace_id == workspace_id,
                InboundAttachment.inbound_email_id == email_id,
            )
            .order_by(InboundAttachment.position)
        )
        return (await session.scalars(query)).all()

    async def get_attachment(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        email_id: uuid.UUID,
        attachment_id: uuid.UUID,
    ) -> InboundAttachment | None:
        return (
            await session.execute(
                select(InboundAttachment).where(
                    InboundAttachment.workspace_id == workspace_id,
                    InboundAttachment.inbound_email_id == email_id,
                    InboundAttachment.id == attachment_id,
                )
            )
        ).scalar_one_or_none()

    async def raw_of(
        self, session: AsyncSession, workspace_id: uuid.UUID, inbound_message_id: uuid.UUID
    ) -> bytes | None:
        return (
            await session.execute(
                select(InboundMessage.raw).where(
                    InboundMessage.workspace_id == workspace_id,
                    InboundMessage.id == inbound_message_id,
                )
            )
        ).scalar_one_or_none()

    # --- replies

    async def find_sent_message(
        self, session: AsyncSession, workspace_id: uuid.UUID, message_id_headers: Sequence[str]
    ) -> tuple[uuid.UUID, uuid.UUID | None] | None:
        """(message id, contact id) of the workspace's message with one of
        these Message-IDs, the first in the given order that exists."""
        if not message_id_headers:
            return None
        rows = (
            await session.execute(
                select(Message.id, Message.contact_id, Message.message_id_header).where(
                    Message.workspace_id == workspace_id,
                    Message.message_id_header.in_(list(message_id_headers)),
                )
            )
        ).all()
        by_header = {row.message_id_header: (row.id, row.contact_id) for row in rows}
        for header in message_id_headers:
            if header in by_header:
                return by_header[header]
        return None


inbound_repository = InboundRepository()
