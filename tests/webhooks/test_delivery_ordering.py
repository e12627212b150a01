"""Ordering, batching and the per-endpoint concurrency limit, against the
webhook loop and a receiver on loopback."""

from __future__ import annotations

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
    create_endpoint,
    deliveries,
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


def positions(bodies: list[bytes]) -> list[int]:
    return [json.loads(body)["data"]["event_position"] for body in bodies]


class TestFifo:
    async def test_a_fifo_endpoint_gets_a_contacts_events_in_order_despite_retries(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, fast: Settings
    ) -> None:
        async with receiving(flaky_times=2) as receiver:
            endpoint = await create_endpoint(client, admin_actor, receiver.url("/flaky"), fifo=True)
            await emit_events(db, admin_actor.workspace_id, 4, data={"contact_id": "c-1"})
            async with running(fast, db):
                await settled(db, endpoint["id"], 4, "succeeded")
        got = positions([r.body for r in receiver.on("/flaky")])
        # The first event failed twice; nothing after it went out meanwhile.
        assert got == [1, 1, 1, 2, 3, 4]
        assert {r["ordering_key"] for r in await deliveries(db, endpoint["id"])} == {"c-1"}

    async def test_without_fifo_later_events_do_not_wait_for_a_retry(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, fast: Settings
    ) -> None:
        async with receiving(flaky_times=2) as receiver:
            endpoint = await create_endpoint(client, admin_actor, receiver.url("/flaky"))
            await emit_events(db, admin_actor.workspace_id, 4, data={"contact_id": "c-1"})
            async with running(fast, db):
                await settled(db, endpoint["id"], 4, "succeeded")
        got = positions([r.body for r in receiver.on("/flaky")])
        assert got != sorted(got)


class TestBatching:
    async def test_a_batching_endpoint_gets_up_to_n_events_per_signed_request(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, fast: Settings
    ) -> None:
        async with receiving() as receiver:
            endpoint = await create_endpoint(
                client,
                admin_actor,
                receiver.url("/ok"),
                batch_max_events=3,
                batch_window_ms=200,
            )
            await emit_events(db, admin_actor.workspace_id, 7)
            async with running(fast, db):
                await settled(db, endpoint["id"], 3, "succeeded")
        verifier = Webhook(endpoint["secret"])
        sizes = []
        carried = []
        for request in receiver.on("/ok"):
            payload = verifier.verify(request.body, request.headers)
            assert payload["type"] == "batch"
            sizes.append(len(payload["data"]["events"]))
            carried += [e["data"]["event_position"] for e in payload["data"]["events"]]
            assert {e["type"] for e in payload["data"]["events"]} == {"contact.updated"}
        assert sorted(sizes) == [1, 3, 3]
        assert sorted(carried) == list(range(1, 8))

    async def test_events_committed_apart_join_the_open_batch_within_its_window(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, fast: Settings
    ) -> None:
        async with receiving() as receiver:
            endpoint = await create_endpoint(
                client,
                admin_actor,
                receiver.url("/ok"),
                batch_max_events=10,
                batch_window_ms=3000,
            )
            async with running(fast, db):
                await emit_events(db, admin_actor.workspace_id, 1)
                await settled(db, endpoint["id"], 1, "pending")
                await emit_events(db, admin_actor.workspace_id, 2)

                async def three_in_one() -> bool:
                    rows = await deliveries(db, endpoint["id"])
                    return len(rows) == 1 and len(rows[0]["event_positions"]) == 3

                await eventually(three_in_one, within=10)
                [got] = await receiver.wait_for("/ok")
        payload = Webhook(endpoint["secret"]).verify(got.body, got.headers)
        assert [e["data"]["event_position"] for e in payload["data"]["events"]] == [1, 2, 3]


class TestConcurrencyLimit:
    async def test_a_slow_endpoint_gets_at_most_its_limit_and_does_not_hold_up_others(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, settings: Settings
    ) -> None:
        with installed(webhook_settings(settings, read_timeout=5.0)) as fast:
            async with receiving(slow_seconds=0.3) as receiver:
                slow = await create_endpoint(
                    client, admin_actor, receiver.url("/slow"), max_concurrency=2
                )
                quick = await create_endpoint(client, admin_actor, receiver.url("/ok"))
                await emit_events(db, admin_actor.workspace_id, 8)
                async with running(fast, db):
                    await settled(db, quick["id"], 8, "succeeded")
                    # The quick endpoint was done while the slow one still had work.
                    assert len(receiver.on("/slow")) < 8
                    await settled(db, slow["id"], 8, "succeeded")
        assert receiver.max_in_flight["/slow"] == 2
