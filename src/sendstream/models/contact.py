from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, PrimaryKeyConstraint, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base, Timestamps, UUIDPrimaryKey


class Contact(UUIDPrimaryKey, Timestamps, Base):
    """A person the workspace can mail: one row per workspace per matching key.

    `email` is the address as given (its local part is sent as given);
    `email_key` is the matching key (local part lower-cased, domain lower-cased
    and IDNA-encoded), unique per workspace. `attributes` holds custom field
    values keyed by field key, validated against `fields` on every write and
    indexed with GIN for `@>` filters. `status` is the global consent state:
    `active`, `unsubscribed`, `bounced` or `complained`."""

    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("workspace_id", "email_key"),
        Index(
            "uq_contacts_workspace_id_external_id",
            "workspace_id",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL"),
        ),
        # jsonb_path_ops: smaller and faster than the default for `@>`, the
        # only operator custom-field filters use on the whole column.
        Index(
            "ix_contacts_attributes",
            "attributes",
            postgresql_using="gin",
            postgresql_ops={"attributes": "jsonb_path_ops"},
        ),
        Index("ix_contacts_tags", "tags", postgresql_using="gin"),
        Index("ix_contacts_workspace_id_id", "workspace_id", "id"),
    )

    # No foreign key to `workspaces`: every writer takes the workspace from an
    # authenticated key or a locked import row, and a per-row check on the
    # table imports fill a million rows at a time costs them ~10%. (Deleting
    # a workspace, when it exists, deletes its contacts explicitly.)
    workspace_id: Mapped[uuid.UUID] = mapped_column()
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320, collation="C"))
    external_id: Mapped[str | None] = mapped_column(String(255))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    # IANA zone name (`Europe/Paris`) and BCP 47 tag (`fr-FR`).
    timezone: Mapped[str | None] = mapped_column(String(64))
    locale: Mapped[str | None] = mapped_column(String(35))
    status: Mapped[str] = mapped_column(String(16), server_default="active")
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")


class ContactExternalId(Base):
    """The contact's id in a connected system (`hubspot`, `salesforce` ...);
    one contact per id per system per workspace."""

    __tablename__ = "contact_external_ids"
    __table_args__ = (
        PrimaryKeyConstraint("workspace_id", "system", "external_id"),
        UniqueConstraint("contact_id", "system"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    system: Mapped[str] = mapped_column(String(50))
    external_id: Mapped[str] = mapped_column(String(255))
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
