"""Liveness, readiness and Prometheus metrics; unauthenticated, outside /v1."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from sendstream.core import migrate
from sendstream.core.db import get_database
from sendstream.core.metrics import (
    JOB_DEAD,
    JOB_QUEUE_DEPTH,
    JOB_QUEUE_OLDEST_AGE_SECONDS,
    JOB_RUNNING,
    REGISTRY,
)

router = APIRouter(include_in_schema=False)

# The schema heads this build expects; read once, it never changes at runtime.
_expected_heads: set[str] | None = None


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and serving; says nothing about dependencies."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz() -> Response:
    """Ready when the database answers and its schema is at this build's head."""
    global _expected_heads
    db = get_database()
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(3):
            async with db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
                current = {r[0] for r in rows}
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready, and says why
        checks["database"] = f"unreachable: {type(exc).__name__}"
        return JSONResponse({"status": "unavailable", "checks": checks}, status_code=503)
    if _expected_heads is None:
        _expected_heads = migrate.head_revisions(db.url)
    if current != _expected_heads:
        checks["migrations"] = (
            f"database at {sorted(current) or 'nothing'}, code expects {sorted(_expected_heads)}; "
            "run `sendstream db upgrade`"
        )
        return JSONResponse({"status": "unavailable", "checks": checks}, status_code=503)
    checks["migrations"] = "ok"
    return JSONResponse({"status": "ok", "checks": checks})


QUEUE_STATS_SQL = text(
    """
    SELECT kind,
           count(*) FILTER (WHERE state = 'queued' AND run_at <= now()) AS depth,
           coalesce(extract(epoch FROM now() - min(run_at)
                    FILTER (WHERE state = 'queued' AND run_at <= now())), 0) AS oldest,
           count(*) FILTER (WHERE state = 'running') AS running,
           count(*) FILTER (WHERE state = 'dead') AS dead
    FROM jobs
    WHERE state IN ('queued', 'running', 'dead')
    GROUP BY kind
    """
)


@router.get("/metrics")
async def metrics() -> Response:
    try:
        async with asyncio.timeout(3):
            async with get_database().engine.connect() as conn:
                rows = (await conn.execute(QUEUE_STATS_SQL)).all()
        for gauge in (JOB_QUEUE_DEPTH, JOB_QUEUE_OLDEST_AGE_SECONDS, JOB_RUNNING, JOB_DEAD):
            gauge.clear()
        for kind, depth, oldest, running, dead in rows:
            JOB_QUEUE_DEPTH.labels(kind).set(depth)
            JOB_QUEUE_OLDEST_AGE_SECONDS.labels(kind).set(float(oldest))
            JOB_RUNNING.labels(kind).set(running)
            JOB_DEAD.labels(kind).set(dead)
    except Exception:  # noqa: S110  the process metrics are still worth serving
        pass
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
