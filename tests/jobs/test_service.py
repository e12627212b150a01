from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from sendstream.core.db import Database
from sendstream.core.jobs.worker import Worker
from sendstream.jobs.errors import (
    JobAlreadySucceeded,
    JobFinished,
    JobNotFound,
    JobRunning,
    UniqueKeyTaken,
)
from sendstream.jobs.service import job_service
from tests.fixtures import jobs as _kinds  # noqa: F401  registers the test kinds
from tests.fixtures.job_worker import WorkerHarness, eventually
from tests.jobs.helpers import job_state, make_job

Runs = Callable[[], Awaitable[dict[int, int]]]


class TestCancelJob:
    async def test_queued_job_is_cancelled_at_once_and_never_runs(
        self, db: Database, workers: WorkerHarness, runs: Runs
    ) -> None:
        job_id = await make_job(db)
        async with db.session() as session:
            await job_service.cancel_job(session, None, job_id)
        await workers.start()
        other = await make_job(db)
        await eventually(lambda: _state_is(db, other, "succeeded"))
        row = await job_state(db, job_id)
        assert row["state"] == "cancelled"
        assert row["finished_at"] is not None
        assert await runs() == {other: 1}

    async def test_running_job_is_stopped_at_the_next_heartbeat_and_not_retried(
        self, db: Database, workers: WorkerHarness
    ) -> None:
        await workers.start(lease_seconds=0.9)
        job_id = await make_job(db, "test.sleep", payload={"seconds": 60})
        await eventually(lambda: _state_is(db, job_id, "running"))
        async with db.session() as session:
            await job_service.cancel_job(session, None, job_id)
        # The worker noticed: its handler task is gone, so it holds nothing.
        worker = workers._running[0][0]
        await eventually(lambda: _holds_nothing(worker))
        row = await job_state(db, job_id)
        assert row["state"] == "cancelled"
        assert row["attempts"] == 1

    @pytest.mark.parametrize("state", ["succeeded", "dead", "cancelled"])
    async def test_finished_job_cannot_be_cancelled(self, db: Database, state: str) -> None:
        job_id = await make_job(db, state=state)
        async with db.session() as session:
            with pytest.raises(JobFinished):
                await job_service.cancel_job(session, None, job_id)


class TestRetryJob:
    @pytest.mark.parametrize("state", ["dead", "cancelled"])
    async def test_ended_job_is_queued_again_with_fresh_attempts(
        self, db: Database, state: str
    ) -> None:
        job_id = await make_job(db, state=state)
        async with db.session() as session:
            await job_service.retry_job(session, None, job_id)
        row = await job_state(db, job_id)
        assert (row["state"], row["attempts"], row["finished_at"]) == ("queued", 0, None)

    async def test_running_job_cannot_be_retried(self, db: Database) -> None:
        job_id = await make_job(db, state="running")
        async with db.session() as session:
            with pytest.raises(JobRunning):
                await job_service.retry_job(session, None, job_id)

    async def test_succeeded_job_cannot_be_retried(self, db: Database) -> None:
        job_id = await make_job(db, state="succeeded")
        async with db.session() as session:
            with pytest.raises(JobAlreadySucceeded):
                await job_service.retry_job(session, None, job_id)

    async def test_dead_job_whose_key_is_live_again_stays_dead(self, db: Database) -> None:
        dead = await make_job(db, state="dead", unique_key="sync:1")
        await make_job(db, unique_key="sync:1")
        async with db.session() as session:
            with pytest.raises(UniqueKeyTaken):
                await job_service.retry_job(session, None, dead)

    async def test_missing_job_is_not_found(self, db: Database) -> None:
        async with db.session() as session:
            with pytest.raises(JobNotFound):
                await job_service.retry_job(session, None, 424242)

    async def test_retried_dead_job_runs_again(
        self, db: Database, workers: WorkerHarness, runs: Runs
    ) -> None:
        await workers.start()
        job_id = await make_job(db, state="dead")
        async with db.session() as session:
            await job_service.retry_job(session, None, job_id)
        await eventually(lambda: _state_is(db, job_id, "succeeded"))
        assert await runs() == {job_id: 1}


class TestRetryDeadJobs:
    async def test_every_dead_job_of_a_kind_is_queued_again(self, db: Database) -> None:
        dead = [await make_job(db, state="dead") for _ in range(3)]
        other_kind = await make_job(db, "test.fail", state="dead")
        succeeded = await make_job(db, state="succeeded")
        async with db.session() as session:
            count = await job_service.retry_dead_jobs(session, None, kind="test.record")
        assert count == 3
        assert [(await job_state(db, j))["state"] for j in dead] == ["queued"] * 3
        assert (await job_state(db, other_kind))["state"] == "dead"
        assert (await job_state(db, succeeded))["state"] == "succeeded"

    async def test_dead_jobs_sharing_a_unique_key_return_once(self, db: Database) -> None:
        first = await make_job(db, state="dead", unique_key="k")
        second = await make_job(db, state="dead", unique_key="k")
        async with db.session() as session:
            assert await job_service.retry_dead_jobs(session, None) == 1
        assert (await job_state(db, first))["state"] == "dead"
        assert (await job_state(db, second))["state"] == "queued"


async def _state_is(db: Database, job_id: int, state: str) -> bool:
    return bool((await job_state(db, job_id))["state"] == state)


async def _holds_nothing(worker: Worker) -> bool:
    return not worker._held
