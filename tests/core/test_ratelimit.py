"""Token-bucket rate limits: the in-process bucket on a driven clock, the
Redis bucket shared by two limiters (two processes), and the HTTP contract
(RateLimit-* headers, 429 + Retry-After) through a real authenticated route."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from structlog.testing import capture_logs

from sendstream.core.ratelimit import (
    InMemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    decide,
    get_rate_limiter,
    install_rate_limiter,
)
from sendstream.core.settings import Settings, override_settings
from tests.fixtures.actors import MakeActor
from tests.fixtures.databases import unavailable

REDIS_URL = "redis://127.0.0.1:6379/0"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class TestInProcessBucket:
    async def test_full_bucket_allows_the_burst_then_refuses(self, clock: FakeClock) -> None:
        limiter = InMemoryRateLimiter(rate=1.0, burst=3, clock=clock)
        decisions = [await limiter.take("k") for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert [d.remaining for d in decisions] == [2, 1, 0, 0]

    async def test_bucket_refills_at_the_configured_rate(self, clock: FakeClock) -> None:
        limiter = InMemoryRateLimiter(rate=2.0, burst=2, clock=clock)
        for _ in range(2):
            await limiter.take("k")
        assert not (await limiter.take("k")).allowed
        clock.advance(0.5)  # one token at 2/s
        assert (await limiter.take("k")).allowed
        assert not (await limiter.take("k")).allowed

    async def test_refill_never_exceeds_the_burst(self, clock: FakeClock) -> None:
        limiter = InMemoryRateLimiter(rate=10.0, burst=2, clock=clock)
        await limiter.take("k")
        clock.advance(3600)
        decisions = [await limiter.take("k") for _ in range(3)]
        assert [d.allowed for d in decisions] == [True, True, False]

    async def test_each_key_has_its_own_bucket(self, clock: FakeClock) -> None:
        limiter = InMemoryRateLimiter(rate=1.0, burst=1, clock=clock)
        assert (await limiter.take("a")).allowed
        assert not (await limiter.take("a")).allowed
        assert (await limiter.take("b")).allowed

    async def test_refusal_says_when_a_token_returns(self, clock: FakeClock) -> None:
        limiter = InMemoryRateLimiter(rate=0.25, burst=1, clock=clock)
        await limiter.take("k")
        refused = await limiter.take("k")
        assert not refused.allowed
        assert refused.retry_after == 4
        clock.advance(3)
        assert (await limiter.take("k")).retry_after == 1

    async def test_memory_stays_bounded_by_evicting_the_least_recently_used(
        self, clock: FakeClock
    ) -> None:
        limiter = InMemoryRateLimiter(rate=1.0, burst=1, clock=clock, max_buckets=2)
        await limiter.take("old")
        await limiter.take("recent")
        await limiter.take("old")  # refused, but touches "old"
        await limiter.take("new")
        assert len(limiter) == 2
        # "old" was kept (still empty); "recent" was evicted and comes back full.
        assert not (await limiter.take("old")).allowed
        assert (await limiter.take("recent")).allowed


class TestDecisionHeaders:
    def test_headers_follow_the_ietf_draft(self) -> None:
        decision = decide(tokens=40.5, allowed=True, rate=50.0, burst=100)
        assert dict(decision.headers()) == {
            "RateLimit-Limit": "100",
            "RateLimit-Remaining": "40",
            "RateLimit-Reset": "2",  # 59.5 tokens at 50/s
            "RateLimit-Policy": "100;w=2",
        }

    def test_refusal_never_says_retry_after_zero(self) -> None:
        decision = decide(tokens=0.999, allowed=False, rate=1000.0, burst=10)
        assert decision.retry_after == 1


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True, socket_timeout=2)
    try:
        await client.ping()
    except RedisError as exc:
        await client.aclose()
        unavailable("Redis", exc)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_prefix(redis_client: aioredis.Redis) -> AsyncIterator[str]:
    prefix = f"sendstream-test:{uuid.uuid4().hex}:"
    yield prefix
    keys = [k async for k in redis_client.scan_iter(match=prefix + "*")]
    if keys:
        await redis_client.delete(*keys)


class TestRedisBucket:
    async def test_two_limiters_share_one_budget(
        self, redis_client: aioredis.Redis, redis_prefix: str
    ) -> None:
        # Two limiter objects with their own connections stand for two server
        # processes; a slow refill keeps the test free of timing.
        other_client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        try:
            first = RedisRateLimiter(redis_client, rate=0.001, burst=3, prefix=redis_prefix)
            second = RedisRateLimiter(other_client, rate=0.001, burst=3, prefix=redis_prefix)
            assert (await first.take("key")).allowed
            assert (await second.take("key")).allowed
            assert (await first.take("key")).allowed
            refused = await second.take("key")
            assert not refused.allowed
            assert refused.remaining == 0
            assert not (await first.take("key")).allowed
            assert (await second.take("another key")).allowed
        finally:
            await other_client.aclose()

    async def test_bucket_key_expires_once_it_would_be_full(
        self, redis_client: aioredis.Redis, redis_prefix: str
    ) -> None:
        limiter = RedisRateLimiter(redis_client, rate=1.0, burst=10, prefix=redis_prefix)
        await limiter.take("key")
        ttl_ms = await redis_client.pttl(redis_prefix + "key")
        # One token to refill at 1/s, plus a second of slack.
        assert 0 < ttl_ms <= 2000

    async def test_unreachable_redis_falls_back_to_an_in_process_bucket(
        self, clock: FakeClock
    ) -> None:
        dead = aioredis.Redis.from_url(
            "redis://127.0.0.1:1/0", socket_connect_timeout=0.5, socket_timeout=0.5
        )
        try:
            limiter = RedisRateLimiter(dead, rate=1.0, burst=2, clock=clock)
            with capture_logs() as logs:
                decisions = [await limiter.take("key") for _ in range(3)]
            assert [d.allowed for d in decisions] == [True, True, False]
            warnings = [e for e in logs if e["event"] == "ratelimit.redis_unavailable"]
            assert len(warnings) == 1
            assert warnings[0]["log_level"] == "warning"
        finally:
            await dead.aclose()


class TestLimiterSelection:
    @pytest.fixture
    def restore_settings(self, settings: Settings) -> Iterator[None]:
        yield
        override_settings(settings)

    @pytest.mark.usefixtures("restore_settings")
    def test_redis_url_selects_the_shared_limiter(self, settings: Settings) -> None:
        override_settings(settings.model_copy(update={"redis_url": REDIS_URL}))
        assert isinstance(get_rate_limiter(), RedisRateLimiter)

    @pytest.mark.usefixtures("restore_settings")
    def test_without_redis_url_the_limiter_is_in_process(self, settings: Settings) -> None:
        api = settings.api.model_copy(update={"rate_limit_per_second": 7.0})
        override_settings(settings.model_copy(update={"api": api}))
        limiter = get_rate_limiter()
        assert isinstance(limiter, InMemoryRateLimiter)
        assert limiter.rate == 7.0


@pytest.fixture
def small_bucket(clock: FakeClock) -> Iterator[RateLimiter]:
    limiter = InMemoryRateLimiter(rate=0.5, burst=2, clock=clock)
    install_rate_limiter(limiter)
    yield limiter
    install_rate_limiter(None)


@pytest.mark.usefixtures("small_bucket")
class TestRateLimitedResponses:
    async def test_authenticated_responses_carry_ratelimit_headers(
        self, client: httpx.AsyncClient, make_actor: MakeActor
    ) -> None:
        actor = await make_actor(scopes=["admin"])
        response = await client.get("/v1/workspace", headers=actor.headers)
        assert response.status_code == 200
        assert response.headers["ratelimit-limit"] == "2"
        assert response.headers["ratelimit-remaining"] == "1"
        assert response.headers["ratelimit-reset"] == "2"
        assert response.headers["ratelimit-policy"] == "2;w=4"

    async def test_empty_bucket_answers_429_with_retry_after(
        self, client: httpx.AsyncClient, make_actor: MakeActor
    ) -> None:
        actor = await make_actor(scopes=["admin"])
        for _ in range(2):
            assert (await client.get("/v1/workspace", headers=actor.headers)).status_code == 200
        response = await client.get("/v1/workspace", headers=actor.headers)
        assert response.status_code == 429
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "rate_limited"
        assert response.headers["retry-after"] == "2"
        assert response.headers["ratelimit-remaining"] == "0"
        assert response.headers["ratelimit-limit"] == "2"

    async def test_requests_pass_again_once_the_bucket_refills(
        self, client: httpx.AsyncClient, make_actor: MakeActor, clock: FakeClock
    ) -> None:
        actor = await make_actor(scopes=["admin"])
        for _ in range(3):
            await client.get("/v1/workspace", headers=actor.headers)
        clock.advance(2)
        assert (await client.get("/v1/workspace", headers=actor.headers)).status_code == 200

    async def test_each_api_key_has_its_own_budget(
        self, client: httpx.AsyncClient, make_actor: MakeActor
    ) -> None:
        first = await make_actor(scopes=["admin"])
        second = await make_actor(scopes=["admin"], workspace_id=first.workspace_id)
        for _ in range(3):
            await client.get("/v1/workspace", headers=first.headers)
        assert (await client.get("/v1/workspace", headers=second.headers)).status_code == 200

    async def test_unauthenticated_requests_get_no_ratelimit_headers(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/v1/workspace", headers={"Authorization": "Bearer nope"})
        assert response.status_code == 401
        assert "ratelimit-limit" not in response.headers
