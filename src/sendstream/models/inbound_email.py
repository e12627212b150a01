from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base, UUIDPrimaryKey


class InboundEmail(UUIDPrimaryKey, Base):
    """One mail received for a workspace's inbound domain, parsed (MIME to
    JSON). One row per received mail and workspace: `recipients` are the
    envelope recipients of this workspace, `route_id` the route that won
    (see InboundRoute). Bodies are kept up to `bounces.inbound_max_body_chars`
    (`text_truncated` / `html_truncated` say when cut). `headers` is the
    list of `[name, value]` pairs in order. `spf`, `dkim`, `dmarc`: pass,
    fail, softfail, neutral, none, temperror, permerror (`auth_details` says
    why). `in_reply_to_message_id`: the workspace's sent message this mail
    answers (from In-Reply-To / References), not a foreign key: messages
    may be pruned while the reply is kept. `inbound_message_id` points at the
    raw bytes, which retention may delete first (then SET NULL)."""

    __tablename__ = "inbound_emails"
    __table_args__ = (
        Index("ix_inbound_emails_inbound_message_id", "inbound_message_id", unique=True),
        Index(None, "workspace_id", "id"),
        Index(None, "workspace_id", "in_reply_to_message_id"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    inbound_message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("inbound_messages.id", ondelete="SET NULL")
    )
    route_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("inbound_routes.id", ondelete="SET NULL")
    )
    action: Mapped[str] = mapped_column(String(16))
    mail_from: Mapped[str | None] = mapped_column(String(512))
    recipients: Mapped[list[str]] = mapped_column(JSONB)
    from_address: Mapped[str | None] = mapped_column(Text)
    from_name: Mapped[str | None] = mapped_column(Text)
    to_addresses: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    cc_addresses: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    reply_to: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    subject: Mapped[str | None] = mapped_column(Text)
    message_id_header: Mapped[str | None] = mapped_column(Text)
    text_body: Mapped[str | None] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    text_truncated: Mapped[bool] = mapped_column(Boolean)
    html_truncated: Mapped[bool] = mapped_column(Boolean)
    headers: Mapped[list[list[str]]] = mapped_column(JSONB)
    spf: Mapped[str] = mapped_column(String(16))
    dkim: Mapped[str] = mapped_column(String(16))
    dmarc: Mapped[str] = mapped_column(String(16))
    auth_details: Mapped[dict[str, Any]] = mapped_column(JSONB)
    auto_submitted: Mapped[bool] = mapped_column(Boolean)
    in_reply_to_message_id: Mapped[uuid.UUID | None] = mapped_column()
    in_reply_to_contact_id: Mapped[uuid.UUID | None] = mapped_column()
    size_bytes: Mapped[int] = mapped_column(Integer)
    # Notes on what parsing tolerated (bad charset, a defect, an omitted part).
    notes: Mapped[list[str]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class InboundAttachment(UUIDPrimaryKey, Base):
    """An attachment (or inline part with a filename or Content-ID) of an
    inbound email. `content` is None when the part was larger than
    `bounces.inbound_max_attachment_bytes` (or past the total per mail):
    `omitted` is then true and `size`/`sha256` describe the part as
    received."""

    __tablename__ = "inbound_attachments"
    __table_args__ = (Index(None, "inbound_email_id", "position"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    inbound_email_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("inbound_emails.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str | None] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(255))
    content_id: Mapped[str | None] = mapped_column(Text)
    disposition: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    omitted: Mapped[bool] = mapped_column(Boolean)
    content: Mapped[bytes | None] = mapped_column(LargeBinary)
