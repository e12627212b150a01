"""What the long-running database loops of a worker process share (the job
runner, the delivery loop, the webhook loop): their own autocommit
connections, and a run that survives database outages.

- `loop_connections`: one connection per role (`listen`, `claim`, ...),
  named `sendstream-<loop>-<role>` in pg_stat_activity, with TCP keepalives
  so a server that vanished without closing the socket is noticed within
  ~20 s instead of at the next TCP timeout (minutes).
- `run_reconnecting`: serve on fresh connections until stopped. When the
  server or the network goes away (`DATABASE_ERRORS`) it logs
  `<loop>.database_unavailable`, waits (0.5 s doubling to 10 s) and
  reconnects, logging `<loop>.database_back`; a statement that failed for
  another reason (a bug, a lock timeout) is logged `<loop>.statement_failed`
  and the loop starts over on fresh connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import psycopg
from sqlalchemy import exc as sa_exc

from sendstream.core.db import Database
from sendstream.core.settings import Settings

# Longest pause between reconnection attempts while the database is away.
MAX_RECONNECT_BACKOFF = 10.0
# Errors that mean the server or the network is away: reconnect with backoff.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    OSError,
)
# What a last write on the way out may meet (it is then given up, logged).
FINAL_ERRORS: tuple[type[Exception], ...] = (*DATABASE_ERRORS, psycopg.Error, TimeoutError)

Connections = tuple[psycopg.AsyncConnection[Any], ...]


def first_line(exc: BaseException) -> str:
    """An exception as one short log-friendly line."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


@contextlib.asynccontextmanager
async def loop_connections(
    database: Database, settings: Settings, loop: str, roles: Sequence[str]
) -> AsyncIterator[Connections]:
    conns: list[psycopg.AsyncConnection[Any]] = []
    try:
        for role in roles:
            conns.append(
                await psycopg.AsyncConnection.connect(
                    database.libpq_url,
                    autocommit=True,
                    connect_timeout=max(1, int(settings.database.connect_timeout)),
                    application_name=f"sendstream-{loop}-{role}",
                    keepalives=1,
                    keepalives_idle=10,
                    keepalives_interval=5,
                    keepalives_count=2,
                )
            )
        yield tuple(conns)
    finally:
        for conn in conns:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)


async def run_reconnecting(
    stop: asyncio.Event,
    connect: Callable[[], AbstractAsyncContextManager[Connections]],
    serve: Callable[[Connections], Awaitable[None]],
    *,
    log: Any,
    loop: str,
    context: Callable[[], dict[str, Any]] = dict,
) -> None:
    """Call `serve` with fresh connections until `stop` is set (see above).
    `context` adds fields to the outage log lines (what the loop holds)."""
    backoff = 0.5
    outage_since: float | None = None
    while not stop.is_set():
        try:
            async with connect() as conns:
                if outage_since is not None:
                    down = round(time.monotonic() - outage_since, 1)
                    log.info(f"{loop}.database_back", down_seconds=down, **context())
                    outage_since = None
                backoff = 0.5
                await serve(conns)
        except* DATABASE_ERRORS as group:
            if outage_since is None:
                outage_since = time.monotonic()
            log.warning(
                f"{loop}.database_unavailable",
                error=first_line(group.exceptions[0]),
                retry_in=backoff,
                **context(),
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, MAX_RECONNECT_BACKOFF)
        except* (psycopg.Error, sa_exc.DBAPIError) as group:
            log.error(
                f"{loop}.statement_failed",
                error=first_line(group.exceptions[0]),
                retry_in=backoff,
                **context(),
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, MAX_RECONNECT_BACKOFF)
