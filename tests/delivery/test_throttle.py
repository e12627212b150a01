"""Token buckets and concurrency limits, on virtual time: the tests move the
clock themselves, so nothing depends on how fast the machine is."""

from __future__ import annotations

import asyncio
import heapq
import itertools

import pytest

from sendstream.delivery.throttle import (
    ConcurrencyLimit,
    KeyedConcurrency,
    KeyedTokenBuckets,
    TokenBucket,
)


class VirtualTime:
    """A clock and a sleep that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._seq), future))
        await future

    async def advance(self, seconds: float) -> None:
        target = self.now + seconds
        while self._sleepers and self._sleepers[0][0] <= target + 1e-9:
            wake, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, wake)
            if not future.done():
                future.set_result(None)
            await _settle()
        self.now = target
        await _settle()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


class TestTokenBucket:
    async def test_burst_is_free_then_the_rate_applies_in_order(self) -> None:
        time = VirtualTime()
        bucket = TokenBucket(10, 5, clock=time.clock, sleep=time.sleep)
        done: list[int] = []

        async def take(n: int) -> None:
            await bucket.acquire()
            done.append(n)

        tasks = [asyncio.ensure_future(take(n)) for n in range(20)]
        await _settle()
        assert done == [0, 1, 2, 3, 4]  # the burst
        await time.advance(1.0)
        assert done == list(range(15))  # ten more in one second, first come first served
        await time.advance(0.45)
        assert done == list(range(19))
        await time.advance(0.05)
        assert done == list(range(20))
        await asyncio.gather(*tasks)

    async def test_quiet_period_refills_up_to_the_burst_only(self) -> None:
        time = VirtualTime()
        bucket = TokenBucket(2, 3, clock=time.clock, sleep=time.sleep)
        for _ in range(3):
            assert bucket.try_acquire()
        assert not bucket.try_acquire()
        await time.advance(100.0)
        assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]

    async def test_cancelled_waiter_gives_its_tokens_back(self) -> None:
        time = VirtualTime()
        bucket = TokenBucket(1, 1, clock=time.clock, sleep=time.sleep)
        await bucket.acquire()
        waiter = asyncio.ensure_future(bucket.acquire())
        await _settle()
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        # Had the token stayed reserved, this one would wait two seconds.
        assert bucket.reserve() == pytest.approx(1.0)

    async def test_default_burst_is_one_seconds_worth(self) -> None:
        assert TokenBucket(50).burst == 50
        assert TokenBucket(0.5).burst == 1

    def test_rate_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="rate must be positive"):
            TokenBucket(0)

    async def test_full_bucket_can_be_forgotten(self) -> None:
        time = VirtualTime()
        bucket = TokenBucket(1, 2, clock=time.clock, sleep=time.sleep)
        assert bucket.full
        await bucket.acquire()
        assert not bucket.full
        await time.advance(1.0)
        assert bucket.full


class TestConcurrencyLimit:
    async def test_at_most_limit_holders_and_waiters_in_order(self) -> None:
        limit = ConcurrencyLimit(2)
        entered: list[int] = []
        gates = {n: asyncio.Event() for n in range(5)}

        async def hold(n: int) -> None:
            async with limit.hold():
                entered.append(n)
                await gates[n].wait()

        tasks = [asyncio.ensure_future(hold(n)) for n in range(5)]
        await _settle()
        assert entered == [0, 1]
        assert limit.held == 2
        gates[1].set()
        await _settle()
        assert entered == [0, 1, 2]
        gates[0].set()
        gates[2].set()
        await _settle()
        assert entered == [0, 1, 2, 3, 4]
        gates[3].set()
        gates[4].set()
        await asyncio.gather(*tasks)
        assert limit.idle

    async def test_cancelled_waiter_leaves_no_trace(self) -> None:
        limit = ConcurrencyLimit(1)
        await limit.acquire()
        waiter = asyncio.ensure_future(limit.acquire())
        await _settle()
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        limit.release()
        assert limit.idle

    async def test_place_handed_to_a_cancelled_waiter_passes_on(self) -> None:
        limit = ConcurrencyLimit(1)
        await limit.acquire()
        first = asyncio.ensure_future(limit.acquire())
        second = asyncio.ensure_future(limit.acquire())
        await _settle()
        limit.release()  # the place goes to `first` ...
        first.cancel()  # ... which is cancelled before it runs
        await asyncio.gather(first, return_exceptions=True)
        await asyncio.wait_for(second, 1)
        assert limit.held == 1


class TestKeyedConcurrency:
    async def test_keys_are_limited_separately_and_forgotten_when_idle(self) -> None:
        limits: KeyedConcurrency[str] = KeyedConcurrency(lambda key: 2 if key == "a" else 1)
        await limits.acquire("a")
        await limits.acquire("a")
        await limits.acquire("b")
        blocked = asyncio.ensure_future(limits.acquire("b"))
        await _settle()
        assert not blocked.done()
        assert (limits.held("a"), limits.held("b")) == (2, 1)
        limits.release("b")
        await asyncio.wait_for(blocked, 1)
        for key in ("a", "a", "b"):
            limits.release(key)
        assert len(limits) == 0

    async def test_acquire_all_gives_back_what_it_took_when_cancelled(self) -> None:
        limits: KeyedConcurrency[str] = KeyedConcurrency(lambda key: 1)
        await limits.acquire("b")
        both = asyncio.ensure_future(limits.acquire_all(["a", "b"]))
        await _settle()
        assert limits.held("a") == 1
        both.cancel()
        await asyncio.gather(both, return_exceptions=True)
        assert limits.held("a") == 0
        limits.release("b")
        assert len(limits) == 0


class TestKeyedTokenBuckets:
    async def test_unlimited_keys_never_wait(self) -> None:
        time = VirtualTime()
        buckets: KeyedTokenBuckets[str] = KeyedTokenBuckets(
            lambda key: (1.0, 1.0) if key == "slow" else None,
            clock=time.clock,
            sleep=time.sleep,
        )
        for _ in range(10):
            await buckets.acquire("fast")
        await buckets.acquire("slow")
        waiting = asyncio.ensure_future(buckets.acquire("slow"))
        await _settle()
        assert not waiting.done()
        await time.advance(1.0)
        assert waiting.done()

    async def test_full_buckets_are_swept(self) -> None:
        time = VirtualTime()
        buckets: KeyedTokenBuckets[int] = KeyedTokenBuckets(
            lambda key: (1.0, 1.0), max_idle_keys=10, clock=time.clock, sleep=time.sleep
        )
        for key in range(10):
            await buckets.acquire(key)
        await time.advance(5.0)  # every bucket refills
        await buckets.acquire(99)
        assert len(buckets) == 1
