"""Shared steps of the send API and delivery loop tests: a verified sending
domain, templates, and a delivery loop run in the test's event loop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text

from sendstream.core.db import Database
from sendstream.core.settings import Settings
from sendstream.delivery.domain_service import domain_service
from sendstream.delivery.transport import Transport
from sendstream.delivery.worker import DeliveryWorker
from sendstream.models.sending_domain import SendingDomain
from sendstream.templates.schemas import TemplateCreate
from sendstream.templates.service import template_service
from tests.fixtures.job_worker import eventually
from tests.fixtures.smtp import SmtpCapture

DOMAIN = "acme.example"
SENDER = f"Acme <news@{DOMAIN}>"


async def verified_domain(
    db: Database, workspace_id: uuid.UUID, name: str = DOMAIN, status: str = "verified"
) -> SendingDomain:
    async with db.session() as session:
        domain = await domain_service.create_domain(session, workspace_id, name=name)
    async with db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE sending_domains SET status = :s WHERE id = :id"),
            {"s": status, "id": domain.id},
        )
    return domain


async def make_template(db: Database, workspace_id: uuid.UUID, **fields: Any) -> uuid.UUID:
    body = {"key": "welcome", "name": "Welcome", "subject": "Hi {{ name }}", **fields}
    async with db.session() as session:
        created = await template_service.create_template(
            session, workspace_id, TemplateCreate.model_validate(body), None
        )
    return created.id


def with_delivery(settings: Settings, **delivery: Any) -> Settings:
    return settings.model_copy(
        update={"delivery": settings.delivery.model_copy(update=delivery)}, deep=True
    )


def relay_settings(settings: Settings, server: SmtpCapture, **delivery: Any) -> Settings:
    """Settings that send through the real SMTP transport to `server`."""
    changed = with_delivery(settings, **delivery)
    return changed.model_copy(update={"smtp_url": f"smtp://{server.host}:{server.port}"})


@asynccontextmanager
async def running(
    settings: Settings,
    db: Database,
    *,
    transport: Transport | None = None,
    concurrency: int | None = None,
) -> AsyncIterator[DeliveryWorker]:
    """A delivery loop in this event loop (its transport from `settings`
    unless given), listening before the test sends; stopped gracefully
    afterwards."""
    worker = DeliveryWorker(
        settings=settings, database=db, transport=transport, concurrency=concurrency
    )
    task = asyncio.create_task(worker.run())
    await eventually(_listening(db))
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 60)


def _listening(db: Database) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        async with db.engine.connect() as conn:
            count = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND query = 'LISTEN sendstream_messages'"
                )
            )
        return bool(count)

    return check


async def message_state(db: Database, message_id: str | uuid.UUID) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT status, attempts, last_response, last_status_code, relay, sent_at, "
                    "next_attempt_at, lease_until FROM messages WHERE id = :id"
                ),
                {"id": str(message_id)},
            )
        ).one()
    return dict(row._mapping)


async def events_of(db: Database, message_id: str | uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT type, data FROM events WHERE subject_type = 'message' "
                "AND subject_id = :id ORDER BY position"
            ),
            {"id": str(message_id)},
        )
        return [(r[0], r[1]) for r in rows]
