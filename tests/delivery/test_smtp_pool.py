"""Connection reuse and the destination and workspace limits, observed at
a real server (how many connections it saw, how many transactions it had
open at once)."""

from __future__ import annotations

import asyncio
import time
import uuid

from tests.fixtures.smtp_servers import PeerFactory, TransportFactory, envelope


async def _eventually(check: object, within: float = 10.0) -> None:
    """Polls `check()` (generous bound; not a timing claim)."""
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


class TestConnectionReuse:
    async def test_fifty_messages_use_at_most_max_connections(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer()
        transport = smtp_transport(peer.url(max_connections=3))

        results = await asyncio.gather(
            *(transport.send(envelope(f"user{i}@example{i % 7}.org")) for i in range(50))
        )

        assert {r.results[0].outcome for r in results} == {"sent"}
        assert len(peer.handler.messages) == 50
        assert 1 <= len(peer.handler.peers) <= 3
        assert transport.relays[0].pool.opened <= 3

    async def test_messages_one_after_another_share_one_connection(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer()
        transport = smtp_transport(peer.url())
        for _ in range(5):
            assert (await transport.send(envelope())).results[0].outcome == "sent"
        assert len(peer.handler.peers) == 1

    async def test_connection_is_replaced_after_max_messages(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer()
        transport = smtp_transport(peer.url(), smtp_max_messages_per_connection=2)
        for _ in range(5):
            await transport.send(envelope())
        assert len(peer.handler.peers) == 3

    async def test_idle_connections_are_closed_after_the_idle_timeout(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer()
        transport = smtp_transport(peer.url(), smtp_idle_timeout=0.1)
        pool = transport.relays[0].pool
        await transport.send(envelope())
        await _eventually(lambda: pool.open_connections == 0)
        # The next message opens a new one.
        assert (await transport.send(envelope())).results[0].outcome == "sent"
        assert len(peer.handler.peers) == 2

    async def test_connection_the_relay_closed_while_idle_is_replaced(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer(server_timeout=0.2)  # the relay drops idle sessions after 0.2 s
        transport = smtp_transport(peer.url())
        await transport.send(envelope())
        # (the Controller's own start-up probe is the first disconnect)
        await _eventually(lambda: peer.handler.disconnects >= 2)

        result = await transport.send(envelope())

        assert result.results[0].outcome == "sent"
        assert len(peer.handler.peers) == 2
        assert transport.relays[0].health.failures == 0

    async def test_cancelled_send_returns_its_connection_slot(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer(data_delay=5.0)
        transport = smtp_transport(peer.url(max_connections=1))
        stuck = asyncio.ensure_future(transport.send(envelope()))
        await _eventually(lambda: peer.handler.in_flight == 1)
        stuck.cancel()
        await asyncio.gather(stuck, return_exceptions=True)
        peer.handler.data_delay = 0.0
        # The only slot is free again (the broken connection was dropped).
        result = await asyncio.wait_for(transport.send(envelope()), 10)
        assert result.results[0].outcome == "sent"


class TestDestinationLimits:
    async def test_concurrency_per_recipient_domain_is_observed_at_the_server(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer(data_delay=0.1)
        transport = smtp_transport(peer.url(max_connections=10), domain_concurrency=3)

        await asyncio.gather(*(transport.send(envelope(f"u{i}@gmail.com")) for i in range(12)))

        assert len(peer.handler.messages) == 12
        assert 2 <= peer.handler.max_in_flight <= 3
        assert len(transport.domain_concurrency) == 0  # nothing kept once idle

    async def test_override_for_one_domain(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer(data_delay=0.05)
        transport = smtp_transport(
            peer.url(max_connections=10),
            domain_concurrency=10,
            domain_limits={"slow.example": {"concurrency": 1}},
        )
        # Subdomains fall under the entry for their parent.
        recipients = [f"u{i}@mx.slow.example" if i % 2 else f"u{i}@slow.example" for i in range(6)]
        await asyncio.gather(*(transport.send(envelope(r)) for r in recipients))
        assert peer.handler.max_in_flight == 1

    async def test_other_domains_are_not_held_back(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer(data_delay=0.3)
        transport = smtp_transport(peer.url(max_connections=10), domain_concurrency=2)
        await asyncio.gather(
            *(transport.send(envelope(f"u{i}@d{i % 3}.example")) for i in range(6))
        )
        # Three domains at two each: more than one domain's limit at once.
        assert peer.handler.max_in_flight > 2

    async def test_domain_rate_makes_later_messages_wait(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer()
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)

        transport = smtp_transport(
            peer.url(),
            domain_limits={"gmail.com": {"rate_per_second": 4, "burst": 2}},
            clock=lambda: 100.0,  # time stands still: only the waits asked for count
            sleep=sleep,
        )
        for i in range(4):
            await transport.send(envelope(f"u{i}@gmail.com"))
        await transport.send(envelope("bob@example.org"))  # no rate for this domain

        assert waits == [0.25, 0.5]
        assert len(peer.handler.messages) == 5


class TestWorkspaceRate:
    async def test_each_workspace_has_its_own_bucket(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer()
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)

        transport = smtp_transport(
            peer.url(), workspace_rate_per_second=2, clock=lambda: 0.0, sleep=sleep
        )
        busy, quiet = uuid.uuid4(), uuid.uuid4()
        for _ in range(3):
            await transport.send(envelope(workspace_id=busy))
        await transport.send(envelope(workspace_id=quiet))

        # Burst of 2 (one second's worth), then one every half second.
        assert waits == [0.5]
        assert len(peer.handler.messages) == 4

    async def test_unlimited_by_default(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer()
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)

        transport = smtp_transport(peer.url(), clock=lambda: 0.0, sleep=sleep)
        for _ in range(20):
            await transport.send(envelope())
        assert waits == []
