from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base, Timestamps, UUIDPrimaryKey


class WebhookEndpoint(UUIDPrimaryKey, Timestamps, Base):
    """A receiver of a workspace's events over HTTP (Standard Webhooks).

    `event_types` holds exact event types or patterns (`message.*`, `*`);
    `filters` narrows them by the event data's `stream`, `list_id` and
    `tags` (see `webhooks.catalogue.passes_filters`). Every secret column is
    a `core.secrets` token bound to `webhook_endpoints.<column>:<id>`: the
    signing secret (raw bytes of the `whsec_` value), the previous one while
    a rotation overlaps (until `previous_secret_expires_at`), the Ed25519
    private key (raw 32 bytes) for `v1a`, and the custom headers (a JSON
    object, since they may carry the receiver's credentials).

    `disabled_reason` / `disabled_at` are set when delivery gave up on the
    endpoint (410 Gone, failing since `failing_since` for too long) or when
    a user disabled it; `enabled` is false then."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        Index("ix_webhook_endpoints_workspace_id_created_at", "workspace_id", "created_at"),
        CheckConstraint("signature_scheme IN ('v1', 'v1a', 'v1,v1a')", name="signature_scheme"),
        CheckConstraint("max_concurrency BETWEEN 1 AND 100", name="max_concurrency"),
        CheckConstraint(
            "batch_max_events IS NULL OR batch_max_events BETWEEN 1 AND 1000",
            name="batch_max_events",
        ),
        CheckConstraint("batch_window_ms BETWEEN 0 AND 60000", name="batch_window_ms"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    event_types: Mapped[list[str]] = mapped_column(ARRAY(Text))
    filters: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    headers_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary, info={"encrypted": True})
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary, info={"encrypted": True})
    previous_secret_encrypted: Mapped[bytes | None] = mapped_column(
        LargeBinary, info={"encrypted": True}
    )
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column()
    signature_scheme: Mapped[str] = mapped_column(String(16), server_default="v1")
    ed25519_private_encrypted: Mapped[bytes | None] = mapped_column(
        LargeBinary, info={"encrypted": True}
    )
    # FIFO: events about one contact are delivered one after the other, in
    # position order; otherwise up to `max_concurrency` requests at once.
    fifo: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    max_concurrency: Mapped[int] = mapped_column(Integer, server_default="10")
    # NULL: one event per request; else up to this many per request, waiting
    # at most `batch_window_ms` for a batch to fill.
    batch_max_events: Mapped[int | None] = mapped_column(Integer)
    batch_window_ms: Mapped[int] = mapped_column(Integer, server_default="1000")
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    disabled_at: Mapped[datetime | None] = mapped_column()
    failing_since: Mapped[datetime | None] = mapped_column()
