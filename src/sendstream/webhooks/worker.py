"""The webhook loop: one `WebhookWorker` per worker process (inside
`sendstream worker` and `sendstream up`, beside the delivery loop) fans
events out into deliveries (dispatcher.py) and sends them (sender.py).

- fan-out: woken by the outbox's NOTIFY, one transaction per round (see
  dispatcher.py); of several processes one fans out at a time.
- claim: one statement takes up to `worker_batch_size` due deliveries within
  every endpoint's free concurrency, marks them `delivering` with a lease and
  commits (delivery_sql.CLAIM). Woken by the fan-out's NOTIFY; retries are
  found at their time or after `poll_interval`. The claim walks each
  endpoint's due work from the last delivery this loop claimed there (its
  claim position), not over every delivery claimed since the last vacuum;
  every lease/3 s and after idling it walks from the start.
- send: each delivery is its own task; at most `worker_concurrency` are
  held at once. The signature is made per attempt (its timestamp is the
  attempt's).
- outcomes are written in batches, and only then let go: all successful,
  one statement on the loop's own autocommit connection; else in a session
  (state changes and attempts, the endpoints' health, `webhook.disabled`).
- heartbeats extend the leases of held deliveries every lease/3 s.

Crash safety: after `kill -9` the held deliveries' leases run out and they
are claimed again; those that were in a request, or answered with the
outcome not yet written, are sent a second time with the same `webhook-id`
(at most `worker_concurrency` per process). Nothing is lost: the fan-out
commits its deliveries with the outbox ack.

Graceful stop (SIGTERM): claim nothing more, let requests finish for up to
`shutdown_grace_seconds`, write the outcomes, give back what never started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog
from sqlalchemy import select

from sendstream.core import secrets
from sendstream.core.db import Database, create_database
from sendstream.core.loops import FINAL_ERRORS, first_line, loop_connections, run_reconnecting
from sendstream.core.outbox import CHANNEL as EVENTS_CHANNEL
from sendstream.core.settings import Settings, get_settings
from sendstream.models.webhook_endpoint import WebhookEndpoint
from sendstream.webhooks import delivery_sql, metrics, retry, signing
from sendstream.webhooks.delivery_repository import delivery_repository
from sendstream.webhooks.delivery_sql import Claimed, Outcome
from sendstream.webhooks.dispatcher import DELIVERY_CHANNEL, dispatch_once
from sendstream.webhooks.sender import USER_AGENT, AttemptResult, WebhookSender

log = structlog.get_logger("sendstream.webhooks")
# Least time between two fan-out rounds that found less than a full batch.
DISPATCH_COALESCE_SECONDS = 0.05
# A claim loop that claimed something this recently polls every
# MIN_IDLE_SLEEP instead of asking the database when work is next due.
BUSY_SECONDS = 1.0

MIN_IDLE_SLEEP = 0.05
FLUSH_GATHER_SECONDS = 0.02
REDACTED = "[redacted]"
# Headers Sendstream sets itself; a custom header of the same name is overridden.
SPEC_HEADERS = frozenset(
    {
        "content-type",
        "user-agent",
        "accept-encoding",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)


@dataclass(frozen=True, slots=True)
class SigningMaterial:
    """An endpoint's decrypted signing keys and custom headers, cached per
    (endpoint, updated_at): any change to the endpoint bumps `updated_at`."""

    secret: bytes
    previous_secret: bytes | None
    previous_expires_at: datetime | None
    ed25519: Any | None
    scheme: str
    headers: dict[str, str] = field(default_factory=dict)

    def signature(self, msg_id: str, timestamp: int, body: bytes) -> str:
        hmac_keys: list[bytes] = []
        ed_keys: list[Any] = []
        if "v1" in self.scheme.split(","):
            hmac_keys.append(self.secret)
            if self.previous_secret is not None and (
                self.previous_expires_at is None or self.previous_expires_at > datetime.now(UTC)
            ):
                hmac_keys.append(self.previous_secret)
        if "v1a" in self.scheme.split(",") and self.ed25519 is not None:
            ed_keys.append(self.ed25519)
        return signing.sign(hmac_keys, msg_id, timestamp, body, ed_keys)


def _context(column: str, endpoint_id: uuid.UUID) -> str:
    return f"webhook_endpoints.{column}:{endpoint_id}"


def signing_material(endpoint: WebhookEndpoint, settings: Settings) -> SigningMaterial:
    def plain(column: str, token: bytes | None) -> bytes | None:
        if token is None:
            return None
        return secrets.decrypt(token, _context(column, endpoint.id), settings=settings)

    secret = plain("secret_encrypted", endpoint.secret_encrypted)
    assert secret is not None  # noqa: S101  the column is NOT NULL
    ed_raw = plain("ed25519_private_encrypted", endpoint.ed25519_private_encrypted)
    headers_raw = plain("headers_encrypted", endpoint.headers_encrypted)
    return SigningMaterial(
        secret=secret,
        previous_secret=plain("previous_secret_encrypted", endpoint.previous_secret_encrypted),
        previous_expires_at=endpoint.previous_secret_expires_at,
        ed25519=signing.load_ed25519_key(ed_raw) if ed_raw else None,
        scheme=endpoint.signature_scheme,
        headers={str(k): str(v) for k, v in json.loads(headers_raw).items()} if headers_raw else {},
    )


@dataclass(slots=True)
class _Held:
    delivery: Claimed
    task: asyncio.Task[None] | None = None
    started: bool = False
    done: bool = False


class WebhookWorker:
    def __init__(
        self,
        *,
        settings: Settings | None = None,
        database: Database | None = None,
        concurrency: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        webhooks = self.settings.webhooks
        self.concurrency = max(1, concurrency or webhooks.worker_concurrency)
        self.batch_size = max(1, min(batch_size or webhooks.worker_batch_size, self.concurrency))
        self.lease_seconds = webhooks.lease_seconds
        self._own_database = database is None
        self._database = database
        self._sender: WebhookSender | None = None
        self._material: dict[tuple[uuid.UUID, datetime], SigningMaterial] = {}
        self._held: dict[int, _Held] = {}
        self._outcomes: list[Outcome] = []
        # The autocommit connection successful outcomes are written on, while
        # the loop's connections are up (see `_flush`).
        self._write_conn: psycopg.AsyncConnection[Any] | None = None
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._dispatch_wake = asyncio.Event()
        # Workspaces whose events committed since the last fan-out round (the
        # outbox NOTIFY payload); None when a payload was not a workspace id.
        self._notified: set[uuid.UUID] | None = set()
        self._room = asyncio.Event()
        self._flush_wanted = asyncio.Event()
        self.stopped = asyncio.Event()

    @property
    def database(self) -> Database:
        if self._database is None:
            self._database = create_database(self.settings)
        return self._database

    @property
    def sender(self) -> WebhookSender:
        if self._sender is None:
            self._sender = WebhookSender(self.settings)
        return self._sender

    @property
    def held(self) -> int:
        return len(self._held)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._dispatch_wake.set()
        self._room.set()

    # --- lifecycle

    async def run(self) -> None:
        """Run until `stop()`; survives database outages."""
        log.info("webhooks.started", concurrency=self.concurrency, batch_size=self.batch_size)
        try:
            await run_reconnecting(
                self._stop,
                lambda: loop_connections(
                    self.database, self.settings, "webhooks", ("listen", "claim", "write")
                ),
                lambda conns: self._serve(*conns),
                log=log,
                loop="webhooks",
                context=lambda: {"held": len(self._held)},
            )
            await self._finish()
        finally:
            if self._sender is not None:
                with contextlib.suppress(Exception):
                    await self._sender.aclose()
            if self._own_database and self._database is not None:
                await self._database.dispose()
            log.info("webhooks.stopped")
            self.stopped.set()

    async def _serve(
        self,
        listen: psycopg.AsyncConnection[Any],
        claim: psycopg.AsyncConnection[Any],
        write: psycopg.AsyncConnection[Any],
    ) -> None:
        self._write_conn = write
        await listen.execute(f"LISTEN {EVENTS_CHANNEL}")
        await listen.execute(f"LISTEN {DELIVERY_CHANNEL}")
        await self._flush()
        background = [
            asyncio.create_task(self._listen_loop(listen), name="webhooks-listen"),
            asyncio.create_task(self._flush_loop(), name="webhooks-flush"),
            asyncio.create_task(self._heartbeat_loop(claim), name="webhooks-heartbeat"),
            asyncio.create_task(self._backlog_loop(claim), name="webhooks-backlog"),
        ]
        workers = [
            asyncio.create_task(self._dispatch_loop(), name="webhooks-dispatch"),
            asyncio.create_task(self._claim_loop(claim), name="webhooks-claim"),
        ]
        try:
            done, _ = await asyncio.wait(
                [*workers, *background], return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                task.result()
            if not self._stop.is_set():
                raise psycopg.OperationalError("a webhook loop ended; reconnecting")
            await self._drain()
            await self._flush()
        finally:
            self._write_conn = None
            for task in [*workers, *background]:
                task.cancel()
            await asyncio.gather(*workers, *background, return_exceptions=True)

    async def _drain(self) -> None:
        running = [h.task for h in self._held.values() if h.task is not None and not h.done]
        if running:
            log.info("webhooks.draining", deliveries=len(running))
            await asyncio.wait(running, timeout=self.settings.webhooks.shutdown_grace_seconds)
        for held in self._held.values():
            if held.task is not None and not held.task.done():
                held.task.cancel()
        remaining = [h.task for h in self._held.values() if h.task is not None]
        if remaining:
            await asyncio.wait(remaining)

    async def _finish(self) -> None:
        await self._drain()
        try:
            async with asyncio.timeout(10):
                await self._flush()
                pending = [
                    (h.delivery.id, h.delivery.attempts) for h in self._held.values() if not h.done
                ]
                if pending:
                    async with await psycopg.AsyncConnection.connect(
                        self.database.libpq_url, autocommit=True
                    ) as conn:
                        await conn.execute(
                            delivery_sql.RELEASE,
                            {"ids": [p[0] for p in pending], "attempts": [p[1] for p in pending]},
                        )
                    log.info("webhooks.released", deliveries=len(pending))
        except FINAL_ERRORS as exc:
            log.warning(
                "webhooks.outcomes_unwritten", outcomes=len(self._outcomes), error=first_line(exc)
            )

    # --- loops

    async def _listen_loop(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async for note in conn.notifies():
            if note.channel == DELIVERY_CHANNEL:
                self._wake.set()
                continue
            if self._notified is not None:
                try:
                    self._notified.add(uuid.UUID(note.payload))
                except ValueError:
                    self._notified = None
            self._dispatch_wake.set()

    async def _dispatch_loop(self) -> None:
        """Fan-out rounds: at once when a workspace with an enabled endpoint
        wrote events, at least every `poll_interval` otherwise. A round for
        events no endpoint wants is a few queries for nothing, and a bulk
        send of a workspace without endpoints commits events dozens of times
        a second: those wait for the next full round, which moves the
        consumer past them unread. An endpoint enabled since the last round
        is seen by the next one (at most `poll_interval` later)."""
        limit = self.settings.webhooks.dispatch_batch_size
        interval = self.settings.webhooks.poll_interval
        interested: frozenset[uuid.UUID] = frozenset()
        last_round = -interval
        while not self._stop.is_set():
            self._dispatch_wake.clear()
            notified, self._notified = self._notified, set()
            if (
                notified
                and notified.isdisjoint(interested)
                and time.monotonic() - last_round < interval
            ):
                read = 0
            else:
                last_round = time.monotonic()
                async with self.database.session() as session:
                    read, written = await dispatch_once(session, limit=limit)
                    interested = await delivery_repository.enabled_workspaces(session)
                if written:
                    metrics.WEBHOOK_FANOUT.inc(written)
                    self._wake.set()
            if read >= limit:
                continue
            # Every commit that writes events wakes this loop; during a bulk
            # send that is dozens a second per process, each a round of
            # queries. Waiting a little lets one round take them together.
            await asyncio.sleep(DISPATCH_COALESCE_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._dispatch_wake.wait(),
                    max(last_round + interval - time.monotonic(), DISPATCH_COALESCE_SECONDS),
                )

    async def _claim_loop(self, conn: psycopg.AsyncConnection[Any]) -> None:
        threshold = max(1, self.batch_size // 2)
        expired_due = last_claimed = 0.0
        # Per endpoint, the claim position (next_attempt_at, id) of the last
        # delivery claimed there: the next claim walks the due index from it
        # (see delivery_sql.CLAIM).
        positions: dict[uuid.UUID, tuple[datetime, int]] = {}
        while not self._stop.is_set():
            free = self.concurrency - len(self._held)
            if free < threshold:
                self._room.clear()
                await self._room.wait()
                continue
            limit = min(self.batch_size, free)
            self._wake.clear()
            # Leases of dead senders are looked for every lease/3 s, not on
            # every claim (see delivery_sql.CLAIM); the same claim walks every
            # endpoint's due work from its start, for what landed behind a
            # position.
            with_expired = time.monotonic() >= expired_due
            if with_expired:
                expired_due = time.monotonic() + self.lease_seconds / 3
                positions.clear()
            cur = await conn.execute(
                delivery_sql.CLAIM,
                {
                    "limit": limit,
                    "lease": self.lease_seconds,
                    "with_expired": with_expired,
                    "floor_endpoints": list(positions),
                    "floor_at": [p[0] for p in positions.values()],
                    "floor_id": [p[1] for p in positions.values()],
                },
            )
            rows = await cur.fetchall()
            if rows:
                last_claimed = time.monotonic()
                batch = [delivery_sql.claimed(r) for r in rows]
                for d in batch:
                    if d.positions:
                        key = (d.next_attempt_at, d.id)
                        if d.endpoint_id not in positions or positions[d.endpoint_id] < key:
                            positions[d.endpoint_id] = key
                await self._start(batch)
            if len(rows) == limit or self._stop.is_set():
                continue
            if time.monotonic() - last_claimed < BUSY_SECONDS:
                # Busy (endpoints' concurrency cut the batch short, or all
                # are at their limit): try again as requests finish, without
                # asking when the next work is due (that scan walks the
                # entries of every delivery claimed since the last vacuum).
                timeout = MIN_IDLE_SLEEP
            else:
                # Idle: the next claim walks from the start (cheap now), so
                # what landed behind a position waits no longer than this.
                positions.clear()
                due = (await (await conn.execute(delivery_sql.NEXT_DUE)).fetchone() or (None,))[0]
                timeout = self.settings.webhooks.poll_interval
                if due is not None:
                    timeout = min(timeout, max(float(due), MIN_IDLE_SLEEP))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted.clear()
            if len(self._outcomes) < self.batch_size and not self._stop.is_set():
                # One statement and one commit for many outcomes cost the
                # database far less than one each, for a few ms of latency.
                await asyncio.sleep(FLUSH_GATHER_SECONDS)
            await self._flush()

    async def _heartbeat_loop(self, conn: psycopg.AsyncConnection[Any]) -> None:
        interval = max(self.lease_seconds / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            ids = list(self._held)
            if ids:
                await conn.execute(
                    delivery_sql.HEARTBEAT, {"ids": ids, "lease": self.lease_seconds}
                )

    async def _backlog_loop(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            cur = await conn.execute(
                "SELECT endpoint_id, count(*), extract(epoch FROM now() - min(created_at)) "
                "FROM webhook_deliveries WHERE status IN ('pending', 'delivering') "
                "GROUP BY endpoint_id"
            )
            metrics.WEBHOOK_BACKLOG.clear()
            metrics.WEBHOOK_BACKLOG_OLDEST_AGE_SECONDS.clear()
            for endpoint_id, count, age in await cur.fetchall():
                metrics.WEBHOOK_BACKLOG.labels(str(endpoint_id)).set(count)
                metrics.WEBHOOK_BACKLOG_OLDEST_AGE_SECONDS.labels(str(endpoint_id)).set(
                    float(age or 0)
                )
            await asyncio.sleep(metrics.BACKLOG_REFRESH_SECONDS)

    async def _flush(self) -> None:
        """Write every gathered outcome; only then are their deliveries let go."""
        while self._outcomes:
            outcomes = self._outcomes
            self._outcomes = []
            try:
                if self._write_conn is not None and delivery_sql.all_succeeded(outcomes):
                    # The common case, in one statement on our own connection.
                    await delivery_sql.write_succeeded(self._write_conn, outcomes)
                else:
                    # Failures may disable endpoints and emit events: a session.
                    async with self.database.session() as session:
                        await delivery_sql.write_outcomes(
                            session,
                            outcomes,
                            disable_after_seconds=self.settings.webhooks.disable_after_seconds,
                        )
            except BaseException:
                self._outcomes[:0] = outcomes
                raise
            for outcome in outcomes:
                metrics.WEBHOOK_ATTEMPTS.labels(
                    str(outcome.endpoint_id),
                    "retried" if outcome.status == "pending" else outcome.status,
                ).inc()
                metrics.WEBHOOK_LATENCY_SECONDS.labels(str(outcome.endpoint_id)).observe(
                    outcome.latency_ms / 1000
                )
                self._held.pop(outcome.delivery_id, None)
            self._room.set()
            # Finished deliveries free their endpoints' concurrency: claim
            # again now rather than at the next poll.
            self._wake.set()

    # --- one batch, one delivery

    async def _load_material(self, batch: list[Claimed]) -> None:
        missing = {
            d.endpoint_id
            for d in batch
            if (d.endpoint_id, d.endpoint_updated_at) not in self._material
        }
        if not missing:
            return
        async with self.database.session() as session:
            rows = (
                await session.scalars(
                    select(WebhookEndpoint).where(WebhookEndpoint.id.in_(missing))
                )
            ).all()
        if len(self._material) > 10_000:
            self._material.clear()
        for row in rows:
            self._material[(row.id, row.updated_at)] = signing_material(row, self.settings)

    async def _start(self, batch: list[Claimed]) -> None:
        for d in batch:
            self._held[d.id] = _Held(d)
        try:
            await self._load_material(batch)
        except BaseException:
            # Not started: let go (no heartbeats), their leases run out.
            for d in batch:
                self._held.pop(d.id, None)
            raise
        for d in batch:
            held = self._held[d.id]
            held.task = asyncio.create_task(self._deliver(held))

    async def _deliver(self, held: _Held) -> None:
        d = held.delivery
        try:
            material = self._material.get((d.endpoint_id, d.endpoint_updated_at))
            if material is None:
                # Changed again since the claim: the newest row is as good.
                material = next(
                    (m for (eid, _), m in self._material.items() if eid == d.endpoint_id), None
                )
            held.started = True
            if material is None:
                headers: dict[str, str] = {}
                result = AttemptResult(None, None, 0.0, "internal: no signing keys loaded")
            else:
                headers = self._headers(d, material)
                result = await self.sender.send(
                    d.url, headers, d.payload, allow_private=d.allow_private
                )
                custom = {k.lower() for k in material.headers} - SPEC_HEADERS
                headers = {k: (REDACTED if k in custom else v) for k, v in headers.items()}
            now = datetime.now(UTC)
            decision = retry.decide(
                result,
                attempts=d.attempts,
                created_at=d.created_at,
                now=now,
                settings=self.settings.webhooks,
            )
        except asyncio.CancelledError:
            if held.started:
                held.done = True
            raise
        except Exception as exc:  # a bug must not strand the delivery or stop the loop
            log.exception("webhooks.deliver_crashed", delivery_id=d.id)
            now = datetime.now(UTC)
            headers = {}
            result = AttemptResult(None, None, 0.0, f"internal: {first_line(exc)}")
            decision = retry.decide(
                result,
                attempts=d.attempts,
                created_at=d.created_at,
                now=now,
                settings=self.settings.webhooks,
            )
        held.done = True
        self._outcomes.append(
            Outcome(
                delivery_id=d.id,
                workspace_id=d.workspace_id,
                endpoint_id=d.endpoint_id,
                attempt=d.attempts,
                status=decision.status,
                next_attempt_at=decision.next_attempt_at,
                status_code=result.status_code,
                error=result.error or decision.reason,
                attempted_at=now,
                request_headers=headers,
                request_body=None,  # the delivery's payload
                response_body=result.response_body,
                latency_ms=result.latency_ms,
                disable_reason=decision.disable_reason,
            )
        )
        self._flush_wanted.set()

    def _headers(self, d: Claimed, material: SigningMaterial) -> dict[str, str]:
        timestamp = int(time.time())
        headers = {k.lower(): v for k, v in material.headers.items()}
        headers.update(
            {
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                "accept-encoding": "identity",
                "webhook-id": d.webhook_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": material.signature(d.webhook_id, timestamp, d.payload),
            }
        )
        return headers


async def run_webhooks(
    *,
    settings: Settings | None = None,
    database: Database | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run one webhook loop in the current event loop until `stop` is set
    (or the task is cancelled): `sendstream up` and `sendstream worker`."""
    worker = WebhookWorker(settings=settings, database=database)
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
