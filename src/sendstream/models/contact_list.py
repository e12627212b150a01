from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, Index, PrimaryKeyConstraint, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base, Timestamps, UUIDPrimaryKey


class ContactList(UUIDPrimaryKey, Timestamps, Base):
    """A mailing list. `visibility` is `public` (shown in the preference
    centre) or `private`; `opt_in` is `single` or `double` (a subscription
    stays `unconfirmed` until the confirmation link is followed)."""

    __tablename__ = "lists"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(1000))
    visibility: Mapped[str] = mapped_column(String(16), server_default="private")
    opt_in: Mapped[str] = mapped_column(String(16), server_default="single")


class Subscription(Timestamps, Base):
    """A contact's state on one list: `subscribed`, `unconfirmed`,
    `unsubscribed`, `bounced` or `complained`. Every change of state also
    writes a `ConsentRecord`."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        PrimaryKeyConstraint("list_id", "contact_id"),
        Index("ix_subscriptions_contact_id", "contact_id"),
        Index("ix_subscriptions_list_id_status", "list_id", "status"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    list_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
