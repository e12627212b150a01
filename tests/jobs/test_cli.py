"""`sendstream jobs ...` against the test database."""

from __future__ import annotations

from sendstream.core.db import Database
from tests.fixtures.actors import Actor
from tests.fixtures.cli import Invoke
from tests.fixtures.cli import stdout_json as _json
from tests.jobs.helpers import job_state, make_job


class TestJobsList:
    async def test_lists_every_job_including_system_jobs(self, cli: Invoke, db: Database) -> None:
        system = await make_job(db, "system.cleanup")
        dead = await make_job(db, "test.fail", state="dead")
        rows = _json(await cli("jobs", "list", "--json"))
        assert [r["id"] for r in rows] == [dead, system]

    async def test_filters_by_state_kind_and_workspace(
        self, cli: Invoke, db: Database, admin_actor: Actor, other_workspace_actor: Actor
    ) -> None:
        mine = await make_job(db, "test.fail", workspace_id=admin_actor.workspace_id, state="dead")
        await make_job(
            db, "test.fail", workspace_id=other_workspace_actor.workspace_id, state="dead"
        )
        await make_job(db, "test.record", workspace_id=admin_actor.workspace_id, state="dead")
        rows = _json(
            await cli(
                "jobs", "list", "--state", "dead", "--kind", "test.fail",
                "--workspace", admin_actor.workspace_slug, "--json",
            )
        )  # fmt: skip
        assert [r["id"] for r in rows] == [mine]

    async def test_table_shows_kind_state_and_error(self, cli: Invoke, db: Database) -> None:
        await make_job(db, "test.fail", state="dead")
        result = await cli("jobs", "list")
        assert result.exit_code == 0, result.output
        assert "test.fail" in result.stdout
        assert "dead" in result.stdout
        assert "boom" in result.stdout

    async def test_unknown_workspace_is_one_clear_line(self, cli: Invoke) -> None:
        result = await cli("jobs", "list", "--workspace", "nope")
        assert result.exit_code == 1
        assert "nope" in result.output
        assert "Traceback" not in result.output


class TestJobsShowRetryCancel:
    async def test_show_prints_the_job(self, cli: Invoke, db: Database) -> None:
        job_id = await make_job(db, payload={"contact_id": 9})
        body = _json(await cli("jobs", "show", str(job_id), "--json"))
        assert (body["id"], body["payload"]) == (job_id, {"contact_id": 9})

    async def test_missing_job_is_one_clear_line(self, cli: Invoke) -> None:
        result = await cli("jobs", "show", "999999")
        assert result.exit_code == 1
        assert "job_not_found" in result.output

    async def test_retry_queues_a_dead_job(self, cli: Invoke, db: Database) -> None:
        job_id = await make_job(db, state="dead")
        result = await cli("jobs", "retry", str(job_id))
        assert result.exit_code == 0, result.output
        assert (await job_state(db, job_id))["state"] == "queued"

    async def test_retry_of_a_running_job_fails_with_its_code(
        self, cli: Invoke, db: Database
    ) -> None:
        job_id = await make_job(db, state="running")
        result = await cli("jobs", "retry", str(job_id))
        assert result.exit_code == 1
        assert "job_running" in result.output

    async def test_retry_dead_requeues_every_dead_job_of_a_kind(
        self, cli: Invoke, db: Database
    ) -> None:
        dead = [await make_job(db, "test.fail", state="dead") for _ in range(2)]
        other = await make_job(db, "test.record", state="dead")
        result = await cli("jobs", "retry", "--dead", "--kind", "test.fail")
        assert result.exit_code == 0, result.output
        assert "2 dead jobs queued again" in result.stdout
        assert [(await job_state(db, j))["state"] for j in dead] == ["queued", "queued"]
        assert (await job_state(db, other))["state"] == "dead"

    async def test_retry_needs_an_id_or_dead(self, cli: Invoke) -> None:
        result = await cli("jobs", "retry")
        assert result.exit_code == 2

    async def test_cancel_cancels_a_queued_job(self, cli: Invoke, db: Database) -> None:
        job_id = await make_job(db)
        result = await cli("jobs", "cancel", str(job_id))
        assert result.exit_code == 0, result.output
        assert (await job_state(db, job_id))["state"] == "cancelled"
