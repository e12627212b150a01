"""Limiters for the sending path: token buckets (a steady rate that allows a
burst after a quiet spell) and concurrency limits, plus keyed families of
each (one per destination domain or workspace, made on first use and
forgotten when idle, so a million domains do not stay in memory).

- Fair: callers are served in the order they asked.
- No busy waiting: a bucket caller reserves its tokens at once and sleeps
  exactly until they exist; a concurrency waiter sleeps on a future that a
  release fills.
- Cancellation-safe: a caller cancelled while waiting gives back what it had
  reserved, so a timeout around `acquire` never leaks capacity.
- Per process and per event loop: they are not shared between workers.

The bucket takes a clock and a sleep function, so tests run it on virtual
time instead of asserting on wall-clock durations.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
K = TypeVar("K", bound=Hashable)


class TokenBucket:
    """`rate` tokens a second, holding at most `burst`. A caller that finds
    too few takes them anyway (the balance goes negative) and sleeps until
    the refill has covered its debt: the order of calls is the order of
    service, and the rate holds over any window."""

    __slots__ = ("_clock", "_sleep", "_stamp", "_tokens", "burst", "rate")

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, not {rate}")
        self.rate = float(rate)
        # Default burst: one second's worth (at least one token).
        self.burst = float(burst) if burst is not None else max(1.0, self.rate)
        if self.burst <= 0:
            raise ValueError(f"burst must be positive, not {burst}")
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._stamp = now

    def reserve(self, tokens: float = 1.0) -> float:
        """Take `tokens` now and return the seconds to wait before using them."""
        self._refill()
        self._tokens -= tokens
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def refund(self, tokens: float = 1.0) -> None:
        """Give back tokens reserved but not used."""
        self._refill()
        self._tokens = min(self.burst, self._tokens + tokens)

    def try_acquire(self, tokens: float = 1.0) -> bool:
        """Take the tokens if they are there now; never waits."""
        self._refill()
        if self._tokens < tokens:
            return False
        self._tokens -= tokens
        return True

    async def acquire(self, tokens: float = 1.0) -> None:
        wait = self.reserve(tokens)
        if wait <= 0:
            return
        try:
            await self._sleep(wait)
        except BaseException:
            self.refund(tokens)
            raise

    @property
    def full(self) -> bool:
        """True when the bucket is as good as a new one (it can be dropped)."""
        self._refill()
        return self._tokens >= self.burst


class ConcurrencyLimit:
    """At most `limit` holders at once; waiters are let in first come, first
    served (a release hands its place straight to the longest waiter)."""

    __slots__ = ("_held", "_waiters", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.limit = limit
        self._held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def held(self) -> int:
        return self._held

    @property
    def idle(self) -> bool:
        return self._held == 0 and not self._waiters

    async def acquire(self) -> None:
        if self._held < self.limit and not self._waiters:
            self._held += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # The place was handed to us just as we were cancelled: pass it on.
                self.release()
            else:
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                # The place goes to the waiter: `_held` stays as it is.
                waiter.set_result(None)
                return
        self._held -= 1

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()


class KeyedConcurrency(Generic[K]):
    """A `ConcurrencyLimit` per key, its size given by `limit_for(key)`; a key's
    limit exists only while someone holds or waits for it."""

    def __init__(self, limit_for: Callable[[K], int]) -> None:
        self._limit_for = limit_for
        self._limits: dict[K, ConcurrencyLimit] = {}

    def held(self, key: K) -> int:
        limit = self._limits.get(key)
        return limit.held if limit is not None else 0

    async def acquire(self, key: K) -> None:
        limit = self._limits.get(key)
        if limit is None:
            limit = self._limits[key] = ConcurrencyLimit(self._limit_for(key))
        try:
            await limit.acquire()
        except BaseException:
            if limit.idle and self._limits.get(key) is limit:
                del self._limits[key]
            raise

    def release(self, key: K) -> None:
        limit = self._limits[key]
        limit.release()
        if limit.idle:
            del self._limits[key]

    async def acquire_all(self, keys: Iterable[K]) -> None:
        """Acquire several keys. Callers must pass them in one global order
        (sorted) so two callers never wait on each other's half."""
        taken: list[K] = []
        try:
            for key in keys:
                await self.acquire(key)
                taken.append(key)
        except BaseException:
            for key in reversed(taken):
                self.release(key)
            raise

    def __len__(self) -> int:
        return len(self._limits)


class KeyedTokenBuckets(Generic[K]):
    """A `TokenBucket` per key with `(rate, burst)` from `params_for(key)`
    (None: that key is not limited). Full buckets are swept once there are
    more than `max_idle_keys`, since a fresh bucket is the same as a full one."""

    def __init__(
        self,
        params_for: Callable[[K], tuple[float, float | None] | None],
        *,
        max_idle_keys: int = 10_000,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._params_for = params_for
        self._buckets: dict[K, TokenBucket | None] = {}
        self._max_idle_keys = max_idle_keys
        self._sweep_at = max_idle_keys
        self._clock = clock
        self._sleep = sleep

    def _bucket(self, key: K) -> TokenBucket | None:
        try:
            return self._buckets[key]
        except KeyError:
            pass
        if len(self._buckets) >= self._sweep_at:
            self._sweep()
        params = self._params_for(key)
        bucket = (
            None
            if params is None
            else TokenBucket(params[0], params[1], clock=self._clock, sleep=self._sleep)
        )
        self._buckets[key] = bucket
        return bucket

    def _sweep(self) -> None:
        for key in [k for k, b in self._buckets.items() if b is None or b.full]:
            del self._buckets[key]
        # When most buckets are busy, sweep again only after the map has
        # doubled, so a sweep stays cheap per new key.
        self._sweep_at = max(self._max_idle_keys, 2 * len(self._buckets))

    async def acquire(self, key: K, tokens: float = 1.0) -> None:
        bucket = self._bucket(key)
        if bucket is not None:
            await bucket.acquire(tokens)

    def __len__(self) -> int:
        return len(self._buckets)
