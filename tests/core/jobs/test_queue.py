"""Enqueueing: in the caller's transaction, deduplicated by unique key, woken
by NOTIFY only on commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from sendstream.core.db import Database
from sendstream.core.jobs import enqueue, enqueue_many
from sendstream.core.jobs.queue import CHANNEL
from tests.fixtures import jobs as _kinds  # noqa: F401  registers the test kinds


async def job_rows(db: Database) -> list[dict[str, Any]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(text("SELECT * FROM jobs ORDER BY id"))
        return [dict(r._mapping) for r in rows]


@pytest.fixture
async def listener(db: Database) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    conn = await psycopg.AsyncConnection.connect(db.libpq_url, autocommit=True)
    await conn.execute(f"LISTEN {CHANNEL}")
    yield conn
    await conn.close()


async def notifications(conn: psycopg.AsyncConnection[Any], wait: float) -> list[str]:
    return [n.payload async for n in conn.notifies(timeout=wait)]


class TestEnqueueInTransaction:
    async def test_committed_job_is_queued_and_wakes_listeners(
        self, db: Database, listener: psycopg.AsyncConnection[Any]
    ) -> None:
        async with db.session() as session:
            job_id = await enqueue(session, "test.record", {"contact_id": 7})
        [row] = await job_rows(db)
        assert row["id"] == job_id
        assert (row["state"], row["kind"], row["payload"]) == (
            "queued",
            "test.record",
            {"contact_id": 7},
        )
        assert await notifications(listener, 2) == ["test.record"]

    async def test_rolled_back_job_is_neither_written_nor_announced(
        self, db: Database, listener: psycopg.AsyncConnection[Any]
    ) -> None:
        async with db.sessionmaker() as session:
            await enqueue(session, "test.record", {"contact_id": 7})
            await enqueue_many(session, "test.record", [{"n": 1}, {"n": 2}])
            await session.rollback()
        assert await job_rows(db) == []
        assert await notifications(listener, 0.5) == []

    async def test_kind_settings_fill_in_attempt_limit(self, db: Database) -> None:
        async with db.session() as session:
            await enqueue(session, "test.fail")
            await enqueue(session, "test.fail", max_attempts=7)
        assert [r["max_attempts"] for r in await job_rows(db)] == [3, 7]

    async def test_delay_and_run_at_schedule_the_job(self, db: Database) -> None:
        at = datetime.now(UTC) + timedelta(hours=2)
        async with db.session() as session:
            await enqueue(session, "test.record", run_at=at)
            await enqueue(session, "test.record", delay=timedelta(minutes=5))
        first, second = await job_rows(db)
        assert first["run_at"] == at
        assert first["created_at"] + timedelta(minutes=4) < second["run_at"]


class TestUniqueKey:
    async def test_same_key_returns_the_live_job(self, db: Database) -> None:
        async with db.session() as session:
            first = await enqueue(session, "test.record", {"n": 1}, unique_key="sync:42")
        async with db.session() as session:
            second = await enqueue(session, "test.record", {"n": 2}, unique_key="sync:42")
        assert first == second
        assert [r["payload"] for r in await job_rows(db)] == [{"n": 1}]

    async def test_key_of_a_finished_job_can_be_queued_again(self, db: Database) -> None:
        async with db.session() as session:
            first = await enqueue(session, "test.record", unique_key="sync:42")
            await session.execute(
                text("UPDATE jobs SET state = 'succeeded', finished_at = now() WHERE id = :id"),
                {"id": first},
            )
            second = await enqueue(session, "test.record", unique_key="sync:42")
        assert first != second

    async def test_concurrent_enqueues_of_one_key_make_one_job(self, db: Database) -> None:
        async def one() -> int:
            async with db.session() as session:
                return await enqueue(session, "test.record", unique_key="digest:ws1")

        ids = await asyncio.gather(*(one() for _ in range(8)))
        assert len(set(ids)) == 1
        assert len(await job_rows(db)) == 1

    async def test_bulk_enqueue_skips_keys_already_live(self, db: Database) -> None:
        async with db.session() as session:
            await enqueue(session, "test.record", unique_key="b")
            ids = await enqueue_many(
                session, "test.record", [{"n": 1}, {"n": 2}, {"n": 3}], unique_keys=["a", "b", None]
            )
        assert len(ids) == 2
        assert sorted(r["unique_key"] or "-" for r in await job_rows(db)) == ["-", "a", "b"]


class TestEnqueueMany:
    async def test_bulk_enqueue_writes_every_job_with_one_notify(
        self, db: Database, listener: psycopg.AsyncConnection[Any]
    ) -> None:
        async with db.session() as session:
            ids = await enqueue_many(session, "test.record", [{"n": n} for n in range(500)])
        assert len(ids) == 500
        rows = await job_rows(db)
        assert [r["payload"]["n"] for r in rows] == list(range(500))
        assert await notifications(listener, 1) == ["test.record"]

    async def test_empty_bulk_enqueue_writes_nothing(self, db: Database) -> None:
        async with db.session() as session:
            assert await enqueue_many(session, "test.record", []) == []
        assert await job_rows(db) == []
