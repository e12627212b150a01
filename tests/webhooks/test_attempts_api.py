"""The delivery API: deliveries and attempts newest first with cursors,
replays (one delivery, a time range) keeping the webhook-id, test events,
stats; against the webhook loop and a receiver on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from standardwebhooks import Webhook

from sendstream.core.db import Database
from sendstream.core.settings import Settings
from tests.fixtures.actors import Actor
from tests.webhooks.delivery_helpers import (
    create_endpoint,
    emit_events,
    installed,
    running,
    settled,
    webhook_settings,
)
from tests.webhooks.receiver import receiving


@pytest.fixture
def fast(settings: Settings) -> Iterator[Settings]:
    with installed(webhook_settings(settings)) as value:
        yield value


class TestAttemptsAndDeliveries:
    async def test_attempts_page_newest_first_and_deliveries_filter_by_status(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, fast: Settings
    ) -> None:
        async with receiving(flaky_times=1) as receiver:
            endpoint = await create_endpoint(client, admin_actor, receiver.url("/flaky"))
            await emit_events(db, admin_actor.workspace_id, 3)
            async with running(fast, db):
                await settled(db, endpoint["id"], 3, "succeeded")
        base = f"/v1/webhooks/{endpoint['id']}"
        seen: list[int] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = await client.get(f"{base}/attempts", headers=admin_actor.headers, params=params)
            assert page.status_code == 200, page.text
            seen += [a["id"] for a in page.json()["data"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == 4  # one 500, then three 200s
        assert seen == sorted(seen, reverse=True)
        first = (await client.get(f"{base}/attempts", headers=admin_actor.headers)).json()
        assert first["data"][-1]["status_code"] == 500
        assert first["data"][-1]["request_headers"]["webhook-id"].startswith("msg_")
        done = await client.get(
            f"{base}/deliveries", headers=admin_actor.headers, params={"status": "succeeded"}
        )
        assert [d["status"] for d in done.json()["data"]] == ["succeeded"] * 3
        failed = await client.get(
            f"{base}/deliveries", headers=admin_actor.headers, params={"status": "failed"}
        )
        assert failed.json()["data"] == []

    async def test_another_workspace_sees_no_delivery(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        other_workspace_actor: Actor,
        db: Database,
        fast: Settings,
    ) -> None:
        endpoint = await create_endpoint(client, admin_actor, "http://127.0.0.1:9/ok")
        for path in ("deliveries", "attempts", "stats"):
            response = await client.get(
                f"/v1/webhooks/{endpoint['id']}/{path}", headers=other_workspace_actor.headers
            )
            assert response.status_code == 404, path


class TestReplay:
    async def test_replaying_a_delivery_sends_the_same_id_and_bytes_again(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, fast: Settings
    ) -> None:
        async with receiving() as receiver:
            endpoint = await create_endpoint(client, admin_actor, receiver.url("/ok"))
            await emit_events(db, admin_actor.workspace_id, 1)
            async with running(fast, db):
                [row] = await settled(db, endpoint["id"], 1, "succeeded")
                replay = await client.post(
                    f"/v1/webhooks/{endpoint['id']}/deliveries/{row['id']}/replay",
                    headers=admin_actor.headers,
                )
                assert replay.status_code == 202, replay.text
                await settled(db, endpoint["id"], 2, "succeeded")
        first, again = receiver.on("/ok")
        assert first.headers["webhook-id"] == again.headers["webhook-id"]
        assert first.body == again.body
        Webhook(endpoint["secret"]).verify(again.body, again.headers)
        missing = await client.post(
            f"/v1/webhooks/{endpoint['id']}/deliveries/999999/replay",
            headers=admin_actor.headers,
        )
        assert missing.status_code == 404
        assert missing.json()["code"] == "webhook_delivery_not_found"

    async def test_replaying_a_time_range_resends_its_events_with_their_ids(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, fast: Settings
    ) -> None:
        async with receiving() as receiver:
            endpoint = await create_endpoint(client, admin_actor, receiver.url("/ok"))
            await emit_events(db, admin_actor.workspace_id, 3)
            async with running(fast, db):
                await settled(db, endpoint["id"], 3, "succeeded")
                since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
                response = await client.post(
                    f"/v1/webhooks/{endpoint['id']}/replay",
                    headers=admin_actor.headers,
                    json={"since": since},
                )
                assert response.status_code == 202, response.text
                assert response.json() == {"deliveries": 3}
                await settled(db, endpoint["id"], 6, "succeeded")
        ids = [r.headers["webhook-id"] for r in receiver.on("/ok")]
        assert sorted(ids[:3]) == sorted(ids[3:])
        bad = await client.post(
            f"/v1/webhooks/{endpoint['id']}/replay",
            headers=admin_actor.headers,
            json={"since": since, "until": since},
        )
        assert bad.status_code == 422
        assert bad.json()["code"] == "invalid_replay_range"


class TestTestEvent:
    async def test_a_test_event_sends_the_catalogue_example_marked_test(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, fast: Settings
    ) -> None:
        async with receiving() as receiver:
            endpoint = await create_endpoint(client, admin_actor, receiver.url("/ok"))
            async with running(fast, db):
                response = await client.post(
                    f"/v1/webhooks/{endpoint['id']}/test",
                    headers=admin_actor.headers,
                    json={"event_type": "message.deferred"},
                )
                assert response.status_code == 202, response.text
                [got] = await receiver.wait_for("/ok")
        payload = Webhook(endpoint["secret"]).verify(got.body, got.headers)
        assert payload["test"] is True
        assert payload["type"] == "message.deferred"
        unknown = await client.post(
            f"/v1/webhooks/{endpoint['id']}/test",
            headers=admin_actor.headers,
            json={"event_type": "no.such"},
        )
        assert unknown.status_code == 422
        assert unknown.json()["code"] == "unknown_event_type"


class TestStats:
    async def test_stats_count_attempts_success_latency_and_backlog(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, fast: Settings
    ) -> None:
        async with receiving(flaky_times=1) as receiver:
            endpoint = await create_endpoint(client, admin_actor, receiver.url("/flaky"))
            await emit_events(db, admin_actor.workspace_id, 1)
            async with running(fast, db):
                await settled(db, endpoint["id"], 1, "succeeded")
        # Two more, with no worker running: backlog.
        await emit_events(db, admin_actor.workspace_id, 2)
        async with db.session() as session:
            from sendstream.webhooks.dispatcher import dispatch_once

            await dispatch_once(session, limit=100)
        stats = await client.get(
            f"/v1/webhooks/{endpoint['id']}/stats", headers=admin_actor.headers
        )
        assert stats.status_code == 200, stats.text
        body = stats.json()
        assert body["last_hour"]["attempts"] == 2
        assert body["last_hour"]["success_rate"] == 0.5
        assert body["last_hour"]["p50_latency_ms"] > 0
        assert body["last_day"]["attempts"] == 2
        assert body["backlog"] == 2
        assert body["oldest_pending_age_seconds"] >= 0
