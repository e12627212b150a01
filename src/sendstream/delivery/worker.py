"""The delivery loop: one `DeliveryWorker` per worker process (inside
`sendstream worker` and `sendstream up`) turns due messages into SMTP
transactions.

- claim: one `UPDATE ... FOR UPDATE SKIP LOCKED ... RETURNING` takes up to
  `worker_batch_size` due messages (queued or deferred with
  `next_attempt_at` passed, and `sending` ones whose lease ran out), marks
  them `sending` with a lease and commits (autocommit). A LISTEN connection
  wakes the loop when messages are queued, so a new message is picked up at
  once; scheduled ones are found at their time or after `poll_interval`.
- each batch loads what it needs once (worker_batch.py), then every message
  is composed and handed to the transport as its own task; at most
  `worker_concurrency` messages are held at once.
- outcomes are written in batches (worker_sql.py) on the loop's own write
  connection: one UPDATE per workspace for every outcome gathered since the
  last write, with its events in the same statement, and the capture
  transport's copies in the same commit.
- heartbeats extend the leases of held messages every lease/3 s.

Crash safety: a message stays held (and counted against the concurrency)
until its outcome is committed. After `kill -9`, the held messages' leases
run out and they are claimed again: the ones that were inside an SMTP
transaction, or sent with the outcome not yet written, are sent a second
time; there are at most `worker_concurrency` of them per process. Every other
message is sent exactly once.

Graceful stop (SIGTERM): claim nothing more, let held messages finish their
SMTP transactions for up to `shutdown_grace_seconds`, write the outcomes,
give back (without an attempt) whatever had not started.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog
from prometheus_client import Counter

from sendstream.core.db import Database, create_database
from sendstream.core.loops import FINAL_ERRORS, first_line, loop_connections, run_reconnecting
from sendstream.core.metrics import REGISTRY
from sendstream.core.settings import Settings, get_settings
from sendstream.delivery import worker_sql
from sendstream.delivery.compose import Outgoing
from sendstream.delivery.message_repository import CHANNEL
from sendstream.delivery.transport import (
    DeliveryResult,
    Envelope,
    RecipientResult,
    Transport,
    transport_from_settings,
)
from sendstream.delivery.worker_batch import (
    BatchContext,
    BatchPreparer,
    envelope_for,
    outcome_of,
    retry_later,
)
from sendstream.delivery.worker_sql import Captured, Outcome

log = structlog.get_logger("sendstream.delivery")

MESSAGE_OUTCOMES = Counter(
    "sendstream_message_outcomes_total",
    "Delivery attempts finished by this process, by outcome (sent, deferred, failed).",
    ["outcome"],
    registry=REGISTRY,
)
MIN_IDLE_SLEEP = 0.05
FLUSH_GATHER_SECONDS = 0.02


@dataclass(slots=True)
class _Held:
    message: Outgoing
    task: asyncio.Task[None] | None = None
    # True once the SMTP transaction began: a stop no longer gives it back.
    started: bool = False
    done: bool = False


class DeliveryWorker:
    def __init__(
        self,
        *,
        settings: Settings | None = None,
        database: Database | None = None,
        transport: Transport | None = None,
        concurrency: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        delivery = self.settings.delivery
        self.concurrency = max(1, concurrency or delivery.worker_concurrency)
        self.batch_size = max(1, min(batch_size or delivery.worker_batch_size, self.concurrency))
        self.lease_seconds = delivery.lease_seconds
        self._own_database = database is None
        self._database = database
        self._transport = transport
        self._preparer = BatchPreparer(self.settings)
        self._held: dict[uuid.UUID, _Held] = {}
        self._outcomes: list[Outcome] = []
        self._captured: list[Captured] = []
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._flush_wanted = asyncio.Event()
        self.stopped = asyncio.Event()

    @property
    def database(self) -> Database:
        if self._database is None:
            self._database = create_database(self.settings)
        return self._database

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = transport_from_settings(self.settings, capture_sink=self._capture)
        return self._transport

    @property
    def held(self) -> int:
        return len(self._held)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._room.set()

    async def _capture(self, envelope: Envelope) -> None:
        # Written with the message's `sent` outcome, in the same commit.
        self._captured.append(
            Captured(
                envelope.workspace_id,
                envelope.message_id,
                envelope.mail_from,
                envelope.recipients,
                envelope.data,
            )
        )

    # --- lifecycle

    async def run(self) -> None:
        """Run until `stop()`; survives database outages."""
        log.info(
            "delivery.started",
            concurrency=self.concurrency,
            batch_size=self.batch_size,
            transport=type(self.transport).__name__,
        )
        try:
            await run_reconnecting(
                self._stop,
                lambda: loop_connections(
                    self.database, self.settings, "delivery", ("listen", "claim", "write")
                ),
                lambda conns: self._serve(*conns),
                log=log,
                loop="delivery",
                context=lambda: {"held": len(self._held)},
            )
            await self._finish()
        finally:
            with contextlib.suppress(Exception):
                await self.transport.aclose()
            if self._own_database and self._database is not None:
                await self._database.dispose()
            log.info("delivery.stopped")
            self.stopped.set()

    async def _serve(
        self,
        listen: psycopg.AsyncConnection[Any],
        claim: psycopg.AsyncConnection[Any],
        write: psycopg.AsyncConnection[Any],
    ) -> None:
        await listen.execute(f"LISTEN {CHANNEL}")
        await self._flush(write)
        background = [
            asyncio.create_task(self._listen_loop(listen), name="delivery-listen"),
            asyncio.create_task(self._flush_loop(write), name="delivery-flush"),
            asyncio.create_task(self._heartbeat_loop(claim), name="delivery-heartbeat"),
        ]
        claimer = asyncio.create_task(self._claim_loop(claim), name="delivery-claim")
        try:
            done, _ = await asyncio.wait(
                [claimer, *background], return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                task.result()
            if not self._stop.is_set():
                raise psycopg.OperationalError("a delivery loop ended; reconnecting")
            # Stopping: leases keep being extended while SMTP transactions drain.
            await self._drain()
            await self._flush(write)
        finally:
            for task in [claimer, *background]:
                task.cancel()
            await asyncio.gather(claimer, *background, return_exceptions=True)

    async def _drain(self) -> None:
        running = [h.task for h in self._held.values() if h.task is not None and not h.done]
        if running:
            log.info("delivery.draining", messages=len(running))
            await asyncio.wait(running, timeout=self.settings.delivery.shutdown_grace_seconds)
        for held in self._held.values():
            if held.task is not None and not held.task.done():
                held.task.cancel()
        remaining = [h.task for h in self._held.values() if h.task is not None]
        if remaining:
            await asyncio.wait(remaining)

    async def _finish(self) -> None:
        """Write what is left, then give back what never started (its lease
        would otherwise keep it until it runs out)."""
        await self._drain()
        try:
            async with (
                asyncio.timeout(10),
                loop_connections(self.database, self.settings, "delivery", ("write",)) as conns,
            ):
                [write] = conns
                await self._flush(write)
                pending = [
                    (h.message.id, h.message.attempts) for h in self._held.values() if not h.done
                ]
                if pending:
                    await worker_sql.release(write, pending)
                    log.info("delivery.released", messages=len(pending))
        except FINAL_ERRORS as exc:
            log.warning(
                "delivery.outcomes_unwritten",
                messages=len(self._outcomes),
                error=first_line(exc),
            )

    # --- loops

    async def _listen_loop(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async for _ in conn.notifies():
            self._wake.set()

    async def _claim_loop(self, conn: psycopg.AsyncConnection[Any]) -> None:
        # Claim when at least half a batch fits: fewer, fuller round trips.
        threshold = max(1, self.batch_size // 2)
        expired_due = 0.0
        while not self._stop.is_set():
            free = self.concurrency - len(self._held)
            if free < threshold:
                self._room.clear()
                await self._room.wait()
                continue
            limit = min(self.batch_size, free)
            self._wake.clear()
            # Leases of dead workers are looked for every lease/3 s, not on
            # every claim (see worker_sql.CLAIM).
            with_expired = time.monotonic() >= expired_due
            if with_expired:
                expired_due = time.monotonic() + self.lease_seconds / 3
            cur = await conn.execute(
                worker_sql.CLAIM,
                {"limit": limit, "lease": self.lease_seconds, "with_expired": with_expired},
            )
            rows = await cur.fetchall()
            if rows:
                await self._start(rows)
            if len(rows) == limit or self._stop.is_set():
                continue
            due = (await (await conn.execute(worker_sql.NEXT_DUE)).fetchone() or (None,))[0]
            timeout = self.settings.delivery.poll_interval
            if due is not None:
                timeout = min(timeout, max(float(due), MIN_IDLE_SLEEP))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _flush_loop(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted.clear()
            if len(self._outcomes) < self.batch_size and not self._stop.is_set():
                # Let a few more outcomes gather: one UPDATE, one events
                # insert and one commit for many messages cost the database
                # far less than one each, for a few milliseconds of latency.
                await asyncio.sleep(FLUSH_GATHER_SECONDS)
            await self._flush(conn)

    async def _heartbeat_loop(self, conn: psycopg.AsyncConnection[Any]) -> None:
        interval = max(self.lease_seconds / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            ids = list(self._held)
            if ids:
                await conn.execute(worker_sql.HEARTBEAT, {"ids": ids, "lease": self.lease_seconds})

    async def _flush(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Write every gathered outcome; only then are their messages let go."""
        while self._outcomes:
            outcomes, captured = self._outcomes, self._captured
            self._outcomes, self._captured = [], []
            by_workspace: dict[uuid.UUID, list[Outcome]] = {}
            for outcome in outcomes:
                by_workspace.setdefault(outcome.workspace_id, []).append(outcome)
            done = {o.message_id for o in outcomes}
            try:
                async with conn.transaction():
                    for workspace_id in sorted(by_workspace):
                        await worker_sql.write_outcomes(
                            conn, workspace_id, by_workspace[workspace_id]
                        )
                    await worker_sql.write_captured(
                        conn, [c for c in captured if c.message_id in done]
                    )
            except BaseException:
                # Kept for the next attempt (after a reconnect).
                self._outcomes[:0] = outcomes
                self._captured[:0] = captured
                raise
            self._captured[:0] = [c for c in captured if c.message_id not in done]
            for outcome in outcomes:
                MESSAGE_OUTCOMES.labels(outcome.status).inc()
                self._held.pop(outcome.message_id, None)
            self._room.set()

    # --- one batch, one message

    async def _start(self, rows: list[tuple[Any, ...]]) -> None:
        batch = [_outgoing(row) for row in rows]
        with_attachments = {row[0] for row in rows if row[-1]}
        for m in batch:
            self._held[m.id] = _Held(m)
        try:
            async with self.database.session() as session:
                ctx = await self._preparer.prepare(session, batch, with_attachments)
        except BaseException:
            # Not started: let go (no heartbeats), so their leases run out and
            # they are claimed again.
            for m in batch:
                self._held.pop(m.id, None)
            raise
        for m in batch:
            held = self._held[m.id]
            held.task = asyncio.create_task(self._deliver(held, ctx))

    async def _deliver(self, held: _Held, ctx: BatchContext) -> None:
        m = held.message
        try:
            try:
                prepared = envelope_for(m, ctx, self.settings)
            except Exception as exc:  # a bug must not strand the message or stop the loop
                log.exception("delivery.compose_crashed", message_id=str(m.id))
                prepared = retry_later(m, f"internal error: {first_line(exc)}", self.settings)
            if isinstance(prepared, Outcome):
                outcome = prepared
            else:
                held.started = True
                try:
                    result = await self.transport.send(prepared)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a transport must answer, but never lose the message
                    log.warning("delivery.transport_error", error=first_line(exc))
                    result = DeliveryResult(
                        results=(
                            RecipientResult(
                                prepared.recipients[0], "deferred", None, None, first_line(exc)
                            ),
                        ),
                        relay=None,
                    )
                outcome = outcome_of(m, prepared, result, self.settings, datetime.now(UTC))
        except asyncio.CancelledError:
            if held.started:
                # Cut off inside the SMTP transaction: the lease runs out and
                # the message is tried again (it may have gone through).
                held.done = True
            raise
        held.done = True
        self._outcomes.append(outcome)
        self._flush_wanted.set()


def _outgoing(row: tuple[Any, ...]) -> Outgoing:
    """A claimed row (worker_sql.CLAIM) as the message to build."""
    (
        message_id,
        workspace_id,
        stream,
        from_email,
        from_name,
        reply_to,
        to_email,
        to_name,
        message_id_header,
        to_email_key,
        cc,
        bcc,
        contact_id,
        list_id,
        template_version_id,
        data,
        subject,
        html,
        text,
        headers,
        track_opens,
        track_clicks,
        attempts,
        first_due,
        _has_attachments,
    ) = row
    return Outgoing(
        id=message_id,
        workspace_id=workspace_id,
        stream=stream,
        from_email=from_email,
        from_name=from_name,
        reply_to=reply_to,
        to_email=to_email,
        to_name=to_name,
        message_id_header=message_id_header,
        to_email_key=to_email_key,
        cc=list(cc or []),
        bcc=list(bcc or []),
        contact_id=contact_id,
        list_id=list_id,
        template_version_id=template_version_id,
        data=dict(data or {}),
        subject=subject,
        html=html,
        text=text,
        headers=list(headers or []),
        track_opens=track_opens,
        track_clicks=track_clicks,
        attempts=attempts,
        first_due=first_due,
    )


async def run_delivery(
    *,
    settings: Settings | None = None,
    database: Database | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run one delivery loop in the current event loop until `stop` is set
    (or the task is cancelled): `sendstream up` and `sendstream worker`."""
    worker = DeliveryWorker(settings=settings, database=database)
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
