"""Prometheus metrics of webhook delivery, kept by the worker processes that
send (`sendstream worker --metrics-port`). Per endpoint: attempts by
outcome, latency, and the backlog (count and oldest age), refreshed by the
worker every `BACKLOG_REFRESH_SECONDS`; `GET /v1/webhooks/{id}/stats` gives
the same figures from the database."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from sendstream.core.metrics import REGISTRY

BACKLOG_REFRESH_SECONDS = 15.0

WEBHOOK_ATTEMPTS = Counter(
    "sendstream_webhook_attempts_total",
    "Webhook requests finished by this process, by endpoint and outcome "
    "(succeeded, retried, failed).",
    ["endpoint", "outcome"],
    registry=REGISTRY,
)

WEBHOOK_LATENCY_SECONDS = Histogram(
    "sendstream_webhook_request_duration_seconds",
    "Time from sending a webhook request to the end of its answer, by endpoint.",
    ["endpoint"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

WEBHOOK_FANOUT = Counter(
    "sendstream_webhook_deliveries_created_total",
    "Webhook deliveries created from outbox events by this process.",
    registry=REGISTRY,
)

WEBHOOK_BACKLOG = Gauge(
    "sendstream_webhook_backlog",
    "Webhook deliveries not finished (pending or in flight), by endpoint.",
    ["endpoint"],
    registry=REGISTRY,
)

WEBHOOK_BACKLOG_OLDEST_AGE_SECONDS = Gauge(
    "sendstream_webhook_backlog_oldest_age_seconds",
    "Seconds since the oldest unfinished webhook delivery was created, by endpoint.",
    ["endpoint"],
    registry=REGISTRY,
)
