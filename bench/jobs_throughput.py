"""Job queue throughput: Sendstream's queue against pgqueuer on the same server.

    .venv/bin/python bench/jobs_throughput.py [--jobs 50000] [--workers 2]

Uses the PostgreSQL service at 127.0.0.1:5432 when it answers, else starts the
embedded server in a temporary folder. Each queue gets its own scratch
database. For each queue: start the worker processes and wait until they are
connected and idle, enqueue N no-op jobs in one transaction (timed: the
enqueue rate), then time from that commit until every job is done. Worker
start-up (Python imports) is outside the timing for both queues alike.

The last line printed is one flat JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from support import (
    drop_database,
    fresh_database,
    log,
    server_admin_url,
    sqlalchemy_url,
    stop,
)

ROOT = Path(__file__).resolve().parent.parent

PGQ_WORKER = """
import asyncio, os, signal, sys
import psycopg
from pgqueuer import PgQueuer
from pgqueuer.db import PsycopgDriver
from pgqueuer.models import Job

async def main() -> None:
    conn = await psycopg.AsyncConnection.connect(os.environ["BENCH_PGQ_URL"], autocommit=True)
    pgq = PgQueuer(PsycopgDriver(conn))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        return None

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, pgq.shutdown.set)
    await pgq.run(batch_size=int(os.environ["BENCH_PGQ_BATCH"]))

import uvloop
with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
    runner.run(main())
"""


def wait_for_workers(url: str, query: str, count: int, timeout: float = 60) -> None:
    """Block until `query` counts `count` worker sessions (up and idle)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(query).fetchone()
            if row and row[0] >= count:
                return
            time.sleep(0.1)
    raise RuntimeError(f"workers did not start listening within {timeout}s")


def wait_until_drained(url: str, query: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(query).fetchone()
            if row and not row[0]:
                return time.perf_counter()
            time.sleep(0.02)
    raise RuntimeError(f"queue not drained within {timeout}s")


# --- Sendstream


def bench_sendstream(admin: str, jobs: int, workers: int, concurrency: int) -> dict[str, Any]:
    from sqlalchemy import make_url

    from sendstream.core import migrate

    url = fresh_database(admin, "ss_bench_sendstream")
    sa_url = make_url(sqlalchemy_url(url))
    migrate.upgrade(sa_url)
    env = {
        **os.environ,
        "SENDSTREAM_DATABASE_URL": sa_url.render_as_string(hide_password=False),
        "SENDSTREAM_LOG__LEVEL": "WARNING",
        "SENDSTREAM_JOBS__BATCH_SIZE": str(concurrency),
    }
    cmd = [
        sys.executable,
        "-m",
        "sendstream.cli",
        "worker",
        "--processes",
        "1",
        "--concurrency",
        str(concurrency),
    ]
    procs = [subprocess.Popen(cmd, env=env, cwd=ROOT) for _ in range(workers)]
    try:
        # Each worker's listening connection runs nothing but LISTEN.
        wait_for_workers(
            url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query ILIKE 'LISTEN%%'",
            workers,
        )
        enqueue_seconds = asyncio.run(_enqueue_sendstream(sa_url.render_as_string(False), jobs))
        started = time.perf_counter()
        done = wait_until_drained(
            url,
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE state IN ('queued', 'running'))",
            timeout=600,
        )
        elapsed = done - started
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE state = 'succeeded'), count(*) FROM jobs"
            ).fetchone()
        if row is None or not row[0] == row[1] == jobs:
            raise RuntimeError(f"expected {jobs} succeeded jobs, found (succeeded, all) = {row}")
    finally:
        stop(procs)
        drop_database(admin, "ss_bench_sendstream")
    return {"seconds": elapsed, "enqueue_seconds": enqueue_seconds}


async def _enqueue_sendstream(url: str, jobs: int) -> float:
    from sendstream.core.db import create_database
    from sendstream.core.jobs import enqueue_many
    from sendstream.core.settings import Settings

    db = create_database(Settings(database_url=url))
    payloads = [{"n": i} for i in range(jobs)]
    started = time.perf_counter()
    async with db.session() as session:
        for i in range(0, jobs, 10_000):
            await enqueue_many(session, "jobs.noop", payloads[i : i + 10_000])
    elapsed = time.perf_counter() - started
    await db.dispose()
    return elapsed


# --- pgqueuer


def bench_pgqueuer(admin: str, jobs: int, workers: int, batch_size: int) -> dict[str, Any]:
    url = fresh_database(admin, "ss_bench_pgqueuer")
    asyncio.run(_install_pgqueuer(url))
    env = {**os.environ, "BENCH_PGQ_URL": url, "BENCH_PGQ_BATCH": str(batch_size)}
    procs = [
        subprocess.Popen([sys.executable, "-c", PGQ_WORKER], env=env, cwd=ROOT)
        for _ in range(workers)
    ]
    try:
        # A pgqueuer worker runs everything on one connection; once both are
        # connected, give them a moment to finish start-up checks and LISTEN.
        wait_for_workers(
            url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
            workers,
        )
        time.sleep(2)
        enqueue_seconds = asyncio.run(_enqueue_pgqueuer(url, jobs))
        started = time.perf_counter()
        done = wait_until_drained(url, "SELECT EXISTS (SELECT 1 FROM pgqueuer)", timeout=600)
        elapsed = done - started
    finally:
        stop(procs)
        drop_database(admin, "ss_bench_pgqueuer")
    return {"seconds": elapsed, "enqueue_seconds": enqueue_seconds}


async def _install_pgqueuer(url: str) -> None:
    from pgqueuer import Queries
    from pgqueuer.db import PsycopgDriver

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await Queries(PsycopgDriver(conn)).install()


async def _enqueue_pgqueuer(url: str, jobs: int) -> float:
    from pgqueuer import Queries
    from pgqueuer.db import PsycopgDriver

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        queries = Queries(PsycopgDriver(conn))
        started = time.perf_counter()
        # One transaction, like Sendstream's side: workers see all jobs at once.
        async with conn.transaction():
            for i in range(0, jobs, 10_000):
                n = min(10_000, jobs - i)
                payloads: list[bytes | None] = [str(i + k).encode() for k in range(n)]
                await queries.enqueue(["noop"] * n, payloads, [0] * n)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes per queue")
    parser.add_argument(
        "--concurrency", type=int, default=200, help="Sendstream jobs in flight per process"
    )
    # 500 was pgqueuer's fastest setting here (10: 1.7k/s, 100: 6.4k/s, 1000: 11.4k/s).
    parser.add_argument("--pgqueuer-batch-size", type=int, default=500)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ss-bench-") as tmp:
        admin, server = server_admin_url(Path(tmp))
        log(f"server: {server}; {args.jobs} jobs, {args.workers} worker processes each")
        ours = bench_sendstream(admin, args.jobs, args.workers, args.concurrency)
        log(f"sendstream: {ours}")
        theirs = bench_pgqueuer(admin, args.jobs, args.workers, args.pgqueuer_batch_size)
        log(f"pgqueuer: {theirs}")

    ours_rate = args.jobs / ours["seconds"]
    theirs_rate = args.jobs / theirs["seconds"]
    result = {
        "jobs": args.jobs,
        "workers": args.workers,
        "sendstream_jobs_per_s": round(ours_rate, 1),
        "pgqueuer_jobs_per_s": round(theirs_rate, 1),
        "ratio_sendstream_vs_pgqueuer": round(ours_rate / theirs_rate, 3),
        "sendstream_enqueue_jobs_per_s": round(args.jobs / ours["enqueue_seconds"], 1),
        "pgqueuer_enqueue_jobs_per_s": round(args.jobs / theirs["enqueue_seconds"], 1),
        "sendstream_seconds": round(ours["seconds"], 3),
        "pgqueuer_seconds": round(theirs["seconds"], 3),
        "sendstream_concurrency": args.concurrency,
        "pgqueuer_batch_size": args.pgqueuer_batch_size,
        "server": server,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
