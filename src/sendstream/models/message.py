from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base, UUIDPrimaryKey


class Message(UUIDPrimaryKey, Base):
    """One email to one primary recipient (`to_email`; `cc`/`bcc` ride in the
    same SMTP transaction), written `queued` in the transaction that asked
    for it and moved by delivery workers:

        queued -> sending -> sent | deferred (-> sending again) | failed

    Workers claim due rows (`status` queued or deferred, `next_attempt_at`
    passed) in batches with `FOR UPDATE SKIP LOCKED`, set `sending` with a
    lease (`lease_until`); a worker that dies gives its rows back when the
    lease runs out. Content is either a template version plus per-recipient
    `data`, or inline `subject`/`html`/`text`. Every transition is an outbox
    event with subject ("message", id).

    Engagement counters (`opens`, `clicks` and the first times) are kept by
    the tracking domain; machine activity (privacy proxies, link scanners) is
    not counted in them."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_workspace_id_id", "workspace_id", "id"),
        # The delivery claim: due work only, oldest first.
        Index(
            "ix_messages_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('queued', 'deferred')"),
        ),
        # Expired leases of workers that died.
        Index(
            "ix_messages_sending_lease", "lease_until", postgresql_where=text("status = 'sending'")
        ),
        Index("ix_messages_workspace_id_to_email_key", "workspace_id", "to_email_key"),
        # A bounce, an ESP event or a reply names the message by its
        # Message-ID header (found within the workspace only).
        Index("ix_messages_workspace_id_message_id_header", "workspace_id", "message_id_header"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    # transactional | marketing: decides tracking and unsubscribe defaults.
    stream: Mapped[str] = mapped_column(String(16))
    # queued | sending | sent | deferred | failed
    status: Mapped[str] = mapped_column(String(16), server_default="queued")
    from_email: Mapped[str] = mapped_column(String(320))
    from_name: Mapped[str | None] = mapped_column(String(200))
    reply_to: Mapped[str | None] = mapped_column(String(320))
    to_email: Mapped[str] = mapped_column(String(320))
    # The contacts matching key of `to_email` (suppression, contact lookups).
    to_email_key: Mapped[str] = mapped_column(String(320, collation="C"))
    to_name: Mapped[str | None] = mapped_column(String(200))
    # [{"email": ..., "name": ...}, ...]
    cc: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    bcc: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    contact_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL")
    )
    list_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("lists.id", ondelete="SET NULL"))
    # Template content: the exact version rendered, and the recipient's data.
    template_version_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("template_versions.id", ondelete="RESTRICT")
    )
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    # Inline content (no template).
    subject: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    # Extra headers [[name, value], ...], in order.
    headers: Mapped[list[list[str]]] = mapped_column(JSONB, server_default="[]")
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, server_default="{}")
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    track_opens: Mapped[bool] = mapped_column(Boolean, server_default="false")
    track_clicks: Mapped[bool] = mapped_column(Boolean, server_default="false")
    # The RFC 5322 Message-ID, fixed at queue time so retries keep it.
    message_id_header: Mapped[str] = mapped_column(String(255))
    # When to send (scheduling) and, after a deferral, when to try again.
    send_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=func.now())
    lease_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    # The last SMTP reply (or error) and the relay that gave it.
    last_response: Mapped[str | None] = mapped_column(Text)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    relay: Mapped[str | None] = mapped_column(String(255))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    opens: Mapped[int] = mapped_column(Integer, server_default="0")
    clicks: Mapped[int] = mapped_column(Integer, server_default="0")
    first_opened_at: Mapped[datetime | None]
    first_clicked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    sent_at: Mapped[datetime | None]


class MessageAttachment(Base):
    """An attachment of a message. Content is stored once per workspace by
    its SHA-256 (`attachment_blobs`), so a batch sending the same file to
    500 recipients stores it once."""

    __tablename__ = "message_attachments"

    message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    # Set for inline parts (cid: references in the HTML).
    content_id: Mapped[str | None] = mapped_column(String(255))


class AttachmentBlob(Base):
    __tablename__ = "attachment_blobs"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    size_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class CapturedMessage(Base):
    """What the capture transport (local development, no SMTP relay
    configured) kept instead of sending: the exact bytes that would have gone
    to SMTP."""

    __tablename__ = "captured_messages"

    message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    mail_from: Mapped[str] = mapped_column(String(320))
    recipients: Mapped[list[str]] = mapped_column(ARRAY(Text))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
