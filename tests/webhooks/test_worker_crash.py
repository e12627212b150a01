"""A webhook worker killed mid-burst: a real `sendstream worker` process
is killed with SIGKILL while events are still being emitted and delivered;
a second worker takes over (leases run out, the outbox position was never
acked past what was fanned out). Every event arrives, and an event that
arrives twice arrives with the same `webhook-id` and bytes."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from sendstream.core.db import Database
from sendstream.core.settings import Settings
from tests.fixtures.actors import Actor
from tests.fixtures.job_worker import eventually
from tests.fixtures.processes import clean_env, start_cli, stop
from tests.webhooks.delivery_helpers import create_endpoint, emit_events
from tests.webhooks.receiver import receiving

pytestmark = pytest.mark.slow

EVENTS = 1500
CHUNK = 50
CONCURRENCY = 50
ROOT = Path(__file__).resolve().parents[2]


def worker_env(url: URL, settings: Settings) -> dict[str, str]:
    assert settings.security.master_key is not None
    return clean_env(
        SENDSTREAM_DATABASE_URL=url.render_as_string(hide_password=False),
        SENDSTREAM_ENVIRONMENT="test",
        SENDSTREAM_LOG__LEVEL="INFO",
        SENDSTREAM_DELIVERY__DELIVERY_LOOP="false",
        SENDSTREAM_WEBHOOKS__ALLOW_HTTP="true",
        SENDSTREAM_WEBHOOKS__LEASE_SECONDS="2",
        SENDSTREAM_WEBHOOKS__POLL_INTERVAL="0.2",
        SENDSTREAM_WEBHOOKS__WORKER_CONCURRENCY=str(CONCURRENCY),
        SENDSTREAM_SECURITY__MASTER_KEY=settings.security.master_key.get_secret_value(),
    )


class TestKilledWebhookWorker:
    async def test_sigkill_mid_burst_every_event_arrives_duplicates_keep_their_id(
        self,
        client: httpx.AsyncClient,
        db: Database,
        database_url: URL,
        settings: Settings,
        admin_actor: Actor,
        tmp_path: Path,
    ) -> None:
        from tests.webhooks.delivery_helpers import installed, webhook_settings

        env = worker_env(database_url, settings)
        async with receiving(slow_seconds=0.005) as receiver:
            with installed(webhook_settings(settings)):
                endpoint = await create_endpoint(
                    client, admin_actor, receiver.url("/slow"), max_concurrency=100
                )

            async def burst() -> None:
                for _ in range(EVENTS // CHUNK):
                    await emit_events(db, admin_actor.workspace_id, CHUNK)
                    await asyncio.sleep(0.02)

            first = start_cli(["worker"], env, ROOT, tmp_path / "first.log")
            emitting = asyncio.create_task(burst())
            try:

                async def some_arrived() -> bool:
                    return len(receiver.on("/slow")) >= EVENTS // 4

                await eventually(some_arrived, within=120)
                first.send_signal(signal.SIGKILL)
                first.wait(10)
            finally:
                stop(first)
            assert not emitting.done() or len(receiver.on("/slow")) < EVENTS, (
                "the kill came too late to test anything"
            )
            await emitting
            second = start_cli(["worker"], env, ROOT, tmp_path / "second.log")
            try:

                async def all_done() -> bool:
                    async with db.engine.connect() as conn:
                        done = await conn.scalar(
                            text(
                                "SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'"
                            )
                        )
                    return done == EVENTS

                await eventually(all_done, within=180)
            finally:
                assert stop(second) == 0, (tmp_path / "second.log").read_text()[-3000:]
        by_position: dict[int, set[tuple[str, bytes]]] = defaultdict(set)
        for request in receiver.on("/slow"):
            position = json.loads(request.body)["data"]["event_position"]
            by_position[position].add((request.headers["webhook-id"], request.body))
        assert sorted(by_position) == list(range(1, EVENTS + 1))
        # A duplicate is the same request again: one id and one body per event.
        assert all(len(sent) == 1 for sent in by_position.values())
        twice = len(receiver.on("/slow")) - EVENTS
        print(f"\n{twice} of {EVENTS} events delivered twice")
        assert twice <= CONCURRENCY
        async with db.engine.connect() as conn:
            rows = await conn.scalar(
                text("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = :id"),
                {"id": endpoint["id"]},
            )
        # The fan-out was neither lost nor doubled.
        assert rows == EVENTS
