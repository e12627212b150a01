"""Finished deliveries past `webhooks.retention_days` go, with their
attempts, in the worker's housekeeping; pending ones and recent ones stay."""

from __future__ import annotations

import httpx
from sqlalchemy import text

from sendstream.core.db import Database
from sendstream.core.jobs.registry import registered_cleanups
from sendstream.core.settings import Settings
from sendstream.webhooks.tasks import prune_finished_deliveries
from tests.fixtures.actors import Actor
from tests.fixtures.job_worker import WorkerHarness, eventually
from tests.fixtures.job_worker import workers as workers  # the fixture
from tests.webhooks.delivery_helpers import create_endpoint


async def _delivery(
    db: Database, actor: Actor, endpoint_id: str, webhook_id: str, status: str, age_days: float
) -> None:
    async with db.session() as session:
        delivery_id = (
            await session.execute(
                text(
                    "INSERT INTO webhook_deliveries (workspace_id, endpoint_id, webhook_id,"
                    " event_positions, event_type, payload, status, attempts, next_attempt_at,"
                    " created_at, completed_at)"
                    " VALUES (:ws, :ep, :wid, '{1}', 'contact.updated', '{}',"
                    " CAST(:status AS text), 1, now(), now() - make_interval(days => :age),"
                    " CASE WHEN CAST(:status AS text) = 'pending' THEN NULL"
                    "      ELSE now() - make_interval(days => :age) END)"
                    " RETURNING id"
                ),
                {
                    "ws": actor.workspace_id,
                    "ep": endpoint_id,
                    "wid": webhook_id,
                    "status": status,
                    "age": age_days,
                },
            )
        ).scalar_one()
        await session.execute(
            text(
                "INSERT INTO webhook_attempts (delivery_id, workspace_id, endpoint_id,"
                " attempted_at, request_headers, request_body, latency_ms)"
                " VALUES (:d, :ws, :ep, now(), '{}', '{}', 1)"
            ),
            {"d": delivery_id, "ws": actor.workspace_id, "ep": endpoint_id},
        )


async def _left(db: Database, endpoint_id: str) -> tuple[set[str], int]:
    async with db.engine.connect() as conn:
        ids = set(
            (
                await conn.execute(
                    text("SELECT webhook_id FROM webhook_deliveries WHERE endpoint_id = :ep"),
                    {"ep": endpoint_id},
                )
            ).scalars()
        )
        attempts = (
            await conn.execute(
                text("SELECT count(*) FROM webhook_attempts WHERE endpoint_id = :ep"),
                {"ep": endpoint_id},
            )
        ).scalar_one()
    return ids, int(attempts)


async def _setup(client: httpx.AsyncClient, actor: Actor, db: Database) -> str:
    endpoint = await create_endpoint(client, actor, "https://127.0.0.1:9/hook")
    for webhook_id, status, age in [
        ("old-succeeded", "succeeded", 31),
        ("old-failed", "failed", 40),
        ("recent-succeeded", "succeeded", 2),
        ("old-pending", "pending", 45),
    ]:
        await _delivery(db, actor, endpoint["id"], webhook_id, status, age)
    return str(endpoint["id"])


class TestRetention:
    async def test_finished_deliveries_past_retention_go_with_their_attempts(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, settings: Settings
    ) -> None:
        endpoint_id = await _setup(client, admin_actor, db)
        assert settings.webhooks.retention_days == 30
        async with db.session() as session:
            removed = await prune_finished_deliveries(session)
        assert removed >= 2
        assert await _left(db, endpoint_id) == ({"recent-succeeded", "old-pending"}, 2)

    async def test_every_worker_runs_it_in_its_housekeeping(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        db: Database,
        workers: WorkerHarness,
    ) -> None:
        assert "webhooks.finished_deliveries" in registered_cleanups()
        endpoint_id = await _setup(client, admin_actor, db)

        async def pruned() -> bool | None:
            ids, _ = await _left(db, endpoint_id)
            return True if ids == {"recent-succeeded", "old-pending"} else None

        await workers.start(lease_seconds=1)
        assert await eventually(pruned)
