"""Webhook delivery end to end: events emitted through the outbox, fanned
out by the `webhooks` consumer and sent by the webhook loop to a real HTTP
receiver on loopback; signatures checked with the `standardwebhooks`
library as an independent receiver would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from standardwebhooks import Webhook

from sendstream.core.db import Database
from sendstream.core.settings import Settings
from tests.fixtures.actors import Actor
from tests.fixtures.job_worker import eventually
from tests.webhooks.delivery_helpers import (
    attempts,
    create_endpoint,
    deliveries,
    emit_events,
    event_types,
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


class TestSignedDelivery:
    async def test_each_event_arrives_once_signed_as_the_standard_webhooks_library_verifies(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, fast: Settings
    ) -> None:
        async with receiving() as receiver:
            endpoint = await create_endpoint(client, admin_actor, receiver.url("/ok"))
            await emit_events(db, admin_actor.workspace_id, 3, data={"contact_id": "c-1"})
            async with running(fast, db):
                got = await receiver.wait_for("/ok", 3)
                rows = await settled(db, endpoint["id"], 3, "succeeded")
        verifier = Webhook(endpoint["secret"])
        positions = []
        for request in got:
            payload = verifier.verify(request.body, request.headers)
            assert payload["type"] == "contact.updated"
            assert payload["data"]["workspace_id"] == str(admin_actor.workspace_id)
            positions.append(payload["data"]["event_position"])
            assert request.headers["content-type"] == "application/json"
        assert sorted(positions) == [1, 2, 3]
        assert {r["webhook_id"] for r in rows} == {request.headers["webhook-id"] for request in got}
        recorded = await attempts(db, endpoint["id"])
        assert [a["status_code"] for a in recorded] == [200, 200, 200]
        # The first KiB of the answer is kept, not more.
        assert all(len(a["response_body"]) == 1024 for a in recorded)
        assert all("v1," in a["request_headers"]["webhook-signature"] for a in recorded)
        assert json.loads(recorded[0]["request_body"])["type"] == "contact.updated"
        assert sorted(a["request_body"].encode() for a in recorded) == sorted(r.body for r in got)
        assert all(r["attempts"] == 1 for r in await deliveries(db, endpoint["id"]))


def retry_soon(settings: Settings, **overrides: object) -> Settings:
    return webhook_settings(settings, **overrides)


class TestReceiverFailures:
    """Each misbehaving receiver ends in the right recorded state, and the
    loop keeps delivering to a healthy endpoint beside it."""

    @pytest.mark.parametrize(
        ("path", "error"),
        [
            ("/hang", "timeout"),
            ("/slow", "timeout"),
            ("/close", "connection"),
        ],
    )
    async def test_no_answer_is_retried_until_the_retry_period_ends_then_failed(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        db: Database,
        settings: Settings,
        path: str,
        error: str,
    ) -> None:
        with installed(retry_soon(settings, retry_for_seconds=1.5)) as fast:
            async with receiving(slow_seconds=2.0) as receiver:
                bad = await create_endpoint(client, admin_actor, receiver.url(path))
                good = await create_endpoint(client, admin_actor, receiver.url("/ok"))
                await emit_events(db, admin_actor.workspace_id, 1)
                async with running(fast, db):
                    await settled(db, good["id"], 1, "succeeded")
                    [row] = await settled(db, bad["id"], 1, "failed")
        tries = await attempts(db, bad["id"])
        assert row["attempts"] >= 2
        assert len(tries) == row["attempts"]
        assert all(t["status_code"] is None for t in tries)
        assert all(t["error"].startswith(error) for t in tries)
        assert row["last_error"].startswith(error)

    async def test_a_500_forever_is_retried_then_failed(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, settings: Settings
    ) -> None:
        with installed(retry_soon(settings, retry_for_seconds=1.0)) as fast:
            async with receiving() as receiver:
                endpoint = await create_endpoint(client, admin_actor, receiver.url("/fail"))
                await emit_events(db, admin_actor.workspace_id, 1)
                async with running(fast, db):
                    [row] = await settled(db, endpoint["id"], 1, "failed")
        tries = await attempts(db, endpoint["id"])
        assert row["attempts"] >= 3
        assert {t["status_code"] for t in tries} == {500}
        assert {t["response_body"] for t in tries} == {"broken"}
        # Every retry is the same request: same id, same bytes.
        received = receiver.on("/fail")
        assert len({r.headers["webhook-id"] for r in received}) == 1
        assert len({r.body for r in received}) == 1

    async def test_a_500_that_recovers_succeeds_on_a_later_attempt(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, fast: Settings
    ) -> None:
        async with receiving(flaky_times=2) as receiver:
            endpoint = await create_endpoint(client, admin_actor, receiver.url("/flaky"))
            await emit_events(db, admin_actor.workspace_id, 1)
            async with running(fast, db):
                [row] = await settled(db, endpoint["id"], 1, "succeeded")
        assert row["attempts"] == 3
        assert [t["status_code"] for t in await attempts(db, endpoint["id"])] == [500, 500, 200]

    async def test_a_50_mb_answer_is_cut_after_its_first_kib_and_not_read_through(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, fast: Settings
    ) -> None:
        async with receiving() as receiver:
            endpoint = await create_endpoint(client, admin_actor, receiver.url("/huge"))
            await emit_events(db, admin_actor.workspace_id, 2)
            async with running(fast, db):
                rows = await settled(db, endpoint["id"], 2, "succeeded")
        assert {r["last_status_code"] for r in rows} == {200}
        tries = await attempts(db, endpoint["id"])
        assert {len(t["response_body"]) for t in tries} == {1024}
        assert receiver.huge_bytes_sent < 50 * 1024 * 1024

    async def test_a_redirect_is_not_followed_and_fails_at_once(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, fast: Settings
    ) -> None:
        async with receiving() as receiver:
            endpoint = await create_endpoint(client, admin_actor, receiver.url("/redirect"))
            await emit_events(db, admin_actor.workspace_id, 1)
            async with running(fast, db):
                [row] = await settled(db, endpoint["id"], 1, "failed")
        assert row["attempts"] == 1
        assert row["last_status_code"] == 302
        assert receiver.on("/ok") == []

    async def test_a_4xx_fails_at_once_and_is_recorded(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, fast: Settings
    ) -> None:
        async with receiving() as receiver:
            endpoint = await create_endpoint(client, admin_actor, receiver.url("/missing"))
            await emit_events(db, admin_actor.workspace_id, 1)
            async with running(fast, db):
                [row] = await settled(db, endpoint["id"], 1, "failed")
        assert row["attempts"] == 1
        assert row["last_status_code"] == 404
        [attempt] = await attempts(db, endpoint["id"])
        assert attempt["response_body"] == "no such hook"

    async def test_410_disables_the_endpoint_at_once_with_an_event(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, fast: Settings
    ) -> None:
        async with receiving() as receiver:
            endpoint = await create_endpoint(client, admin_actor, receiver.url("/gone"))
            watcher = await create_endpoint(
                client, admin_actor, receiver.url("/ok"), event_types=["webhook.*"]
            )
            await emit_events(db, admin_actor.workspace_id, 3)
            async with running(fast, db):
                got = await receiver.wait_for("/ok", 1)
                rows = await settled(db, endpoint["id"], 1, "failed")
        disabled = json.loads(got[0].body)
        assert disabled["type"] == "webhook.disabled"
        assert disabled["data"]["webhook_id"] == endpoint["id"]
        assert disabled["data"]["reason"] == "gone"
        state = (
            await client.get(f"/v1/webhooks/{endpoint['id']}", headers=admin_actor.headers)
        ).json()
        assert state["enabled"] is False
        assert state["disabled_reason"] == "gone"
        assert rows[0]["last_status_code"] == 410
        assert watcher["id"] != endpoint["id"]

    async def test_429_waits_as_long_as_retry_after_says(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, fast: Settings
    ) -> None:
        async with receiving(retry_after="1", limited_times=1) as receiver:
            endpoint = await create_endpoint(client, admin_actor, receiver.url("/limited"))
            await emit_events(db, admin_actor.workspace_id, 1)
            async with running(fast, db):
                [row] = await settled(db, endpoint["id"], 1, "succeeded")
        first, second = await attempts(db, endpoint["id"])
        assert first["status_code"] == 429
        assert second["status_code"] == 200
        # Retry-After: 1 against a backoff capped at 0.2 s in these settings.
        assert (second["attempted_at"] - first["attempted_at"]).total_seconds() >= 1.0
        assert row["attempts"] == 2

    async def test_an_endpoint_failing_for_the_disable_period_is_disabled(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, settings: Settings
    ) -> None:
        with installed(retry_soon(settings, disable_after_seconds=0.5)) as fast:
            async with receiving() as receiver:
                endpoint = await create_endpoint(client, admin_actor, receiver.url("/fail"))
                await emit_events(db, admin_actor.workspace_id, 1)
                async with running(fast, db):

                    async def disabled() -> bool:
                        response = await client.get(
                            f"/v1/webhooks/{endpoint['id']}", headers=admin_actor.headers
                        )
                        return response.json()["enabled"] is False

                    await eventually(disabled, within=30)
        state = (
            await client.get(f"/v1/webhooks/{endpoint['id']}", headers=admin_actor.headers)
        ).json()
        assert state["disabled_reason"] == "failing"
        assert await event_types(db, admin_actor) == ["contact.updated", "webhook.disabled"]


class TestFanOutRounds:
    """A round of fan-out runs at once for events of a workspace with an
    enabled endpoint, however busy workspaces without one are; an endpoint
    enabled while the loop runs is served from the next full round."""

    async def test_a_workspace_with_an_endpoint_is_served_at_once_beside_a_busy_one_without(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        other_workspace_actor: Actor,
        db: Database,
        settings: Settings,
    ) -> None:
        # Full rounds only every 60 s: a prompt delivery can only come from
        # the round its own workspace's events started.
        with installed(webhook_settings(settings, poll_interval=60.0)) as slow_rounds:
            async with receiving() as receiver:
                endpoint = await create_endpoint(client, admin_actor, receiver.url("/ok"))
                async with running(slow_rounds, db):
                    for n in range(5):
                        await emit_events(db, other_workspace_actor.workspace_id, 20)
                        await emit_events(db, admin_actor.workspace_id, 1, data={"round": n})
                        await receiver.wait_for("/ok", n + 1, within=10)
                    await settled(db, endpoint["id"], 5, "succeeded")

    async def test_an_endpoint_created_while_the_loop_runs_gets_events_after_its_creation(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, settings: Settings
    ) -> None:
        with installed(webhook_settings(settings, poll_interval=0.5)) as rounds:
            async with receiving() as receiver, running(rounds, db):
                await emit_events(db, admin_actor.workspace_id, 3)  # no endpoint yet
                await asyncio.sleep(1.0)
                endpoint = await create_endpoint(client, admin_actor, receiver.url("/ok"))
                await emit_events(db, admin_actor.workspace_id, 2, data={"after": True})
                got = await receiver.wait_for("/ok", 2, within=10)
                await settled(db, endpoint["id"], 2, "succeeded")
            assert all(json.loads(r.body)["data"]["after"] is True for r in got)
            assert len(await deliveries(db, endpoint["id"])) == 2
