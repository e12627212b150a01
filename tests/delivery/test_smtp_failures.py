"""Relays that refuse, stay silent, close with 421 or drop the connection:
each ends in the right outcome, fails over where nothing was delivered, and
is marked uncertain where the message may have been."""

from __future__ import annotations

import random

from tests.fixtures.smtp_servers import (
    PeerFactory,
    RawPeerFactory,
    TransportFactory,
    envelope,
)


class TestUnreachableRelay:
    async def test_refused_connection_defers_without_a_code(
        self, closed_port: int, smtp_transport: TransportFactory
    ) -> None:
        transport = smtp_transport(f"smtp://127.0.0.1:{closed_port}")

        result = await transport.send(envelope("bob@example.org", "carol@example.org"))

        assert result.relay is None
        assert result.uncertain is False
        for r in result.results:
            assert (r.outcome, r.code, r.enhanced) == ("deferred", None, None)
            assert f"cannot connect to 127.0.0.1:{closed_port}" in r.response

    async def test_refused_connection_fails_over_to_the_next_relay(
        self, closed_port: int, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer()
        # The dead relay is first choice (its weight dwarfs the other's).
        transport = smtp_transport(
            f"smtp://127.0.0.1:{closed_port}?weight=1000000", peer.url(weight=1)
        )

        result = await transport.send(envelope())

        assert result.results[0].outcome == "sent"
        assert result.relay == f"127.0.0.1:{peer.port}"
        dead = transport.relays[0]
        assert dead.health.failures == 1
        assert "cannot connect" in (dead.health.last_error or "")
        assert [r.config.name for r in transport.relay_order()] == [f"127.0.0.1:{peer.port}"]

    async def test_silent_server_times_out_and_defers(
        self, raw_peer: RawPeerFactory, smtp_transport: TransportFactory
    ) -> None:
        silent = raw_peer(None)
        transport = smtp_transport(silent.url(), smtp_connect_timeout=0.3)

        result = await transport.send(envelope())

        [r] = result.results
        assert (r.outcome, r.code) == ("deferred", None)
        assert "did not greet within 0.3 s" in r.response
        assert silent.connections == 1

    async def test_silent_server_fails_over(
        self, raw_peer: RawPeerFactory, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        silent = raw_peer(None)
        peer = smtp_peer()
        transport = smtp_transport(silent.url(weight=1000000), peer.url(), smtp_connect_timeout=0.3)
        result = await transport.send(envelope())
        assert (result.results[0].outcome, result.relay) == ("sent", f"127.0.0.1:{peer.port}")

    async def test_relay_that_is_down_is_skipped_until_its_backoff_ends(
        self, raw_peer: RawPeerFactory, smtp_transport: TransportFactory
    ) -> None:
        busy = raw_peer(b"421 4.3.2 too busy, come back later\r\n")
        now = [1000.0]
        transport = smtp_transport(busy.url(), smtp_relay_backoff_seconds=5.0, clock=lambda: now[0])

        first = await transport.send(envelope())
        second = await transport.send(envelope())

        assert (first.results[0].outcome, first.results[0].code) == ("deferred", 421)
        assert first.results[0].enhanced == "4.3.2"
        assert second.results[0].outcome == "deferred"
        assert second.results[0].response.startswith("no relay available: ")
        assert busy.connections == 1  # the second message did not knock again
        now[0] += 5.0
        await transport.send(envelope())
        assert busy.connections == 2
        # Failed again: the back-off doubles.
        assert transport.relays[0].health.down_until == now[0] + 10.0


class TestRelayClosing:
    async def test_421_at_greeting_fails_over(
        self, raw_peer: RawPeerFactory, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        busy = raw_peer(b"421 4.3.2 too busy\r\n")
        peer = smtp_peer()
        transport = smtp_transport(busy.url(weight=1000000), peer.url())
        result = await transport.send(envelope())
        assert (result.results[0].outcome, result.relay) == ("sent", f"127.0.0.1:{peer.port}")
        assert busy.connections == 1

    async def test_421_after_mail_defers_with_the_code(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer(mail_reply="421 4.7.0 closing: too many errors")
        result = await smtp_transport(peer.url()).send(envelope("a@example.org", "b@example.org"))
        for r in result.results:
            assert (r.outcome, r.code, r.enhanced) == ("deferred", 421, "4.7.0")
            assert "closing: too many errors" in r.response
        assert result.relay is None
        assert peer.handler.messages == []

    async def test_421_after_mail_fails_over(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        closing = smtp_peer(mail_reply="421 4.3.0 shutting down")
        good = smtp_peer()
        transport = smtp_transport(closing.url(weight=1000000), good.url())
        result = await transport.send(envelope())
        assert (result.results[0].outcome, result.relay) == ("sent", f"127.0.0.1:{good.port}")
        assert len(good.handler.messages) == 1

    async def test_421_at_rcpt_defers(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer(rcpt_replies={"b@example.org": "421 4.4.5 server busy"})
        result = await smtp_transport(peer.url()).send(envelope("a@example.org", "b@example.org"))
        # Nothing went out, so both wait for a retry (not just the one refused).
        assert [(r.outcome, r.code) for r in result.results] == [("deferred", 421)] * 2
        assert peer.handler.messages == []

    async def test_reused_connection_refused_with_421_is_replaced_by_a_fresh_one(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer(messages_per_connection=1)
        transport = smtp_transport(peer.url())

        results = [await transport.send(envelope()) for _ in range(3)]

        assert [r.results[0].outcome for r in results] == ["sent"] * 3
        assert len(peer.handler.messages) == 3
        assert len(peer.handler.peers) == 3
        # A stale connection is not the relay's fault.
        assert transport.relays[0].health.failures == 0

    async def test_reply_out_of_turn_on_a_pooled_connection_costs_no_message(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer(unsolicited_after_data="421 4.4.2 idle too long")
        transport = smtp_transport(peer.url())

        results = [await transport.send(envelope(f"u{i}@example.org")) for i in range(3)]

        # Whether the stray reply arrived before the next message or in the
        # middle of its commands, the connection is replaced and nothing is lost.
        assert [r.results[0].outcome for r in results] == ["sent"] * 3
        assert [m.recipients for m in peer.handler.messages] == [
            ("u0@example.org",),
            ("u1@example.org",),
            ("u2@example.org",),
        ]
        assert len(peer.handler.peers) == 3
        assert transport.relays[0].health.failures == 0


class TestConnectionLostAroundData:
    async def test_drop_in_the_middle_of_data_is_deferred_and_uncertain(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer(drop_in_data=True)
        data = b"Subject: big\r\n\r\n" + b"x" * 76 * 2000 + b"\r\n"
        result = await smtp_transport(peer.url()).send(envelope("a@example.org", data=data))
        assert result.uncertain is True
        assert result.relay == f"127.0.0.1:{peer.port}"
        [r] = result.results
        assert (r.outcome, r.code) == ("deferred", None)
        assert "may have been delivered" in r.response

    async def test_drop_after_data_before_the_reply_is_uncertain_and_not_sent_elsewhere(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        dropping = smtp_peer(drop_after_data=True)
        other = smtp_peer()
        transport = smtp_transport(dropping.url(weight=1000000), other.url())

        result = await transport.send(envelope("a@example.org", "b@example.org"))

        assert result.uncertain is True
        assert [(r.outcome, r.code) for r in result.results] == [("deferred", None)] * 2
        # Trying the other relay now could deliver a second copy.
        assert other.handler.peers == set()

    async def test_no_final_reply_within_the_data_timeout_is_uncertain(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer(data_delay=3.0)
        transport = smtp_transport(peer.url(), smtp_data_timeout=0.3)
        result = await transport.send(envelope())
        assert result.uncertain is True
        assert "no reply from the relay within 0.3 s" in result.results[0].response

    async def test_recipients_refused_at_rcpt_keep_their_outcome_when_data_drops(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer(
            drop_after_data=True, rcpt_replies={"gone@example.org": "550 5.1.1 unknown"}
        )
        result = await smtp_transport(peer.url()).send(
            envelope("gone@example.org", "bob@example.org")
        )
        assert result.uncertain is True
        assert [(r.outcome, r.code) for r in result.results] == [
            ("failed", 550),
            ("deferred", None),
        ]

    async def test_next_message_after_a_drop_gets_a_new_connection(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer(drop_after_data=True)
        transport = smtp_transport(peer.url(), rng=random.Random(1))
        assert (await transport.send(envelope())).uncertain is True
        peer.handler.drop_after_data = False
        result = await transport.send(envelope())
        assert (result.results[0].outcome, result.uncertain) == ("sent", False)
        assert len(peer.handler.peers) == 2
