"""The worker, in-process against the real database: claiming, scheduling,
retries, dead letters, leases, heartbeats, wake-ups and graceful stops."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from sendstream.core.db import Database
from sendstream.core.jobs import enqueue, enqueue_many
from tests.fixtures import jobs as _kinds  # noqa: F401  registers the test kinds
from tests.fixtures.actors import Actor
from tests.fixtures.job_worker import WorkerHarness, eventually

Runs = Callable[[], Awaitable[dict[int, int]]]

# Retries in tests wait milliseconds, not the production seconds.
FAST_RETRIES = {"backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05}


async def job(db: Database, job_id: int) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM jobs WHERE id = :id"), {"id": job_id})).one()
        return dict(row._mapping)


def in_state(
    db: Database, job_id: int, *states: str
) -> Callable[[], Awaitable[dict[str, Any] | None]]:
    async def check() -> dict[str, Any] | None:
        row = await job(db, job_id)
        return row if row["state"] in states else None

    return check


async def add(db: Database, kind: str, payload: dict[str, Any] | None = None, **kw: Any) -> int:
    async with db.session() as session:
        return await enqueue(session, kind, payload, **kw)


class TestRunningJobs:
    async def test_worker_runs_a_backlog_once_each(
        self, db: Database, workers: WorkerHarness, runs: Runs
    ) -> None:
        async with db.session() as session:
            ids = await enqueue_many(session, "test.record", [{} for _ in range(300)])
        await workers.start(concurrency=20, batch_size=7)
        await eventually(lambda: _all_succeeded(db))
        assert await runs() == {job_id: 1 for job_id in ids}

    async def test_handler_writes_commit_with_the_completion(
        self, db: Database, workers: WorkerHarness, runs: Runs
    ) -> None:
        await workers.start()
        job_id = await add(db, "test.record")
        row = await eventually(in_state(db, job_id, "succeeded"))
        assert row["attempts"] == 1
        assert row["finished_at"] is not None
        assert row["lease_until"] is None
        assert await runs() == {job_id: 1}

    async def test_unknown_kind_goes_to_dead_with_a_clear_error(
        self, db: Database, workers: WorkerHarness
    ) -> None:
        await workers.start()
        job_id = await add(db, "nobody.handles_this")
        row = await eventually(in_state(db, job_id, "dead"))
        assert "no handler registered for job kind 'nobody.handles_this'" in row["last_error"]
        assert row["attempts"] == 1


class TestRetries:
    async def test_failing_job_is_retried_then_dead_lettered(
        self, db: Database, workers: WorkerHarness
    ) -> None:
        await workers.start(**FAST_RETRIES)
        job_id = await add(db, "test.fail")
        row = await eventually(in_state(db, job_id, "dead"))
        assert row["attempts"] == row["max_attempts"] == 3
        assert row["last_error"].startswith("ValueError: boom on attempt 3")
        assert "Traceback" not in row["last_error"]
        assert "tests/fixtures/jobs.py" in row["last_error"]

    async def test_retry_waits_for_the_backoff_before_running_again(
        self, db: Database, workers: WorkerHarness
    ) -> None:
        await workers.start(backoff_base_seconds=36_000, backoff_max_seconds=36_000)
        job_id = await add(db, "test.flaky", {"succeed_on": 2})
        await eventually(lambda: _attempted(db, job_id))
        row = await job(db, job_id)
        assert row["state"] == "queued"
        assert row["locked_by"] is None
        assert row["last_error"].startswith("ConnectionError: remote not ready")
        # Full jitter draws from [0, min(cap, base * 2^attempt)] = [0, 10 h]: a
        # draw under one second has odds of 1 in 36,000.
        assert row["run_at"] > row["updated_at"] + timedelta(seconds=1)
        assert row["run_at"] <= row["updated_at"] + timedelta(hours=10, seconds=1)

    async def test_flaky_job_succeeds_on_a_later_attempt(
        self, db: Database, workers: WorkerHarness, runs: Runs
    ) -> None:
        await workers.start(**FAST_RETRIES)
        job_id = await add(db, "test.flaky", {"succeed_on": 3})
        row = await eventually(in_state(db, job_id, "succeeded"))
        assert row["attempts"] == 3
        assert await runs() == {job_id: 1}

    async def test_handler_can_ask_for_a_specific_retry_delay(
        self, db: Database, workers: WorkerHarness
    ) -> None:
        await workers.start(**FAST_RETRIES)
        job_id = await add(db, "test.retry_after", {"after": 3600})
        await eventually(lambda: _attempted(db, job_id))
        row = await job(db, job_id)
        assert row["state"] == "queued"
        assert row["run_at"] > row["updated_at"] + timedelta(seconds=3500)

    async def test_handler_can_cancel_its_own_job(
        self, db: Database, workers: WorkerHarness
    ) -> None:
        await workers.start()
        job_id = await add(db, "test.give_up")
        row = await eventually(in_state(db, job_id, "cancelled"))
        assert "the contact was erased" in row["last_error"]

    async def test_attempt_past_the_kinds_timeout_fails(
        self, db: Database, workers: WorkerHarness
    ) -> None:
        await workers.start()
        job_id = await add(db, "test.timeout")
        row = await eventually(in_state(db, job_id, "dead"))
        assert "timed out after 0.2 s" in row["last_error"]


class TestScheduling:
    async def test_future_job_is_not_claimed_early_and_runs_when_due_without_a_notify(
        self, db: Database, workers: WorkerHarness, runs: Runs
    ) -> None:
        # With a 60 s fallback poll, only the worker's own timer on the next
        # run_at can make the job run within the deadline below.
        await workers.start(poll_interval=60)
        job_id = await add(db, "test.record", delay=1.5)
        assert (await job(db, job_id))["state"] == "queued"
        assert await runs() == {}
        row = await eventually(in_state(db, job_id, "succeeded"), within=20)
        assert await runs() == {job_id: 1}
        assert row["finished_at"] >= row["run_at"]

    async def test_notify_wakes_an_idle_worker(
        self, db: Database, workers: WorkerHarness, runs: Runs
    ) -> None:
        await workers.start(poll_interval=60)
        # Let the worker go idle on an empty queue first.
        await eventually(lambda: _claim_loop_idle(db))
        job_id = await add(db, "test.record")
        await eventually(in_state(db, job_id, "succeeded"), within=20)
        assert await runs() == {job_id: 1}


class TestLeases:
    async def test_expired_lease_is_reaped_and_the_job_runs_again(
        self, db: Database, workers: WorkerHarness, runs: Runs
    ) -> None:
        job_id = await add(db, "test.record")
        await _as_if_claimed_by_a_dead_worker(db, job_id)
        await workers.start(lease_seconds=1)
        row = await eventually(in_state(db, job_id, "succeeded"))
        assert row["attempts"] == 2
        assert "lease expired" in row["last_error"]
        assert await runs() == {job_id: 1}

    async def test_expired_lease_on_the_last_attempt_is_dead(
        self, db: Database, workers: WorkerHarness
    ) -> None:
        job_id = await add(db, "test.record", max_attempts=1)
        await _as_if_claimed_by_a_dead_worker(db, job_id)
        await workers.start(lease_seconds=1)
        row = await eventually(in_state(db, job_id, "dead"))
        assert "lease expired" in row["last_error"]

    async def test_heartbeat_keeps_a_long_job_leased_past_its_lease(
        self, db: Database, workers: WorkerHarness, runs: Runs
    ) -> None:
        # Two workers: if the heartbeat failed, the other's reaper would take
        # the job back and it would run twice.
        await workers.start(lease_seconds=0.6)
        await workers.start(lease_seconds=0.6)
        job_id = await add(db, "test.record", {"sleep": 3})
        row = await eventually(in_state(db, job_id, "succeeded"))
        assert row["attempts"] == 1
        assert row["last_error"] is None
        assert await runs() == {job_id: 1}


class TestGracefulStop:
    async def test_stop_gives_running_jobs_back_without_burning_an_attempt(
        self, db: Database, workers: WorkerHarness
    ) -> None:
        worker = await workers.start(shutdown_grace_seconds=0.1)
        job_id = await add(db, "test.sleep", {"seconds": 60})
        await eventually(in_state(db, job_id, "running"))
        await workers.stop(worker)
        row = await job(db, job_id)
        assert (row["state"], row["attempts"], row["locked_by"]) == ("queued", 0, None)

    async def test_stop_lets_short_jobs_finish(self, db: Database, workers: WorkerHarness) -> None:
        worker = await workers.start(shutdown_grace_seconds=30)
        job_id = await add(db, "test.sleep", {"seconds": 0.5})
        await eventually(in_state(db, job_id, "running"))
        await workers.stop(worker)
        assert (await job(db, job_id))["state"] == "succeeded"


async def _all_succeeded(db: Database) -> bool:
    async with db.engine.connect() as conn:
        left = await conn.scalar(text("SELECT count(*) FROM jobs WHERE state <> 'succeeded'"))
    return left == 0


async def _attempted(db: Database, job_id: int) -> bool:
    row = await job(db, job_id)
    return bool(row["state"] == "queued" and row["attempts"] >= 1)


async def _claim_loop_idle(db: Database) -> bool:
    # The claim connection's last statement is the idle check for the next due job.
    async with db.engine.connect() as conn:
        count = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'sendstream-worker-claim' AND state = 'idle' AND query ILIKE '%min(run_at)%'"
            )
        )
    return bool(count)


async def _as_if_claimed_by_a_dead_worker(db: Database, job_id: int) -> None:
    async with db.session() as session:
        await session.execute(
            text(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, "
                "locked_by = 'gone:1:dead', lease_until = now() - interval '1 second' "
                "WHERE id = :id"
            ),
            {"id": job_id},
        )


class TestHousekeeping:
    async def test_worker_deletes_expired_idempotency_keys_and_keeps_fresh_ones(
        self, db: Database, workers: WorkerHarness, admin_actor: Actor
    ) -> None:
        async with db.session() as session:
            for key, age in (("old", "25 hours"), ("fresh", "1 minute")):
                await session.execute(
                    text(
                        "INSERT INTO idempotency_keys (workspace_id, key, request_hash, created_at)"
                        " VALUES (:ws, :key, 'h', now() - CAST(:age AS interval))"
                    ),
                    {"ws": admin_actor.workspace_id, "key": key, "age": age},
                )

        async def keys() -> set[str] | None:
            async with db.engine.connect() as conn:
                rows = (await conn.execute(text("SELECT key FROM idempotency_keys"))).scalars()
                found = set(rows)
            return found if found == {"fresh"} else None

        await workers.start(lease_seconds=1)
        assert await eventually(keys) == {"fresh"}
