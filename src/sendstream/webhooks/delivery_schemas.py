"""Request and answer shapes of webhook deliveries, attempts, replays, test
events and stats."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sendstream.core.pagination import Page
from sendstream.models.webhook_delivery import WebhookAttempt, WebhookDelivery

DeliveryStatus = Literal["pending", "delivering", "succeeded", "failed", "cancelled"]


class WebhookDeliveryRead(BaseModel):
    id: int
    webhook_id: str = Field(description="The `webhook-id` header: the same on every retry.")
    event_type: str = Field(description="The event's type, or `batch`.")
    event_positions: list[int] = Field(description="Outbox positions of the events carried.")
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    completed_at: datetime | None
    last_status_code: int | None
    last_error: str | None

    @classmethod
    def of(cls, row: WebhookDelivery) -> WebhookDeliveryRead:
        return cls(
            id=row.id,
            webhook_id=row.webhook_id,
            event_type=row.event_type,
            event_positions=list(row.event_positions),
            status=row.status,
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at,
            created_at=row.created_at,
            completed_at=row.completed_at,
            last_status_code=row.last_status_code,
            last_error=row.last_error,
        )


class WebhookDeliveryPage(Page[WebhookDeliveryRead]):
    pass


class WebhookAttemptRead(BaseModel):
    id: int
    delivery_id: int
    attempted_at: datetime
    request_headers: dict[str, str] = Field(
        description="As sent, signature included; custom header values are `[redacted]`."
    )
    request_body: str
    status_code: int | None = Field(description="null when no answer came (see `error`).")
    response_body: str | None = Field(description="The first KiB of the answer.")
    latency_ms: float
    error: str | None

    @classmethod
    def of(cls, row: WebhookAttempt, body: str) -> WebhookAttemptRead:
        return cls(
            id=row.id,
            delivery_id=row.delivery_id,
            attempted_at=row.attempted_at,
            request_headers=dict(row.request_headers),
            request_body=body,
            status_code=row.status_code,
            response_body=row.response_body,
            latency_ms=row.latency_ms,
            error=row.error,
        )


class WebhookAttemptPage(Page[WebhookAttemptRead]):
    pass


class WebhookReplayRange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: datetime = Field(description="Events that happened at or after this time ...")
    until: datetime | None = Field(
        default=None, description="... and before this one (default: now)."
    )


class WebhookReplayed(BaseModel):
    deliveries: int = Field(description="Deliveries created.")


class WebhookTestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_type: str = Field(
        max_length=100, description="A catalogued event type; its example is sent."
    )


class WebhookWindowStats(BaseModel):
    attempts: int
    success_rate: float | None = Field(description="2xx answers over attempts; null: none.")
    p50_latency_ms: float | None
    p99_latency_ms: float | None


class WebhookStats(BaseModel):
    last_hour: WebhookWindowStats
    last_day: WebhookWindowStats
    backlog: int = Field(description="Deliveries pending or in flight.")
    oldest_pending_age_seconds: float = Field(
        description="Seconds since the oldest of them was created; 0 without backlog."
    )

    @staticmethod
    def window(row: dict[str, Any]) -> WebhookWindowStats:
        attempts = int(row["attempts"])
        return WebhookWindowStats(
            attempts=attempts,
            success_rate=(int(row["succeeded"]) / attempts) if attempts else None,
            p50_latency_ms=None if row["p50"] is None else float(row["p50"]),
            p99_latency_ms=None if row["p99"] is None else float(row["p99"]),
        )
