"""Every query of the tracking domain, each scoped by `workspace_id`.

Writes here are the engagement counters on `messages` only. Consent,
subscriptions and suppressions change through the contacts domain's
services (consent records and events come with them); this module merely
reads lists, subscriptions and contacts to draw the preference page.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.models.contact import Contact
from sendstream.models.contact_list import ContactList, Subscription
from sendstream.models.message import Message
from sendstream.models.suppression import Suppression
from sendstream.models.workspace import Workspace


@dataclass(frozen=True, slots=True)
class MessageView:
    """What a hit needs of its message."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    stream: str
    to_email: str
    to_email_key: str
    contact_id: uuid.UUID | None
    list_id: uuid.UUID | None
    track_opens: bool
    track_clicks: bool
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class ContactView:
    id: uuid.UUID
    email: str
    email_key: str
    status: str


@dataclass(frozen=True, slots=True)
class ListChoice:
    id: uuid.UUID
    name: str
    description: str | None
    public: bool
    # The contact's subscription state on it; None when it never had one.
    status: str | None


class TrackingRepository:
    async def find_message(
        self, session: AsyncSession, workspace_id: uuid.UUID, message_id: uuid.UUID
    ) -> MessageView | None:
        row = (
            await session.execute(
                select(
                    Message.id,
                    Message.workspace_id,
                    Message.stream,
                    Message.to_email,
                    Message.to_email_key,
                    Message.contact_id,
                    Message.list_id,
                    Message.track_opens,
                    Message.track_clicks,
                    Message.sent_at,
                ).where(Message.workspace_id == workspace_id, Message.id == message_id)
            )
        ).one_or_none()
        return MessageView(**row._asdict()) if row is not None else None

    async def count_human(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        message_id: uuid.UUID,
        now: datetime,
        kind: Literal["open", "click"],
    ) -> bool:
        """Count one human open or click; True when it is the message's first
        of its kind (unique)."""
        count, first = (
            (Message.opens, Message.first_opened_at)
            if kind == "open"
            else (Message.clicks, Message.first_clicked_at)
        )
        found = await session.scalar(
            update(Message)
            .where(Message.workspace_id == workspace_id, Message.id == message_id)
            .values({count: count + 1, first: func.coalesce(first, now)})
            .returning(first)
        )
        return found == now

    async def find_contact(
        self, session: AsyncSession, workspace_id: uuid.UUID, contact_id: uuid.UUID
    ) -> ContactView | None:
        row = (
            await session.execute(
                select(Contact.id, Contact.email, Contact.email_key, Contact.status).where(
                    Contact.workspace_id == workspace_id, Contact.id == contact_id
                )
            )
        ).one_or_none()
        return ContactView(*row) if row is not None else None

    async def workspace_name(self, session: AsyncSession, workspace_id: uuid.UUID) -> str | None:
        name: str | None = await session.scalar(
            select(Workspace.name).where(Workspace.id == workspace_id)
        )
        return name

    async def list_choices(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        contact_id: uuid.UUID,
        also: uuid.UUID | None,
    ) -> list[ListChoice]:
        """The workspace's public lists and the list `also` (the message's,
        public or not), with the contact's state on each, by name."""
        shown = ContactList.visibility == "public"
        if also is not None:
            shown = or_(shown, ContactList.id == also)
        rows = await session.execute(
            select(
                ContactList.id,
                ContactList.name,
                ContactList.description,
                ContactList.visibility == "public",
                Subscription.status,
            )
            .outerjoin(
                Subscription,
                and_(
                    Subscription.list_id == ContactList.id,
                    Subscription.contact_id == contact_id,
                    Subscription.workspace_id == workspace_id,
                ),
            )
            .where(ContactList.workspace_id == workspace_id, shown)
            .order_by(ContactList.name, ContactList.id)
        )
        return [ListChoice(*row) for row in rows]

    async def list_state(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        contact_id: uuid.UUID,
        list_id: uuid.UUID,
    ) -> ListChoice | None:
        """The list with the contact's state on it; None when there is no such list."""
        row = (
            await session.execute(
                select(
                    ContactList.id,
                    ContactList.name,
                    ContactList.description,
                    ContactList.visibility == "public",
                    Subscription.status,
                )
                .outerjoin(
                    Subscription,
                    and_(
                        Subscription.list_id == ContactList.id,
                        Subscription.contact_id == contact_id,
                        Subscription.workspace_id == workspace_id,
                    ),
                )
                .where(ContactList.workspace_id == workspace_id, ContactList.id == list_id)
            )
        ).one_or_none()
        return ListChoice(*row) if row is not None else None

    async def suppression_reason(
        self, session: AsyncSession, workspace_id: uuid.UUID, address_hash: str
    ) -> str | None:
        """The reason of the address's own suppression entry (not its domain's)."""
        reason: str | None = await session.scalar(
            select(Suppression.reason).where(
                Suppression.workspace_id == workspace_id,
                Suppression.address_hash == address_hash,
            )
        )
        return reason

    async def find_message_anywhere(
        self, session: AsyncSession, message_id: uuid.UUID
    ) -> MessageView | None:
        """A message by id alone, for the mailto unsubscribe address, whose
        short token names no workspace; the caller checks the token's MAC
        against the workspace found before trusting it."""
        workspace_id = await session.scalar(
            select(Message.workspace_id).where(Message.id == message_id)
        )
        if workspace_id is None:
            return None
        return await self.find_message(session, workspace_id, message_id)


tracking_repository = TrackingRepository()
