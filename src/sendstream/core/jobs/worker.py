"""The job runner: one `Worker` per process runs jobs concurrently.

Four loops share three raw psycopg connections (autocommit):

- claim: `UPDATE ... FOR UPDATE SKIP LOCKED LIMIT n RETURNING` into free slots;
  when the queue is drained it sleeps until a NOTIFY, the next scheduled
  `run_at`, or `poll_interval`, whichever comes first;
- listen: a dedicated connection in LISTEN that wakes the claim loop;
- flush: writes outcomes in batches (one UPDATE for every succeeded id
  gathered since the last round trip);
- heartbeat: extends the leases of held jobs every lease/3 s and stops the
  task of any job that is no longer ours (cancelled through the API or CLI);
- maintenance: puts expired leases back (the reaper), deletes finished jobs
  past retention and runs every domain's registered `cleanup`.

Delivery is at least once. A handler that uses `ctx.session` has its writes
committed in the same transaction that marks the job succeeded, so those writes
happen exactly once per success; anything else a handler does (HTTP calls,
email) may happen again after a crash, so handlers reload state by id and check
whether their work is already done.

When PostgreSQL goes away the worker keeps running: it logs, closes its
connections, retries with exponential backoff (capped at 10 s) and LISTENs
again once the server answers. Outcomes of jobs that finished meanwhile are
kept in memory and written on reconnection.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import random
import socket
import time
import traceback
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.db import Database, create_database
from sendstream.core.idempotency import delete_expired_idempotency_keys
from sendstream.core.jobs import queue
from sendstream.core.jobs.registry import (
    Cancel,
    JobContext,
    JobInfo,
    JobKind,
    Retry,
    find_kind,
    registered_cleanups,
)
from sendstream.core.loops import first_line, loop_connections, run_reconnecting
from sendstream.core.metrics import JOB_OUTCOMES, JOB_SECONDS
from sendstream.core.settings import Settings, get_settings

log = structlog.get_logger("sendstream.jobs")

# Shortest sleep of an idle claim loop, so a due job that another worker holds
# locked for a moment cannot turn the loop into a busy spin.
MIN_IDLE_SLEEP = 0.05
# last_error keeps the message and the innermost frames, not a whole traceback.
MAX_ERROR_CHARS = 4000
CLEANUP_INTERVAL = 60.0


class UnknownJobKind(Exception):
    pass


class JobTimedOut(Exception):
    pass


class _NoLongerOurs(Exception):
    """The job was cancelled or its lease lost while the handler ran."""


@dataclass(slots=True)
class _Held:
    """A job this worker has claimed and is running."""

    info: JobInfo
    task: asyncio.Task[None] | None = None
    # Why we cancelled its task: "cancelled" (no longer ours) or "shutdown".
    stop_reason: str | None = None
    # Set while the handler's session commits with the completion; such a task
    # is never cancelled, since its outcome is already being written.
    committing: bool = False


@dataclass(slots=True)
class _Outcomes:
    """Results waiting to be written. They stay here until a write succeeds,
    so an outage loses none of them."""

    succeeded: list[int] = field(default_factory=list)
    finished: list[dict[str, Any]] = field(default_factory=list)
    released: list[int] = field(default_factory=list)

    def ids(self) -> list[int]:
        return [*self.succeeded, *(f["id"] for f in self.finished), *self.released]

    def __bool__(self) -> bool:
        return bool(self.succeeded or self.finished or self.released)


def worker_name() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def import_task_modules(modules: Iterable[str]) -> None:
    """Import the modules whose `@job` decorators register the kinds to run."""
    for module in modules:
        importlib.import_module(module)


class Worker:
    def __init__(
        self,
        *,
        settings: Settings | None = None,
        database: Database | None = None,
        concurrency: int | None = None,
        batch_size: int | None = None,
        name: str | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        jobs = self.settings.jobs
        self.concurrency = max(1, concurrency or jobs.concurrency)
        self.batch_size = max(1, min(batch_size or jobs.batch_size, self.concurrency))
        self.lease_seconds = jobs.lease_seconds
        self.poll_interval = jobs.poll_interval
        self.name = name or worker_name()
        self._own_database = database is None
        self._database = database
        self._held: dict[int, _Held] = {}
        self._outcomes = _Outcomes()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._flush_wanted = asyncio.Event()
        self._kind_metrics: dict[str, tuple[Any, Any, Any, Any, Any]] = {}
        self.stopped = asyncio.Event()

    # --- lifecycle

    def stop(self) -> None:
        """Graceful stop: claim nothing more, let running jobs finish for up to
        `shutdown_grace_seconds`, give the rest back without burning an attempt."""
        self._stop.set()
        self._wake.set()
        self._slot_free.set()

    @property
    def database(self) -> Database:
        if self._database is None:
            self._database = _worker_database(self.settings, self.concurrency)
        return self._database

    async def run(self) -> None:
        """Run until `stop()`; survives database outages."""
        log.info(
            "worker.started",
            worker=self.name,
            concurrency=self.concurrency,
            batch_size=self.batch_size,
        )
        try:
            await run_reconnecting(
                self._stop,
                lambda: loop_connections(
                    self.database, self.settings, "worker", ("listen", "claim", "ack")
                ),
                lambda conns: self._serve(*conns),
                log=log,
                loop="worker",
                context=lambda: {"worker": self.name, "jobs_held": len(self._held)},
            )
            await self._finish_without_connections()
        finally:
            if self._own_database and self._database is not None:
                await self._database.dispose()
            log.info("worker.stopped", worker=self.name)
            self.stopped.set()

    async def _serve(
        self,
        listen: psycopg.AsyncConnection[Any],
        claim: psycopg.AsyncConnection[Any],
        ack: psycopg.AsyncConnection[Any],
    ) -> None:
        await listen.execute(f"LISTEN {queue.CHANNEL}")
        # Outcomes kept through an outage are written before new work is taken.
        await self._flush(ack)
        background = [
            asyncio.create_task(self._listen_loop(listen), name="jobs-listen"),
            asyncio.create_task(self._flush_loop(ack), name="jobs-flush"),
            asyncio.create_task(self._heartbeat_loop(ack), name="jobs-heartbeat"),
            asyncio.create_task(self._maintenance_loop(ack), name="jobs-maintenance"),
        ]
        claimer = asyncio.create_task(self._claim_loop(claim), name="jobs-claim")
        try:
            done, _ = await asyncio.wait(
                [claimer, *background], return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                task.result()  # a loop only ends by raising, or the claimer on stop
            if not self._stop.is_set():
                # A loop returned on its own (the server closed the LISTEN
                # stream): treat it as a lost connection and start over.
                raise psycopg.OperationalError("a worker loop ended; reconnecting")
            # Stopping: the heartbeat and flush loops keep running while
            # running jobs drain, so their leases hold and outcomes land.
            await self._drain()
            await self._flush(ack)
        finally:
            for task in [claimer, *background]:
                task.cancel()
            await asyncio.gather(claimer, *background, return_exceptions=True)

    async def _drain(self) -> None:
        tasks = [h.task for h in self._held.values() if h.task is not None]
        if tasks:
            log.info("worker.draining", worker=self.name, jobs=len(tasks))
            await asyncio.wait(tasks, timeout=self.settings.jobs.shutdown_grace_seconds)
        for held in list(self._held.values()):
            if held.task is not None and not held.task.done() and not held.committing:
                held.stop_reason = "shutdown"
                held.task.cancel()
        remaining = [h.task for h in self._held.values() if h.task is not None]
        if remaining:
            await asyncio.wait(remaining)

    async def _finish_without_connections(self) -> None:
        """Stop reached while the database was away (or after serving): finish
        what runs and write outcomes if the database answers one last time;
        otherwise the leases expire and the reaper gives the jobs back."""
        await self._drain()
        if not self._outcomes:
            return
        try:
            async with asyncio.timeout(5):
                async with loop_connections(self.database, self.settings, "worker", ("final",)) as (
                    conn,
                ):
                    await self._flush(conn)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            log.warning(
                "worker.outcomes_unwritten",
                worker=self.name,
                jobs=len(self._outcomes.ids()),
                error=first_line(exc),
            )

    # --- loops

    async def _listen_loop(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async for _ in conn.notifies():
            self._wake.set()

    async def _claim_loop(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while not self._stop.is_set():
            free = self.concurrency - len(self._held)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            limit = min(self.batch_size, free)
            self._wake.clear()
            cur = await conn.execute(
                queue.CLAIM, {"worker": self.name, "lease": self.lease_seconds, "limit": limit}
            )
            rows = await cur.fetchall()
            for row in rows:
                self._start(row)
            if len(rows) == limit or self._stop.is_set():
                continue
            # Drained: sleep until a NOTIFY, the next scheduled job, or the
            # fallback interval (which also covers a lost notification).
            due = (await (await conn.execute(queue.NEXT_DUE)).fetchone() or (None,))[0]
            timeout = self.poll_interval
            if due is not None:
                timeout = min(timeout, max(float(due), MIN_IDLE_SLEEP))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _flush_loop(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted.clear()
            await self._flush(conn)

    async def _heartbeat_loop(self, conn: psycopg.AsyncConnection[Any]) -> None:
        interval = max(self.lease_seconds / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            held_ids = list(self._held)
            ids = held_ids + self._outcomes.ids()
            if not ids:
                continue
            cur = await conn.execute(
                queue.HEARTBEAT, {"ids": ids, "worker": self.name, "lease": self.lease_seconds}
            )
            alive = {row[0] for row in await cur.fetchall()}
            for job_id in held_ids:
                held = self._held.get(job_id)
                if job_id in alive or held is None or held.committing or held.task is None:
                    continue
                held.stop_reason = "cancelled"
                held.task.cancel()

    async def _maintenance_loop(self, conn: psycopg.AsyncConnection[Any]) -> None:
        interval = max(self.lease_seconds / 2, 0.1)
        # Workers started together should not all reap in the same instant.
        await asyncio.sleep(random.uniform(0, interval))  # noqa: S311  not security
        last_cleanup = 0.0
        while True:
            cur = await conn.execute(queue.REAP_EXPIRED)
            requeued, dead, _ = await cur.fetchone() or (0, 0, 0)
            if requeued or dead:
                log.warning("jobs.leases_expired", requeued=requeued, dead=dead)
                JOB_OUTCOMES.labels("*", "lease_expired").inc(requeued + dead)
            if time.monotonic() - last_cleanup >= CLEANUP_INTERVAL:
                last_cleanup = time.monotonic()
                hours = self.settings.jobs.retention_hours
                deleted = (await conn.execute(queue.DELETE_EXPIRED, {"hours": hours})).rowcount
                if deleted:
                    log.info("jobs.cleaned_up", deleted=deleted, retention_hours=hours)
                async with self.database.session() as session:
                    keys = await delete_expired_idempotency_keys(session)
                if keys:
                    log.info("idempotency_keys.cleaned_up", deleted=keys)
                for name, clean in registered_cleanups().items():
                    async with self.database.session() as session:
                        removed = await clean(session)
                    if removed:
                        log.info("cleanup.done", cleanup=name, deleted=removed)
            await asyncio.sleep(interval)

    async def _flush(self, conn: psycopg.AsyncConnection[Any]) -> None:
        out = self._outcomes
        while out:
            succeeded, finished, released = out.succeeded, out.finished, out.released
            self._outcomes = out = _Outcomes()
            try:
                if succeeded:
                    await conn.execute(queue.COMPLETE_MANY, {"ids": succeeded, "worker": self.name})
                    succeeded = []
                if finished:
                    async with conn.cursor() as cur:
                        await cur.executemany(queue.FINISH_ATTEMPT, finished)
                    finished = []
                if released:
                    await conn.execute(queue.RELEASE, {"ids": released, "worker": self.name})
                    released = []
            finally:
                # Whatever was not written goes back for the next attempt.
                out.succeeded[:0] = succeeded
                out.finished[:0] = finished
                out.released[:0] = released

    # --- running one job

    def _start(self, row: tuple[Any, ...]) -> None:
        job_id, kind, payload, attempt, max_attempts, workspace_id = row
        info = JobInfo(job_id, kind, payload, attempt, max_attempts, workspace_id)
        held = _Held(info)
        self._held[job_id] = held
        held.task = asyncio.create_task(self._run_job(held, find_kind(kind)))

    def _metrics(self, kind: str) -> tuple[Any, Any, Any, Any, Any]:
        children = self._kind_metrics.get(kind)
        if children is None:
            children = (
                JOB_SECONDS.labels(kind),
                JOB_OUTCOMES.labels(kind, "succeeded"),
                JOB_OUTCOMES.labels(kind, "retried"),
                JOB_OUTCOMES.labels(kind, "dead"),
                JOB_OUTCOMES.labels(kind, "cancelled"),
            )
            self._kind_metrics[kind] = children
        return children

    def _open_session(self) -> AsyncSession:
        return self.database.sessionmaker()

    async def _run_job(self, held: _Held, kind: JobKind | None) -> None:
        info = held.info
        structlog.contextvars.bind_contextvars(job_id=info.id, kind=info.kind, attempt=info.attempt)
        seconds, succeeded, retried, dead, cancelled = self._metrics(info.kind)
        started = time.perf_counter()
        ctx = JobContext(info, self._open_session)
        log.debug("job.started")
        try:
            if kind is None:
                raise UnknownJobKind(
                    f"no handler registered for job kind {info.kind!r} in this worker "
                    "(import the module that defines it with --import)"
                )
            if kind.timeout is not None:
                try:
                    async with asyncio.timeout(kind.timeout):
                        await kind.handler(ctx)
                except TimeoutError as exc:
                    raise JobTimedOut(f"job {info.kind} timed out after {kind.timeout} s") from exc
            else:
                await kind.handler(ctx)
            session = ctx.session_used
            if session is None:
                self._outcomes.succeeded.append(info.id)
                self._flush_wanted.set()
            else:
                await self._commit_with_completion(held, session)
            succeeded.inc()
            log.debug("job.succeeded", duration_ms=_ms_since(started))
        except asyncio.CancelledError:
            if held.stop_reason == "shutdown":
                self._outcomes.released.append(info.id)
                self._flush_wanted.set()
                log.info("job.released", reason="worker shutting down")
            elif held.stop_reason == "cancelled":
                cancelled.inc()
                log.info("job.stopped", reason="no longer leased to this worker (cancelled)")
            else:
                raise
        except _NoLongerOurs:
            cancelled.inc()
            log.warning("job.stopped", reason="cancelled or lease lost before completion")
        except Cancel as exc:
            self._finish_attempt(info, queue.CANCELLED, _describe(exc), 0.0)
            cancelled.inc()
            log.info("job.cancelled", reason=str(exc))
        except UnknownJobKind as exc:
            self._finish_attempt(info, queue.DEAD, str(exc), 0.0)
            dead.inc()
            log.error("job.dead", error=str(exc))
        except Exception as exc:
            error = _describe(exc)
            if info.attempt >= info.max_attempts:
                self._finish_attempt(info, queue.DEAD, error, 0.0)
                dead.inc()
                log.error("job.dead", error=error.splitlines()[0], attempts=info.attempt)
            else:
                delay = exc.after if isinstance(exc, Retry) else self._backoff(info.attempt)
                self._finish_attempt(info, queue.QUEUED, error, delay)
                retried.inc()
                log.warning("job.retry", error=error.splitlines()[0], retry_in=round(delay, 3))
        finally:
            session = ctx.session_used
            if session is not None:
                with contextlib.suppress(Exception):
                    await session.close()
            seconds.observe(time.perf_counter() - started)
            del self._held[info.id]
            self._slot_free.set()

    async def _commit_with_completion(self, held: _Held, session: AsyncSession) -> None:
        held.committing = True
        result = await session.execute(
            queue.COMPLETE_ONE, {"id": held.info.id, "worker": self.name}
        )
        if getattr(result, "rowcount", 0) != 1:
            await session.rollback()
            # Its writes are dropped; whoever holds the job now decides what
            # happens to it.
            raise _NoLongerOurs
        await session.commit()

    def _finish_attempt(self, info: JobInfo, state: str, error: str, delay: float) -> None:
        self._outcomes.finished.append(
            {"id": info.id, "state": state, "error": error, "delay": delay, "worker": self.name}
        )
        self._flush_wanted.set()

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^attempt)], so workers
        retrying the same failing dependency spread out instead of stampeding."""
        jobs = self.settings.jobs
        ceiling = min(jobs.backoff_max_seconds, jobs.backoff_base_seconds * 2**attempt)
        return random.uniform(0, ceiling)  # noqa: S311  not security


def _worker_database(settings: Settings, concurrency: int) -> Database:
    """Handler sessions wait for a pooled connection rather than failing after
    the API's short pool timeout: a busy worker is not an outage."""
    db = settings.database
    tuned = settings.model_copy(
        update={"database": db.model_copy(update={"pool_timeout": max(db.pool_timeout, 30.0)})}
    )
    return create_database(tuned)


def _describe(exc: BaseException) -> str:
    frames = traceback.format_exception(exc, limit=-3)
    text = f"{type(exc).__name__}: {exc}\n" + "".join(frames[1:])
    return text[:MAX_ERROR_CHARS]


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


async def run_worker(
    *,
    settings: Settings | None = None,
    database: Database | None = None,
    concurrency: int | None = None,
    imports: Iterable[str] = (),
    stop: asyncio.Event | None = None,
) -> None:
    """Run one worker in the current event loop until `stop` is set (or the
    task is cancelled); for `sendstream up`, which shares the server's loop and
    database."""
    import_task_modules(imports)
    worker = Worker(settings=settings, database=database, concurrency=concurrency)
    runner = asyncio.create_task(worker.run())
    try:
        if stop is None:
            await runner
        else:
            await stop.wait()
            worker.stop()
            await runner
    finally:
        if not runner.done():
            worker.stop()
            await asyncio.shield(runner)
