from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    REAL,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base


class WebhookDelivery(Base):
    """One request body owed to one webhook endpoint: one event, or a batch
    of events for an endpoint that asked for batches, or a test sample.

        pending -> delivering -> succeeded | pending (retry later) | failed

    Written by the `webhooks` outbox consumer in the transaction that acks
    the events it carries, so a crash neither loses nor doubles the fan-out.
    `payload` is the exact body, fixed when the delivery is closed (at once
    for a single event, when the batch window ends for a batch), so every
    retry sends the same bytes under the same `webhook_id`. Senders claim
    due rows with `FOR UPDATE SKIP LOCKED` and lease them (`lease_until`);
    a sender that dies gives them back when the lease runs out."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'delivering', 'succeeded', 'failed', 'cancelled')",
            name="status",
        ),
        # The claim: due work per endpoint, oldest first (the id too, so
        # `ORDER BY next_attempt_at, id LIMIT n` reads n entries).
        Index(
            "ix_webhook_deliveries_due",
            "endpoint_id",
            "next_attempt_at",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
        # Leases of senders that died, and in-flight counts per endpoint.
        Index(
            "ix_webhook_deliveries_delivering",
            "endpoint_id",
            "lease_until",
            postgresql_where=text("status = 'delivering'"),
        ),
        # FIFO endpoints: the earliest open delivery per ordering key goes first.
        Index(
            "ix_webhook_deliveries_ordering",
            "endpoint_id",
            "ordering_key",
            "id",
            postgresql_where=text(
                "ordering_key IS NOT NULL AND status IN ('pending', 'delivering')"
            ),
        ),
        # The API's list, newest first.
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
        # Pruning finished deliveries past retention (webhooks/tasks.py).
        Index(
            "ix_webhook_deliveries_finished",
            "completed_at",
            postgresql_where=text("status IN ('succeeded', 'failed', 'cancelled')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    # No foreign key to `workspaces`: the endpoint's cascades from its
    # workspace, and one check per row is all the hottest insert pays.
    workspace_id: Mapped[uuid.UUID]
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    # The `webhook-id` header: the same for one event and endpoint across
    # retries and replays, so a receiver can drop duplicates by it.
    webhook_id: Mapped[str] = mapped_column(String(100, collation="C"))
    # The outbox positions carried (empty for a test sample).
    event_positions: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), server_default="{}")
    # The event type, or "batch".
    event_type: Mapped[str] = mapped_column(String(100, collation="C"))
    # The contact id that orders deliveries of a FIFO endpoint; None: unordered.
    ordering_key: Mapped[str | None] = mapped_column(String(64, collation="C"))
    # `json`, not `jsonb`: the bytes are kept as written and sent as they are.
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    # pending | delivering | succeeded | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=func.now())
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    completed_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)


class WebhookAttempt(Base):
    """One HTTP request made for a delivery and what came back, written in
    the transaction that records the delivery's resulting state."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (
        Index("ix_webhook_attempts_endpoint_id_id", "endpoint_id", "id"),
        Index("ix_webhook_attempts_delivery_id", "delivery_id"),
        # Stats over the last hour or day.
        Index("ix_webhook_attempts_endpoint_id_attempted_at", "endpoint_id", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    workspace_id: Mapped[uuid.UUID]
    # Kept beside `delivery_id` so an endpoint's attempts page without a join.
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    attempted_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # As sent, signature included; custom header values are redacted (they
    # may carry the receiver's credentials).
    request_headers: Mapped[dict[str, str]] = mapped_column(JSONB, server_default="{}")
    # NULL: the body was the delivery's payload (as for every attempt the
    # sender makes), so it is not stored a second time per attempt.
    request_body: Mapped[str | None] = mapped_column(Text)
    status_code: Mapped[int | None] = mapped_column(Integer)
    # The first KiB of the response body (decoded leniently).
    response_body: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[float] = mapped_column(REAL)
    error: Mapped[str | None] = mapped_column(Text)
