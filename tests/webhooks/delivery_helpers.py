"""Helpers of the webhook delivery tests: settings with small timeouts, the
webhook loop running in-process, endpoints made through the API, events
emitted through the outbox, and the rows the loop wrote."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from sqlalchemy import text

from sendstream.core.db import Database
from sendstream.core.outbox import emit
from sendstream.core.settings import Settings, override_settings
from sendstream.webhooks.worker import WebhookWorker
from tests.fixtures.actors import Actor
from tests.fixtures.job_worker import eventually

FAST = {
    "allow_http": True,
    "connect_timeout": 1.0,
    "read_timeout": 0.5,
    "retry_first_seconds": 0.05,
    "retry_max_seconds": 0.2,
    "lease_seconds": 3.0,
    "poll_interval": 0.1,
    "shutdown_grace_seconds": 1.0,
}


def webhook_settings(settings: Settings, **overrides: Any) -> Settings:
    return settings.model_copy(
        update={"webhooks": settings.webhooks.model_copy(update={**FAST, **overrides})}
    )


@contextlib.contextmanager
def installed(settings: Settings) -> Any:
    """These settings for every `get_settings()` of the test (the SSRF check
    reads the installation's), then the session's again."""
    from sendstream.core.settings import get_settings

    before = get_settings()
    override_settings(settings)
    try:
        yield settings
    finally:
        override_settings(before)


@contextlib.asynccontextmanager
async def running(settings: Settings, db: Database, **options: Any) -> AsyncIterator[WebhookWorker]:
    worker = WebhookWorker(settings=settings, database=db, **options)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def allow_private(client: httpx.AsyncClient, actor: Actor) -> None:
    response = await client.patch(
        "/v1/webhooks/settings", headers=actor.headers, json={"allow_private_addresses": True}
    )
    assert response.status_code == 200, response.text


async def create_endpoint(
    client: httpx.AsyncClient, actor: Actor, url: str, **fields: Any
) -> dict[str, Any]:
    """The endpoint as the API answered, `secret` included."""
    await allow_private(client, actor)
    body = {"url": url, "event_types": ["contact.*"], **fields}
    response = await client.post("/v1/webhooks", headers=actor.headers, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def emit_events(
    db: Database,
    workspace_id: uuid.UUID,
    count: int,
    *,
    type: str = "contact.updated",
    data: dict[str, Any] | None = None,
) -> None:
    async with db.session() as session:
        for n in range(count):
            emit(session, workspace_id, type, {"n": n, **(data or {})})


async def deliveries(db: Database, endpoint_id: str) -> list[dict[str, Any]]:
    async with db.session() as session:
        rows = await session.execute(
            text(
                "SELECT id, webhook_id, status, attempts, last_status_code, last_error, "
                "event_positions, ordering_key, event_type, payload::text AS payload "
                "FROM webhook_deliveries WHERE endpoint_id = :id ORDER BY id"
            ),
            {"id": endpoint_id},
        )
        return [dict(r._mapping) for r in rows]


async def attempts(db: Database, endpoint_id: str) -> list[dict[str, Any]]:
    async with db.session() as session:
        rows = await session.execute(
            text(
                "SELECT a.*, coalesce(a.request_body, d.payload::text) AS sent_body"
                " FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id"
                " WHERE a.endpoint_id = :id ORDER BY a.id"
            ),
            {"id": endpoint_id},
        )
        # An attempt stores no body when it sent the delivery's payload.
        return [{**r._mapping, "request_body": r.sent_body} for r in rows]


async def settled(
    db: Database, endpoint_id: str, count: int, *statuses: str, within: float = 30
) -> list[dict[str, Any]]:
    """The endpoint's deliveries once `count` of them are in `statuses`."""

    async def check() -> list[dict[str, Any]] | None:
        rows = await deliveries(db, endpoint_id)
        done = [r for r in rows if r["status"] in statuses]
        return rows if len(done) >= count else None

    return await eventually(check, within=within)


async def endpoint_row(db: Database, endpoint_id: str) -> dict[str, Any]:
    async with db.session() as session:
        row = (
            await session.execute(
                text("SELECT * FROM webhook_endpoints WHERE id = :id"), {"id": endpoint_id}
            )
        ).one()
        return dict(row._mapping)


async def event_types(db: Database, actor: Actor) -> list[str]:
    async with db.session() as session:
        rows = await session.execute(
            text("SELECT type FROM events WHERE workspace_id = :ws ORDER BY position"),
            {"ws": actor.workspace_id},
        )
        return [r[0] for r in rows]
