"""The IMAP loop of a worker process: one task per enabled mailbox.

- The mailbox list is read every `bounces.imap_reload_seconds`: new
  mailboxes get a task, disabled or deleted ones lose theirs, and a changed
  one (its `updated_at` moved: the API saved it) is restarted with the new
  settings.
- Several worker processes: each mailbox is served by one of them at a
  time, the one holding the PostgreSQL advisory lock on the mailbox's id
  (on a connection of its own). Should two ever overlap, the claim in
  imap_messages still hands each message over once.
- A session: connect, authenticate, then sync (imap_sync.py); in `idle`
  mode wait in IDLE (re-issued every `bounces.imap_idle_seconds`, under the
  29 minutes RFC 2177 allows) and sync again when the folder reports new
  mail; in `poll` mode (or without IDLE on the server) sync every
  `poll_interval` seconds.
- Failures (connection dropped, timeout, refused login, database away) are
  recorded in `last_error`, logged, and retried after a backoff from 1 s
  doubling to `bounces.imap_max_backoff_seconds`; the loop never ends on
  its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime
from typing import Any

import psycopg
import structlog

from sendstream.bounces.imap_client import ImapClient, ImapError
from sendstream.bounces.imap_repository import imap_repository
from sendstream.bounces.imap_session import MailboxConfig, open_session
from sendstream.bounces.imap_sync import MailboxSync
from sendstream.core.db import Database, create_database
from sendstream.core.loops import first_line
from sendstream.core.secrets import SecretError
from sendstream.core.settings import Settings, get_settings

log = structlog.get_logger("sendstream.bounces.imap")

_LOCK_SQL = "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))"
_FIRST_BACKOFF = 1.0


def _lock_key(mailbox_id: uuid.UUID) -> str:
    return f"sendstream.imap_mailbox:{mailbox_id}"


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class MailboxLoop:
    """Serves one mailbox until `stop` is set (or the task is cancelled)."""

    def __init__(
        self, mailbox_id: uuid.UUID, *, database: Database, settings: Settings, stop: asyncio.Event
    ) -> None:
        self.mailbox_id = mailbox_id
        self.database = database
        self.settings = settings
        self.stop = stop
        # Sessions opened and syncs done (tests and logs).
        self.sessions = 0
        self.syncs = 0

    async def run(self) -> None:
        backoff = _FIRST_BACKOFF
        while not self.stop.is_set():
            try:
                async with self._lock() as held:
                    if not held:
                        await _sleep(self.stop, self.settings.bounces.imap_reload_seconds)
                        continue
                    await self._session()
                    backoff = _FIRST_BACKOFF
            except (ImapError, SecretError, OSError, psycopg.Error, TimeoutError) as exc:
                error = first_line(exc) if not isinstance(exc, ImapError) else str(exc)[:500]
                log.warning(
                    "imap.session_failed",
                    mailbox_id=str(self.mailbox_id),
                    error=error,
                    retry_in=backoff,
                )
                await self._record(error)
                await _sleep(self.stop, backoff)
                backoff = min(backoff * 2, self.settings.bounces.imap_max_backoff_seconds)
            except Exception as exc:  # a bug: keep the loop alive, say what happened
                log.exception("imap.loop_failed", mailbox_id=str(self.mailbox_id))
                await self._record(f"internal error: {first_line(exc)}")
                await _sleep(self.stop, backoff)
                backoff = min(backoff * 2, self.settings.bounces.imap_max_backoff_seconds)

    @contextlib.asynccontextmanager
    async def _lock(self) -> Any:
        conn = await psycopg.AsyncConnection.connect(
            self.database.libpq_url,
            autocommit=True,
            application_name="sendstream-imap-lock",
        )
        try:
            row = await (await conn.execute(_LOCK_SQL, (_lock_key(self.mailbox_id),))).fetchone()
            yield bool(row and row[0])
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)

    async def _record(self, error: str | None) -> None:
        try:
            async with self.database.session() as session:
                await imap_repository.record_check(session, self.mailbox_id, error)
        except Exception:  # the database may be what failed
            log.warning("imap.record_failed", mailbox_id=str(self.mailbox_id))

    async def _config(self) -> MailboxConfig | None:
        async with self.database.session() as session:
            row = await imap_repository.load(session, self.mailbox_id)
            return MailboxConfig.of(row) if row is not None and row.enabled else None

    async def _save_tokens(
        self, token: bytes, expires_at: datetime | None, refresh: bytes | None
    ) -> None:
        async with self.database.session() as session:
            await imap_repository.save_tokens(
                session,
                self.mailbox_id,
                access_token_encrypted=token,
                expires_at=expires_at,
                refresh_token_encrypted=refresh,
            )

    async def _session(self) -> None:
        config = await self._config()
        if config is None:
            await _sleep(self.stop, self.settings.bounces.imap_reload_seconds)
            return
        client: ImapClient = await open_session(config, self.settings, self._save_tokens)
        self.sessions += 1
        log.info("imap.connected", mailbox_id=str(config.id), host=config.host)
        try:
            sync = MailboxSync(client, config, self.database, self.settings)
            idle = config.mode == "idle" and "IDLE" in client.capabilities
            while not self.stop.is_set():
                result = await sync.run_once()
                self.syncs += 1
                if result.accepted or result.duplicates or result.oversized:
                    log.info(
                        "imap.synced",
                        mailbox_id=str(config.id),
                        accepted=result.accepted,
                        duplicates=result.duplicates,
                        oversized=result.oversized,
                    )
                if idle:
                    await client.idle(self.settings.bounces.imap_idle_seconds, self.stop)
                else:
                    await _sleep(self.stop, config.poll_interval)
        finally:
            if self.stop.is_set():
                await client.logout()
            else:
                await client.close()


class ImapRunner:
    """Keeps one `MailboxLoop` task per enabled mailbox (see above)."""

    def __init__(
        self, *, settings: Settings | None = None, database: Database | None = None
    ) -> None:
        self.settings = settings or get_settings()
        self._own_database = database is None
        self.database = database or create_database(self.settings)
        self.stop_event = asyncio.Event()
        self.loops: dict[
            uuid.UUID, tuple[datetime, MailboxLoop, asyncio.Task[None], asyncio.Event]
        ] = {}

    def stop(self) -> None:
        self.stop_event.set()

    async def run(self) -> None:
        log.info("imap.started")
        try:
            while not self.stop_event.is_set():
                try:
                    await self.reload()
                except Exception as exc:  # the database is away: try again later
                    log.warning("imap.reload_failed", error=first_line(exc))
                await _sleep(self.stop_event, self.settings.bounces.imap_reload_seconds)
        finally:
            await self._stop_all()
            if self._own_database:
                await self.database.dispose()

    async def reload(self) -> None:
        async with self.database.session() as session:
            wanted = await imap_repository.enabled(session)
        for mailbox_id, (updated_at, _, task, _stop) in list(self.loops.items()):
            if wanted.get(mailbox_id) != updated_at or task.done():
                await self._stop_one(mailbox_id)
        for mailbox_id, updated_at in wanted.items():
            if mailbox_id not in self.loops:
                stop = asyncio.Event()
                loop = MailboxLoop(
                    mailbox_id, database=self.database, settings=self.settings, stop=stop
                )
                task = asyncio.create_task(loop.run(), name=f"imap-{mailbox_id}")
                self.loops[mailbox_id] = (updated_at, loop, task, stop)

    async def _stop_one(self, mailbox_id: uuid.UUID) -> None:
        _, _, task, stop = self.loops.pop(mailbox_id)
        stop.set()
        try:
            await asyncio.wait_for(task, 10)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
        except Exception:  # noqa: S110  the loop logs its own failures
            pass

    async def _stop_all(self) -> None:
        for mailbox_id in list(self.loops):
            await self._stop_one(mailbox_id)


async def run_imap(*, database: Database | None = None, stop: asyncio.Event) -> None:
    """The worker's IMAP loop until `stop` is set (runner.py)."""
    runner = ImapRunner(database=database)

    async def watch() -> None:
        await stop.wait()
        runner.stop()

    watcher = asyncio.create_task(watch())
    try:
        await runner.run()
    finally:
        watcher.cancel()
