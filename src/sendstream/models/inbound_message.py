from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base, UUIDPrimaryKey

INBOUND_STATUSES = ("received", "processed", "ignored", "failed")


class InboundMessage(UUIDPrimaryKey, Base):
    """One mail received for the bounce domain (the MX, an IMAP mailbox ...),
    stored whole before it is acknowledged, so nothing accepted is lost: the
    `bounces.process` job, queued in the same transaction, classifies it and
    acts on what it says.

    `status`: received (not yet processed), processed (its verdicts were
    acted on), ignored (nothing of ours: no verified return path, or one
    naming another workspace than the mailbox's), failed (processing raised;
    `error` says why, the bytes are kept for inspection). `workspace_id` is
    known on arrival only for a workspace's own mailbox; otherwise
    processing sets it from the verified VERP return path. `raw` is stored
    as received (PostgreSQL compresses large values itself, TOAST)."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        CheckConstraint(
            "status IN ({})".format(", ".join(f"'{s}'" for s in INBOUND_STATUSES)),
            name="status",
        ),
        # Inspection: newest first, by workspace and by state.
        Index(None, "workspace_id", "received_at"),
        Index("ix_inbound_messages_status", "status", "received_at"),
    )

    workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE")
    )
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # mx | imap | ... : the channel the mail came through.
    source: Mapped[str] = mapped_column(String(16))
    # The envelope sender; None for the null sender `<>` every DSN uses.
    mail_from: Mapped[str | None] = mapped_column(String(512))
    rcpt_to: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    size_bytes: Mapped[int] = mapped_column(Integer)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), server_default="received")
    # Processing runs that committed (a run that failed and rolled back is
    # not counted; the job's own attempts say how often it was tried).
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None]
