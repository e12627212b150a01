from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base, UUIDPrimaryKey


class BounceRecord(UUIDPrimaryKey, Base):
    """One recipient verdict that was acted on (a DSN's recipient, an ARF
    complaint, an auto-reply, an ESP's bounce event), whatever the channel.

    `dedup_key` makes acting idempotent: the same verdict of the same
    inbound mail (or the same ESP event) is recorded once, and a re-run of
    its job finds it recorded and does nothing more. `action` says what
    came of it (suppressed, counted, unsubscribed, recorded, not_a_recipient
    ...). Soft bounces are counted per address from these rows (`kind`
    bounce, `hard` not true, within the policy's window)."""

    __tablename__ = "bounce_records"
    __table_args__ = (
        Index("uq_bounce_records_workspace_id_dedup_key", "workspace_id", "dedup_key", unique=True),
        # Per-address counting (the soft-bounce policy) and history.
        Index(None, "workspace_id", "recipient_key", "occurred_at"),
        # Per-message listing.
        Index(
            "ix_bounce_records_workspace_id_message_id",
            "workspace_id",
            "message_id",
            postgresql_where=text("message_id IS NOT NULL"),
        ),
        Index(None, "inbound_message_id"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL")
    )
    inbound_message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("inbound_messages.id", ondelete="SET NULL")
    )
    # mx | imap | ses | sendgrid | postmark | mailgun ...
    source: Mapped[str] = mapped_column(String(16))
    # The address the verdict is about, as reported, and its matching key.
    recipient: Mapped[str | None] = mapped_column(String(320))
    recipient_key: Mapped[str | None] = mapped_column(String(320, collation="C"))
    # verdict.Kind and verdict.Reason values.
    kind: Mapped[str] = mapped_column(String(16))
    hard: Mapped[bool | None] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(32))
    # RFC 3463 enhanced status code, the remote server's words and name.
    status: Mapped[str | None] = mapped_column(String(16))
    diagnostic: Mapped[str | None] = mapped_column(Text)
    remote_mta: Mapped[str | None] = mapped_column(String(255))
    feedback_type: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    dedup_key: Mapped[str] = mapped_column(String(64, collation="C"))
    occurred_at: Mapped[datetime] = mapped_column(server_default=func.now())
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
