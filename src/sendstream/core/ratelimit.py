"""Per API key rate limits: a token bucket of `api.rate_limit_burst` tokens
refilled at `api.rate_limit_per_second`; each authenticated request takes one.

In-process by default. With `redis_url` set, the bucket lives in Redis and is
refilled and taken by one Lua script (atomic, on Redis's clock), so every server
process draws from the same budget.

`enforce()` is called by the auth dependency once the key is known. It leaves
the IETF draft `RateLimit-*` headers in the request state, where
`core.http.RequestContextMiddleware` adds them to the response (429s included),
and raises `RateLimited` with `Retry-After` when the bucket is empty.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
import structlog
from fastapi import Request
from redis.exceptions import RedisError

from sendstream.core.errors import RateLimited
from sendstream.core.settings import get_settings

log = structlog.get_logger("sendstream.ratelimit")

# Request-state key `RequestContextMiddleware` reads the headers from.
STATE_KEY = "rate_limit_headers"

Clock = Callable[[], float]


@dataclass(frozen=True)
class RateLimitDecision:
    allowed: bool
    limit: int
    # Whole tokens left after this request.
    remaining: int
    # Seconds until the bucket is full again.
    reset: int
    # Seconds until one token is available; 0 when allowed.
    retry_after: int
    # Seconds a full bucket takes to refill from empty (the policy's window).
    window: int

    def headers(self) -> list[tuple[str, str]]:
        return [
            ("RateLimit-Limit", str(self.limit)),
            ("RateLimit-Remaining", str(self.remaining)),
            ("RateLimit-Reset", str(self.reset)),
            ("RateLimit-Policy", f"{self.limit};w={self.window}"),
        ]


def decide(tokens: float, allowed: bool, rate: float, burst: int) -> RateLimitDecision:
    """The client-facing numbers for a bucket holding `tokens` after the take."""
    tokens = max(0.0, min(float(burst), tokens))
    return RateLimitDecision(
        allowed=allowed,
        limit=burst,
        remaining=math.floor(tokens),
        reset=math.ceil((burst - tokens) / rate),
        # Never 0 on a refusal: "retry after 0 s" invites a tight retry loop.
        retry_after=0 if allowed else max(1, math.ceil((1.0 - tokens) / rate)),
        window=max(1, math.ceil(burst / rate)),
    )


class RateLimiter(Protocol):
    rate: float
    burst: int

    async def take(self, key: str) -> RateLimitDecision: ...


class InMemoryRateLimiter:
    """Buckets in a dict, refilled lazily from a monotonic clock.

    At most `max_buckets` are kept, least recently used evicted first: an
    evicted bucket comes back full, which is what an idle key's bucket would
    have refilled to anyway, so memory stays bounded however many keys exist."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Clock = time.monotonic,
        max_buckets: int = 100_000,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_buckets = max_buckets
        # key -> (tokens, time of last refill)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take_now(self, key: str) -> RateLimitDecision:
        now = self.clock()
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)
        return decide(tokens, allowed, self.rate, self.burst)

    async def take(self, key: str) -> RateLimitDecision:
        return self.take_now(key)

    def __len__(self) -> int:
        return len(self._buckets)


# Refill and take in one step on Redis's own clock, so processes with skewed
# clocks still agree. Tokens go back as a string: Lua numbers returned to
# Redis are truncated to integers. The key expires once it would be full again,
# because a missing key already means "full".
_TAKE_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {allowed, tostring(tokens)}
"""


class RedisRateLimiter:
    """Buckets in Redis shared by every process pointed at the same server.

    When Redis cannot be reached the limiter neither fails open (no limit at
    all while Redis is down: exactly when an abusive client would go
    unnoticed) nor closed (a Redis outage would become an API outage). It falls
    back to an in-process bucket, so each process still enforces the budget
    and the worst case is one budget per process. Redis is retried after
    `retry_interval` seconds; until then requests don't pay its timeout."""

    def __init__(
        self,
        client: aioredis.Redis,
        rate: float,
        burst: int,
        *,
        prefix: str = "sendstream:ratelimit:",
        retry_interval: float = 5.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.client = client
        self.rate = rate
        self.burst = burst
        self.prefix = prefix
        self.retry_interval = retry_interval
        self.clock = clock
        self.fallback = InMemoryRateLimiter(rate, burst, clock=clock)
        self._script = client.register_script(_TAKE_SCRIPT)
        self._down_until: float | None = None

    @classmethod
    def from_url(cls, url: str, rate: float, burst: int) -> RedisRateLimiter:
        # Short timeouts: a slow Redis must not become a slow API.
        client = aioredis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, decode_responses=True
        )
        return cls(client, rate, burst)

    async def take(self, key: str) -> RateLimitDecision:
        if self._down_until is not None and self.clock() < self._down_until:
            return self.fallback.take_now(key)
        try:
            result = await self._script(keys=[self.prefix + key], args=[self.rate, self.burst])
        except RedisError as exc:
            if self._down_until is None:
                log.warning(
                    "ratelimit.redis_unavailable",
                    error=str(exc)[:300],
                    fallback="in-process buckets",
                )
            self._down_until = self.clock() + self.retry_interval
            return self.fallback.take_now(key)
        if self._down_until is not None:
            log.info("ratelimit.redis_recovered")
            self._down_until = None
        allowed, tokens = result
        return decide(float(tokens), bool(int(allowed)), self.rate, self.burst)

    async def close(self) -> None:
        await self.client.aclose()


# The process-wide limiter, rebuilt when the settings it came from change.
_limiter: list[tuple[object, RateLimiter]] = []
_installed: list[RateLimiter] = []


def get_rate_limiter() -> RateLimiter:
    if _installed:
        return _installed[0]
    settings = get_settings()
    config = (settings.redis_url, settings.api.rate_limit_per_second, settings.api.rate_limit_burst)
    if _limiter and _limiter[0][0] == config:
        return _limiter[0][1]
    url, rate, burst = config
    limiter: RateLimiter = (
        RedisRateLimiter.from_url(url, rate, burst) if url else InMemoryRateLimiter(rate, burst)
    )
    _limiter[:] = [(config, limiter)]
    return limiter


def install_rate_limiter(limiter: RateLimiter | None) -> None:
    """Use `limiter` instead of the one the settings describe (tests); None
    goes back to the settings."""
    _installed[:] = [limiter] if limiter is not None else []


async def enforce(request: Request, *, bucket_key: str) -> None:
    """Take one token from `bucket_key`'s bucket or raise `RateLimited`."""
    limiter = get_rate_limiter()
    decision = await limiter.take(bucket_key)
    headers = decision.headers()
    setattr(request.state, STATE_KEY, headers)
    if not decision.allowed:
        raise RateLimited(
            f"Rate limit exceeded: {decision.limit} requests burst, refilled at "
            f"{limiter.rate:g}/s per API key. Retry after "
            f"{decision.retry_after} s.",
            headers={"Retry-After": str(decision.retry_after)},
        )
