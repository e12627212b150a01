"""Real worker processes: killed with SIGKILL mid-batch, cut off from the
database for ten seconds, and supervised by `--processes N`. No job may be
lost in any of them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from sendstream.core.db import Database
from sendstream.core.jobs import enqueue_many
from tests.fixtures.job_worker import eventually
from tests.fixtures.processes import clean_env, start_cli, stop
from tests.fixtures.tcp_proxy import proxied_database

pytestmark = pytest.mark.slow

Runs = Callable[[], Awaitable[dict[int, int]]]
ROOT = Path(__file__).resolve().parents[3]


def worker_env(url: URL, **extra: str) -> dict[str, str]:
    return clean_env(
        SENDSTREAM_DATABASE_URL=url.render_as_string(hide_password=False),
        SENDSTREAM_LOG__LEVEL="INFO",
        SENDSTREAM_JOBS__LEASE_SECONDS="2",
        SENDSTREAM_JOBS__BACKOFF_BASE_SECONDS="0.05",
        SENDSTREAM_JOBS__BACKOFF_MAX_SECONDS="0.5",
        SENDSTREAM_DATABASE__CONNECT_TIMEOUT="2",
        **extra,
    )


def start_worker(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    return start_cli(["worker", "--import", "tests.fixtures.jobs", *args], env, ROOT, log)


async def count_states(db: Database) -> dict[str, int]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(text("SELECT state, count(*) FROM jobs GROUP BY state"))
        return {r[0]: int(r[1]) for r in rows}


async def enqueue_records(db: Database, n: int, sleep: float) -> list[int]:
    async with db.session() as session:
        return await enqueue_many(session, "test.record", [{"sleep": sleep} for _ in range(n)])


class TestKilledWorker:
    async def test_sigkill_mid_batch_loses_no_job_and_runs_none_twice(
        self, db: Database, database_url: URL, runs: Runs, tmp_path: Path
    ) -> None:
        ids = await enqueue_records(db, 2000, sleep=0.05)
        env = worker_env(database_url)
        first = start_worker(env, tmp_path / "first.log", "--processes", "1", "--concurrency", "10")
        try:
            await eventually(lambda: _ran_at_least(runs, 300), within=60)
            held = (await count_states(db)).get("running", 0)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            stop(first)
        states = await count_states(db)
        assert held > 0
        assert states.get("running", 0) > 0, states
        assert states.get("succeeded", 0) < 2000

        second = start_worker(env, tmp_path / "second.log", "--concurrency", "50")
        try:
            await eventually(lambda: _all_succeeded(db, 2000), within=100)
        finally:
            assert stop(second) == 0, (tmp_path / "second.log").read_text()
        assert await runs() == {job_id: 1 for job_id in ids}
        assert "jobs.leases_expired" in (tmp_path / "second.log").read_text()


class TestDatabaseOutage:
    async def test_worker_survives_a_ten_second_outage_and_finishes_the_jobs(
        self, db: Database, database_url: URL, runs: Runs, tmp_path: Path
    ) -> None:
        log = tmp_path / "worker.log"
        with proxied_database(database_url) as (proxy, url):
            proc = start_worker(worker_env(url), log, "--concurrency", "10")
            try:
                before = await enqueue_records(db, 300, sleep=0.05)
                await eventually(lambda: _ran_at_least(runs, 50), within=60)
                proxy.cut()
                during = await enqueue_records(db, 100, sleep=0)
                await asyncio.sleep(10)
                assert proc.poll() is None, log.read_text()
                proxy.restore()
                await eventually(lambda: _all_succeeded(db, 400), within=90)
            finally:
                stop(proc)
        ran = await runs()
        assert set(ran) == set(before + during)
        assert all(count == 1 for count in ran.values())
        output = log.read_text()
        assert "worker.database_unavailable" in output
        assert "worker.database_back" in output


class TestSupervisor:
    async def test_supervisor_restarts_a_child_that_dies(
        self, db: Database, database_url: URL, runs: Runs, tmp_path: Path
    ) -> None:
        log = tmp_path / "supervisor.log"
        proc = start_worker(worker_env(database_url), log, "--processes", "2")
        try:
            children = await eventually(lambda: _children(proc.pid, 2), within=60)
            os.kill(children[0], signal.SIGKILL)
            replaced = await eventually(
                lambda: _children(proc.pid, 2, exclude=children[0]), within=60
            )
            assert children[0] not in replaced
            ids = await enqueue_records(db, 50, sleep=0)
            await eventually(lambda: _all_succeeded(db, 50), within=60)
        finally:
            assert stop(proc) == 0, log.read_text()
        assert set(await runs()) == set(ids)
        assert "supervisor.child_died" in log.read_text()


async def _ran_at_least(runs: Runs, n: int) -> bool:
    return len(await runs()) >= n


async def _all_succeeded(db: Database, n: int) -> bool:
    return (await count_states(db)) == {"succeeded": n}


async def _children(pid: int, n: int, exclude: int | None = None) -> list[int] | None:
    kids = [child for child in _child_pids(pid) if child != exclude]
    return kids if len(kids) >= n else None


def _child_pids(parent: int) -> list[int]:
    """Direct children of `parent`, from /proc (field 4 of /proc/PID/stat)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent and fields[0] != "Z":
            found.append(int(entry.name))
    return found
