"""Prometheus metrics. Each process keeps its own registry; the server's
`/metrics` adds queue depth and age read from the database at scrape time,
so they are right whichever process did the work."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUEST_SECONDS = Histogram(
    "sendstream_http_request_duration_seconds",
    "HTTP request latency by route template, method and status class.",
    ["method", "route", "status"],
    registry=REGISTRY,
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

JOB_QUEUE_DEPTH = Gauge(
    "sendstream_job_queue_depth",
    "Jobs waiting to run (state queued, run_at reached) by kind.",
    ["kind"],
    registry=REGISTRY,
)

JOB_QUEUE_OLDEST_AGE_SECONDS = Gauge(
    "sendstream_job_queue_oldest_age_seconds",
    "Seconds the oldest runnable job of each kind has waited past its run_at.",
    ["kind"],
    registry=REGISTRY,
)

JOB_RUNNING = Gauge(
    "sendstream_jobs_running",
    "Jobs currently leased by a worker, by kind.",
    ["kind"],
    registry=REGISTRY,
)

JOB_DEAD = Gauge(
    "sendstream_jobs_dead",
    "Dead-lettered jobs kept for inspection, by kind.",
    ["kind"],
    registry=REGISTRY,
)

JOB_OUTCOMES = Counter(
    "sendstream_job_outcomes_total",
    "Job attempts finished by this process, by kind and outcome "
    "(succeeded, retried, dead, cancelled).",
    ["kind", "outcome"],
    registry=REGISTRY,
)

JOB_SECONDS = Histogram(
    "sendstream_job_duration_seconds",
    "Time one job attempt took in this process, by kind.",
    ["kind"],
    registry=REGISTRY,
)
