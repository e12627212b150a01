"""The SMTP transport: every message of a worker process goes out through it.

    send(envelope)
      -> workspace rate (token bucket, msgs/s; off by default)
      -> destination-domain rate (token bucket per recipient domain; off by default)
      -> destination-domain concurrency (transactions in flight per recipient domain)
      -> relays in weighted random order, skipping those backing off:
           pooled connection -> transaction (smtp_transaction.py)
           relay refused / timed out / 421 before the message -> next relay
      -> one outcome per recipient

Limits are per worker process: with N workers a domain sees up to N times
`domain_concurrency` transactions. `send` waits while a limit is reached; the
caller bounds that wait with its own timeout if it wants one (cancelling is
safe: nothing reserved leaks). Per message there is no logging above DEBUG;
relays going down and coming back are logged, credentials never.
"""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
import time
from dataclasses import dataclass
from functools import partial

import structlog

from sendstream.core.settings import DeliverySettings
from sendstream.delivery.smtp_pool import ConnectionPool
from sendstream.delivery.smtp_relays import RelayConfig, RelayHealth, weighted_order
from sendstream.delivery.smtp_transaction import Transacted, deferred, refused_locally, transact
from sendstream.delivery.smtp_wire import RelayFailure, SmtpConnection, open_connection
from sendstream.delivery.throttle import Clock, KeyedConcurrency, KeyedTokenBuckets, Sleep
from sendstream.delivery.transport import DeliveryResult, Envelope

log = structlog.get_logger("sendstream.delivery.smtp")


@dataclass(eq=False)
class Relay:
    config: RelayConfig
    pool: ConnectionPool
    health: RelayHealth


def recipient_domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


class SmtpTransport:
    def __init__(
        self,
        relays: list[RelayConfig],
        settings: DeliverySettings,
        *,
        rng: random.Random | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not relays:
            raise ValueError("the SMTP transport needs at least one relay")
        self._settings = settings
        self._rng = rng or random.Random()  # noqa: S311 - load spreading, not security
        self._clock = clock
        self._helo_name = settings.smtp_helo_name
        self.relays = [
            Relay(
                config=config,
                pool=ConnectionPool(
                    partial(self._open, config, config.tls_context()),
                    max_connections=config.max_connections,
                    idle_timeout=settings.smtp_idle_timeout,
                    max_messages=settings.smtp_max_messages_per_connection,
                ),
                health=RelayHealth(
                    backoff=settings.smtp_relay_backoff_seconds,
                    backoff_max=settings.smtp_relay_backoff_max_seconds,
                ),
            )
            for config in relays
        ]
        self._weights = [r.config.weight for r in self.relays]
        self.domain_concurrency: KeyedConcurrency[str] = KeyedConcurrency(self._concurrency_for)
        has_domain_rate = settings.domain_rate_per_second is not None or any(
            limit.rate_per_second is not None for limit in settings.domain_limits.values()
        )
        self._domain_rate: KeyedTokenBuckets[str] | None = (
            KeyedTokenBuckets(self._domain_rate_for, clock=clock, sleep=sleep)
            if has_domain_rate
            else None
        )
        workspace_rate = settings.workspace_rate_per_second
        workspace_burst = settings.workspace_burst
        self._workspace_rate: KeyedTokenBuckets[object] | None = (
            KeyedTokenBuckets(
                lambda _key: (workspace_rate, workspace_burst), clock=clock, sleep=sleep
            )
            if workspace_rate is not None
            else None
        )

    # -- the Transport protocol

    async def send(self, envelope: Envelope) -> DeliveryResult:
        refused = refused_locally(envelope)
        if refused is not None:
            # Nothing in it can be written into SMTP: no limit, no connection.
            return DeliveryResult(refused, relay=None)
        domains = sorted({self._limit_key(recipient_domain(r)) for r in envelope.recipients})
        if self._workspace_rate is not None:
            await self._workspace_rate.acquire(envelope.workspace_id)
        if self._domain_rate is not None:
            for domain in domains:
                await self._domain_rate.acquire(domain)
        await self.domain_concurrency.acquire_all(domains)
        try:
            return await self._deliver(envelope)
        finally:
            for domain in domains:
                self.domain_concurrency.release(domain)

    async def aclose(self) -> None:
        for relay in self.relays:
            await relay.pool.aclose()

    # -- relays

    def relay_order(self) -> list[Relay]:
        """The relays to try for one message: weighted random first choice,
        the others as failover, without those backing off."""
        now = self._clock()
        return [
            relay
            for relay in (self.relays[i] for i in weighted_order(self._weights, self._rng))
            if relay.health.available(now)
        ]

    async def _deliver(self, envelope: Envelope) -> DeliveryResult:
        last: RelayFailure | None = None
        for relay in self.relay_order():
            try:
                done = await self._via(relay, envelope)
            except RelayFailure as failure:
                self._relay_failed(relay, failure)
                last = failure
                continue
            if relay.health.failures:
                log.info("smtp.relay_up", relay=relay.config.name)
            relay.health.mark_up()
            return DeliveryResult(done.results, relay.config.name, done.uncertain)
        if last is not None:
            reason, code, enhanced = last.reason, last.code, last.enhanced
        else:
            reason, code, enhanced = self._all_down_reason(), None, None
        return DeliveryResult(
            tuple(deferred(r, reason, code, enhanced) for r in envelope.recipients), relay=None
        )

    async def _via(self, relay: Relay, envelope: Envelope) -> Transacted:
        """The transaction on a pooled connection of `relay`; when a reused
        connection turns out to be dead, once more on a fresh one."""
        settings = self._settings
        for attempt in (0, 1):
            conn = await relay.pool.acquire(fresh=attempt > 0)
            try:
                return await transact(
                    conn,
                    envelope,
                    command_timeout=settings.smtp_command_timeout,
                    data_timeout=settings.smtp_data_timeout,
                )
            except RelayFailure as failure:
                if failure.stale and attempt == 0:
                    log.debug("smtp.stale_connection", relay=relay.config.name, reason=str(failure))
                    continue
                raise
            finally:
                relay.pool.release(conn)
        raise AssertionError("unreachable")  # pragma: no cover

    def _relay_failed(self, relay: Relay, failure: RelayFailure) -> None:
        backoff = relay.health.mark_down(self._clock(), failure.reason)
        if not backoff:
            return  # already down: logged when it went down
        if failure.config_error:
            # The relay works but our configuration does not: every message
            # would fail the same way until an operator acts.
            log.error(
                "smtp.relay_misconfigured",
                relay=relay.config.name,
                reason=failure.reason,
                retry_in_seconds=backoff,
            )
        else:
            log.warning(
                "smtp.relay_down",
                relay=relay.config.name,
                reason=failure.reason,
                retry_in_seconds=backoff,
            )

    def _all_down_reason(self) -> str:
        now = self._clock()
        parts = [
            f"{r.config.name} is skipped for {max(0.0, r.health.down_until - now):.0f} s "
            f"after: {r.health.last_error}"
            for r in self.relays
        ]
        return "no relay available: " + "; ".join(parts)

    async def _open(self, config: RelayConfig, tls_context: ssl.SSLContext) -> SmtpConnection:
        if self._helo_name is None:
            # Looked up once per process, off the event loop (it may ask DNS).
            self._helo_name = await asyncio.to_thread(socket.getfqdn) or "localhost"
        return await open_connection(
            config,
            tls_context,
            helo_name=self._helo_name,
            connect_timeout=self._settings.smtp_connect_timeout,
            command_timeout=self._settings.smtp_command_timeout,
        )

    # -- destination limits

    def _limit_key(self, domain: str) -> str:
        """What a recipient domain is limited as: the `domain_limits` entry
        covering it (itself or a parent), so its subdomains share the entry's
        limits, or the domain itself."""
        limits = self._settings.domain_limits
        if limits:
            name = domain
            while name:
                if name in limits:
                    return name
                name = name.partition(".")[2]
        return domain

    def _override(self, key: str) -> tuple[int | None, float | None, int | None]:
        limit = self._settings.domain_limits.get(key)
        if limit is None:
            return None, None, None
        return limit.concurrency, limit.rate_per_second, limit.burst

    def _concurrency_for(self, domain: str) -> int:
        concurrency, _, _ = self._override(domain)
        return concurrency or self._settings.domain_concurrency

    def _domain_rate_for(self, domain: str) -> tuple[float, float | None] | None:
        _, rate, burst = self._override(domain)
        rate = rate if rate is not None else self._settings.domain_rate_per_second
        if rate is None:
            return None
        return rate, burst if burst is not None else self._settings.domain_burst
