from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    PrimaryKeyConstraint,
    String,
    Text,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base

REASONS = ("unsubscribed", "bounced", "complained", "manual", "erased")
SOURCES = (
    "api",
    "cli",
    "import",
    "unsubscribe_link",
    "bounce",
    "complaint",
    "erasure",
    "manual",
    # Soft bounces reached `bounces.soft_bounce_limit` (bounces/actions.py).
    "soft_bounce_policy",
)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Suppression(Base):
    """An address, or a whole domain, that must not be mailed; keyed by a
    keyed hash (HMAC-SHA256 under a key derived from the master key) of the
    address's matching key, or of `@domain` for a domain entry, so one
    lookup by hash answers for both, and an erased person leaves no readable
    address behind.

    `reason`: unsubscribed, bounced (hard bounce), complained, manual,
    erased (GDPR erasure: `address` and `note` are NULL, only the hash is
    kept, and only an explicit new opt-in lifts it). `address` is the
    address as it was suppressed (shown by the API); `domain` is set only on
    domain entries. `source`: how the entry came (api, cli, import,
    unsubscribe_link, bounce, complaint, erasure, manual)."""

    __tablename__ = "suppressions"
    __table_args__ = (
        PrimaryKeyConstraint("workspace_id", "address_hash"),
        # The list, newest first, page after page.
        Index(None, "workspace_id", "created_at", "address_hash"),
        CheckConstraint(_one_of("reason", REASONS), name="reason"),
        CheckConstraint(_one_of("source", SOURCES), name="source"),
        CheckConstraint("address IS NULL OR domain IS NULL", name="address_or_domain"),
        CheckConstraint(
            "reason <> 'erased' OR (address IS NULL AND domain IS NULL AND note IS NULL)",
            name="erased_keeps_only_the_hash",
        ),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    address_hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    address: Mapped[str | None] = mapped_column(String(320))
    domain: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
