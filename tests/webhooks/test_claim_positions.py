"""Claim positions (delivery_sql.CLAIM): a claim walks an endpoint's due
work from the last delivery claimed there, not over the index entries every
finished delivery leaves behind until vacuum; and a delivery that lands
behind a position is still sent."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import text

from sendstream.core.db import Database
from sendstream.core.settings import Settings
from sendstream.webhooks import delivery_sql
from sendstream.webhooks.dispatcher import DELIVERY_CHANNEL
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

FINISHED = 3000


@pytest.fixture
def fast(settings: Settings) -> Iterator[Settings]:
    with installed(webhook_settings(settings)) as value:
        yield value


def blocks(plan: dict[str, Any]) -> int:
    return int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0))


async def claim_blocks(
    conn: psycopg.AsyncConnection[Any],
    endpoint_id: uuid.UUID,
    position: tuple[datetime, int] | None,
) -> tuple[int, int]:
    """Buffers the claim touched and the deliveries it claimed, rolled back."""
    params = {
        "limit": 10,
        "lease": 60,
        "with_expired": False,
        "floor_endpoints": [endpoint_id] if position else [],
        "floor_at": [position[0]] if position else [],
        "floor_id": [position[1]] if position else [],
    }
    async with conn.transaction(force_rollback=True):
        cur = await conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + delivery_sql.CLAIM, params
        )
        row = await cur.fetchone()
    assert row is not None
    plan = (row[0] if isinstance(row[0], list) else json.loads(row[0]))[0]["Plan"]
    return blocks(plan), int(plan["Actual Rows"])


async def test_a_claim_from_a_position_does_not_walk_finished_deliveries(
    client: httpx.AsyncClient, admin_actor: Actor, db: Database, fast: Settings
) -> None:
    endpoint = await create_endpoint(client, admin_actor, "http://127.0.0.1:9/in")
    endpoint_id = uuid.UUID(endpoint["id"])
    async with db.session() as session:
        insert = (
            "INSERT INTO webhook_deliveries (workspace_id, endpoint_id, webhook_id, "
            "event_type, payload) SELECT :ws, :ep, 'msg_' || n, 'contact.updated', '{}' "
            "FROM generate_series(1, :count) AS n"
        )
        params = {"ws": admin_actor.workspace_id, "ep": endpoint_id}
        await session.execute(text(insert), {**params, "count": FINISHED})
        # Claimed and sent long ago: their entries stay in the due index
        # until vacuum (a status change is not a HOT update).
        await session.execute(
            text("UPDATE webhook_deliveries SET status = 'succeeded' WHERE endpoint_id = :ep"),
            params,
        )
        last = (
            await session.execute(
                text(
                    "SELECT next_attempt_at, id FROM webhook_deliveries WHERE endpoint_id = :ep "
                    "ORDER BY next_attempt_at DESC, id DESC LIMIT 1"
                ),
                params,
            )
        ).one()
    async with db.session() as session:
        await session.execute(text(insert), {**params, "count": 1})
    async with await psycopg.AsyncConnection.connect(db.libpq_url) as conn:
        walked, claimed_from_start = await claim_blocks(conn, endpoint_id, None)
        skipped, claimed_from_position = await claim_blocks(
            conn, endpoint_id, (last.next_attempt_at, last.id)
        )
    assert claimed_from_start == claimed_from_position == 1
    # From the start the walk reads the finished deliveries' entries (and
    # their rows); from the position, a few index pages.
    assert walked > 3 * skipped
    assert skipped < 60


async def test_a_delivery_put_back_behind_the_position_is_still_sent(
    client: httpx.AsyncClient, admin_actor: Actor, db: Database, fast: Settings
) -> None:
    async with receiving() as receiver:
        endpoint = await create_endpoint(client, admin_actor, receiver.url("/ok"))
        await emit_events(db, admin_actor.workspace_id, 5)
        async with running(fast, db):
            await settled(db, endpoint["id"], 5, "succeeded")
            # As a graceful stop gives back what it never sent: pending
            # again, with its old due time and id, behind the position.
            async with db.session() as session:
                await session.execute(
                    text(
                        "UPDATE webhook_deliveries SET status = 'pending', completed_at = NULL "
                        "WHERE id = (SELECT min(id) FROM webhook_deliveries "
                        "WHERE endpoint_id = :ep)"
                    ),
                    {"ep": endpoint["id"]},
                )
                await session.execute(text(f"NOTIFY {DELIVERY_CHANNEL}"))
            rows = await settled(db, endpoint["id"], 5, "succeeded")
    assert rows[0]["attempts"] == 2
    assert len(receiver.on("/ok")) == 6
