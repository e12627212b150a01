"""Connections to one relay, kept open and reused across messages.

- At most `max_connections` open (or opening) at once; callers beyond that
  wait their turn (first come, first served) for a connection to come back.
- The most recently used idle connection is handed out first, so under
  light load the others go quiet and are closed after `idle_timeout`.
- A connection that broke, was left out of step, or has carried
  `max_messages` transactions is closed instead of going back; a fresh one
  is opened on demand. No per-message connection, no health-check round
  trip: a pooled connection the relay dropped while idle shows as a
  `RelayFailure(stale=True)` on first use and the transport retries once on
  a fresh connection.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

from sendstream.delivery.smtp_wire import SmtpConnection

Opener = Callable[[], Awaitable[SmtpConnection]]


class ConnectionPool:
    def __init__(
        self,
        opener: Opener,
        *,
        max_connections: int,
        idle_timeout: float,
        max_messages: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._opener = opener
        self.max_connections = max_connections
        self._idle_timeout = idle_timeout
        self._max_messages = max_messages
        self._clock = clock
        # Oldest-used on the left; connections are taken from the right.
        self._idle: deque[SmtpConnection] = deque()
        # Connections open, being opened, or promised to a waiter.
        self._slots = 0
        # Each waiter gets a connection, or None: "a slot is yours, open one".
        self._waiters: deque[asyncio.Future[SmtpConnection | None]] = deque()
        self._reaper: asyncio.TimerHandle | None = None
        self._closed = False
        # Connections opened over the pool's life (for tests and metrics).
        self.opened = 0

    @property
    def open_connections(self) -> int:
        return self._slots

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    async def acquire(self, *, fresh: bool = False) -> SmtpConnection:
        """A connection for one transaction; `fresh` skips idle ones (a retry
        after a stale one). Raises what the opener raises (`RelayFailure`)."""
        if self._closed:
            raise RuntimeError("the connection pool is closed")
        while self._idle and not fresh:
            conn = self._idle.pop()
            if conn.usable:
                conn.reused = True
                return conn
            conn.close(quit=False)
            self._slots -= 1
        if fresh and self._idle and self._slots >= self.max_connections:
            # Make room by retiring the oldest idle connection.
            self._idle.popleft().close()
            self._slots -= 1
        if self._slots < self.max_connections:
            self._slots += 1
            return await self._open()
        waiter: asyncio.Future[SmtpConnection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            handed_to_us = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # Handed a connection or slot just as we were cancelled: pass it on.
                handed = waiter.result()
                if handed is None:
                    self._free_slot()
                else:
                    self.release(handed)
            else:
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
            raise
        if handed_to_us is not None:
            if not fresh:
                handed_to_us.reused = True
                return handed_to_us
            handed_to_us.close()  # its slot becomes ours
        return await self._open()

    async def _open(self) -> SmtpConnection:
        """Open a connection in a slot already counted; the slot is given back
        when opening fails."""
        try:
            conn = await self._opener()
        except BaseException:
            self._free_slot()
            raise
        self.opened += 1
        conn.reused = False
        return conn

    def release(self, conn: SmtpConnection) -> None:
        """Give a connection back after a transaction (or instead of one)."""
        now = self._clock()
        conn.last_used = now
        if self._closed or not conn.usable or conn.transactions >= self._max_messages:
            conn.close()
            self._free_slot()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)
        if self._reaper is None:
            self._schedule_reaper(self._idle_timeout)

    def _free_slot(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the waiter
                return
        self._slots -= 1

    def _schedule_reaper(self, delay: float) -> None:
        self._reaper = asyncio.get_running_loop().call_later(max(delay, 0.05), self._reap)

    def _reap(self) -> None:
        self._reaper = None
        deadline = self._clock() - self._idle_timeout
        while self._idle and (self._idle[0].last_used <= deadline or not self._idle[0].usable):
            self._idle.popleft().close()
            self._slots -= 1
        if self._idle and not self._closed:
            self._schedule_reaper(self._idle[0].last_used - deadline)

    async def aclose(self) -> None:
        """Close idle connections (QUIT, not waited for); connections in use
        are closed when they come back."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        while self._idle:
            self._idle.popleft().close()
            self._slots -= 1
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(RuntimeError("the connection pool was closed"))
