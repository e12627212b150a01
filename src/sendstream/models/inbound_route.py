from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base, Timestamps, UUIDPrimaryKey

INBOUND_ACTIONS = ("webhook", "drop")


class InboundDomain(UUIDPrimaryKey, Timestamps, Base):
    """A domain whose mail a workspace receives through the MX (inbound
    routing). `name` is the lower-case A-label without a trailing dot and is
    unique across the deployment: one workspace owns a domain, so the MX
    knows whose mail it is from the recipient alone. `status`: `pending`
    (never checked conclusively), `verified` (its MX pointed at our MX host
    at the last conclusive check), `failed` (it did not). `check_results`
    holds the last check (`mx`: status, found, message)."""

    __tablename__ = "inbound_domains"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'verified', 'failed')", name="status"),
        Index("ix_inbound_domains_name", "name", unique=True),
        Index(None, "workspace_id", "id"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(253))
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    check_results: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    checked_at: Mapped[datetime | None] = mapped_column()
    verified_at: Mapped[datetime | None] = mapped_column()


class InboundRoute(UUIDPrimaryKey, Timestamps, Base):
    """Where mail to an inbound domain goes, by the recipient's local part.

    `pattern`: an exact local part (`support`), `*` (every address) or
    `prefix+*` / `prefix*` (local parts starting with the prefix), matched
    case-insensitively. Of the enabled routes matching a recipient, the
    lowest `priority` wins (then the oldest). `action`: `webhook` stores the
    mail and emits `inbound.received`; `drop` accepts and discards it."""

    __tablename__ = "inbound_routes"
    __table_args__ = (
        CheckConstraint(
            "action IN ({})".format(", ".join(f"'{a}'" for a in INBOUND_ACTIONS)), name="action"
        ),
        CheckConstraint("priority BETWEEN 0 AND 1000000", name="priority"),
        Index(None, "domain_id", "priority"),
        Index(None, "workspace_id", "id"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    domain_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("inbound_domains.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(200))
    pattern: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer, server_default="100")
    action: Mapped[str] = mapped_column(String(16), server_default="webhook")
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
