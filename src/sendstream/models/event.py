from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base


class Event(Base):
    """One thing that happened, written in the transaction that made it happen.

    `position` increases by one per workspace in commit order (allocated from
    `EventCounter` just before commit), so a consumer that has read up to N
    has seen every committed event at or below N."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_workspace_id_type_position", "workspace_id", "type", "position"),
        # A contact's (or message's) timeline, newest first.
        Index(
            "ix_events_workspace_id_subject_position",
            "workspace_id",
            "subject_type",
            "subject_id",
            "position",
        ),
    )

    # No foreign key to `workspaces`: every writer locks the workspace's
    # `EventCounter` row (which has one) in the same transaction, and a
    # per-row check on the busiest table of all costs bulk writers ~10%.
    workspace_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # Identifiers compare bytewise: cheaper, and no locale can reorder them.
    type: Mapped[str] = mapped_column(String(100, collation="C"))
    occurred_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # The ids an event is about, for filtering without reading `data`.
    subject_type: Mapped[str | None] = mapped_column(String(50, collation="C"))
    subject_id: Mapped[str | None] = mapped_column(String(64, collation="C"))
    # `json`, not `jsonb`: stored as written (keys in order, no binary
    # re-encoding on every insert) and sent on as it is; nothing queries
    # inside it.
    data: Mapped[dict[str, Any]] = mapped_column(JSON, server_default=text("'{}'::json"))


class EventCounter(Base):
    """The last position handed out per workspace; its row lock orders commits."""

    __tablename__ = "event_counters"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    last_position: Mapped[int] = mapped_column(BigInteger, server_default="0")


class EventConsumer(Base):
    """A named reader of the outbox (webhooks, analytics, journeys, sync ...)."""

    __tablename__ = "event_consumers"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # Event types this consumer wants (exact or `prefix.*`); empty means all.
    types: Mapped[list[str]] = mapped_column(JSONB, server_default="[]")


class ConsumerOffset(Base):
    """How far one consumer has acknowledged in one workspace."""

    __tablename__ = "event_consumer_offsets"

    consumer: Mapped[str] = mapped_column(
        ForeignKey("event_consumers.name", ondelete="CASCADE"), primary_key=True
    )
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(BigInteger, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
