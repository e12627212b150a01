"""The SMTP transport against real aiosmtpd servers on loopback: what each
answer of the relay means for each recipient (2xx sent, 4xx deferred, 5xx
failed), with and without PIPELINING."""

from __future__ import annotations

import pytest

from tests.fixtures.smtp_servers import (
    MESSAGE,
    PeerFactory,
    TransportFactory,
    envelope,
)

PIPELINING = pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "lockstep"])


class TestNormalDelivery:
    @PIPELINING
    async def test_message_arrives_with_its_envelope(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory, pipelining: bool
    ) -> None:
        peer = smtp_peer(pipelining=pipelining)
        transport = smtp_transport(peer.url())

        result = await transport.send(envelope("bob@example.org", "carol@example.net"))

        assert result.relay == f"127.0.0.1:{peer.port}"
        assert result.uncertain is False
        assert [(r.recipient, r.outcome, r.code, r.enhanced) for r in result.results] == [
            ("bob@example.org", "sent", 250, "2.0.0"),
            ("carol@example.net", "sent", 250, "2.0.0"),
        ]
        assert result.results[0].response == "2.0.0 queued"
        [mail] = peer.handler.messages
        assert mail.sender == "bounces+abc@bounces.sendstream.test"
        assert mail.recipients == ("bob@example.org", "carol@example.net")
        # Dot-stuffed on the way, un-stuffed by the server: the same bytes.
        assert mail.raw == MESSAGE

    async def test_size_is_declared_when_the_relay_announces_it(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer()
        await smtp_transport(peer.url()).send(envelope())
        assert peer.handler.mail_options == [[f"SIZE={len(MESSAGE)}"]]

    async def test_bare_line_ends_are_sent_as_crlf(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer()
        data = b"Subject: x\n\nline one\r\n.\nlast\rline"
        result = await smtp_transport(peer.url()).send(envelope(data=data))
        assert result.results[0].outcome == "sent"
        # A lone "." line is message text here, not the end of the data.
        assert (
            peer.handler.messages[0].raw == b"Subject: x\r\n\r\nline one\r\n.\r\nlast\r\nline\r\n"
        )

    async def test_null_return_path_is_sent_as_empty(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer()
        result = await smtp_transport(peer.url()).send(envelope(mail_from=""))
        assert result.results[0].outcome == "sent"
        assert peer.handler.messages[0].sender == "<>"  # aiosmtpd keeps the null path as "<>"

    async def test_address_that_cannot_be_a_command_fails_without_a_connection(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer()
        result = await smtp_transport(peer.url()).send(
            envelope("bob@example.org>\r\nRCPT TO:<evil@example.org", "no-at-sign")
        )
        assert [(r.outcome, r.code) for r in result.results] == [("failed", None)] * 2
        assert peer.handler.peers == set()


class TestRecipientRefusals:
    @PIPELINING
    async def test_550_for_one_of_two_recipients_fails_only_that_one(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory, pipelining: bool
    ) -> None:
        peer = smtp_peer(
            pipelining=pipelining,
            rcpt_replies={"gone@example.org": "550 5.1.1 <gone@example.org>: no such user"},
        )
        result = await smtp_transport(peer.url()).send(
            envelope("gone@example.org", "bob@example.org")
        )

        gone, bob = result.results
        assert (gone.outcome, gone.code, gone.enhanced) == ("failed", 550, "5.1.1")
        assert gone.response == "5.1.1 <gone@example.org>: no such user"
        assert (bob.outcome, bob.code) == ("sent", 250)
        assert peer.handler.messages[0].recipients == ("bob@example.org",)

    @pytest.mark.parametrize(
        ("reply", "enhanced"),
        [("451 4.3.0 try again later", "4.3.0"), ("452 4.5.3 too many recipients", "4.5.3")],
    )
    async def test_4xx_at_rcpt_defers_that_recipient(
        self,
        smtp_peer: PeerFactory,
        smtp_transport: TransportFactory,
        reply: str,
        enhanced: str,
    ) -> None:
        peer = smtp_peer(rcpt_replies={"later@example.org": reply})
        result = await smtp_transport(peer.url()).send(
            envelope("bob@example.org", "later@example.org")
        )
        bob, later = result.results
        assert bob.outcome == "sent"
        assert (later.outcome, later.code, later.enhanced) == ("deferred", int(reply[:3]), enhanced)

    @PIPELINING
    async def test_every_recipient_refused_sends_nothing_and_the_connection_is_reused(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory, pipelining: bool
    ) -> None:
        peer = smtp_peer(
            pipelining=pipelining,
            rcpt_replies={
                "a@example.org": "550 5.1.1 no such user",
                "b@example.org": "450 4.2.1 mailbox busy",
            },
        )
        transport = smtp_transport(peer.url())

        refused = await transport.send(envelope("a@example.org", "b@example.org"))
        after = await transport.send(envelope("bob@example.org"))

        assert [(r.outcome, r.code) for r in refused.results] == [
            ("failed", 550),
            ("deferred", 450),
        ]
        assert after.results[0].outcome == "sent"
        assert [m.recipients for m in peer.handler.messages] == [("bob@example.org",)]
        assert len(peer.handler.peers) == 1

    async def test_multi_line_reply_is_kept_whole(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer(
            rcpt_replies={
                "gone@example.org": "550-5.1.1 The account does not exist.\r\n"
                "550 5.1.1 Please check the address."
            }
        )
        result = await smtp_transport(peer.url()).send(envelope("gone@example.org"))
        [gone] = result.results
        assert (gone.outcome, gone.code, gone.enhanced) == ("failed", 550, "5.1.1")
        assert gone.response == (
            "5.1.1 The account does not exist.\n5.1.1 Please check the address."
        )


class TestRepliesToMailAndData:
    @pytest.mark.parametrize(
        ("reply", "outcome"),
        [
            ("552 5.3.4 message too big", "failed"),
            ("554 5.7.1 rejected as spam", "failed"),
            ("451 4.3.0 temporary local problem", "deferred"),
        ],
    )
    @PIPELINING
    async def test_reply_after_the_data_decides_every_accepted_recipient(
        self,
        smtp_peer: PeerFactory,
        smtp_transport: TransportFactory,
        reply: str,
        outcome: str,
        pipelining: bool,
    ) -> None:
        peer = smtp_peer(
            pipelining=pipelining,
            data_reply=reply,
            rcpt_replies={"gone@example.org": "550 5.1.1 no such user"},
        )
        transport = smtp_transport(peer.url())
        result = await transport.send(
            envelope("bob@example.org", "gone@example.org", "carol@example.org")
        )
        assert [(r.recipient, r.outcome, r.code) for r in result.results] == [
            ("bob@example.org", outcome, int(reply[:3])),
            ("gone@example.org", "failed", 550),
            ("carol@example.org", outcome, int(reply[:3])),
        ]
        assert result.results[0].enhanced == reply.split()[1]
        assert result.uncertain is False
        # The relay is fine: the next message goes over the same connection.
        peer.handler.data_reply = None
        assert (await transport.send(envelope())).results[0].outcome == "sent"
        assert len(peer.handler.peers) == 1

    @pytest.mark.parametrize(
        ("reply", "outcome"),
        [("550 5.7.1 sender not allowed", "failed"), ("451 4.7.1 greylisted", "deferred")],
    )
    async def test_refused_return_path_decides_every_recipient(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory, reply: str, outcome: str
    ) -> None:
        peer = smtp_peer(mail_reply=reply)
        result = await smtp_transport(peer.url()).send(
            envelope("bob@example.org", "carol@example.org")
        )
        assert [(r.outcome, r.code, r.enhanced) for r in result.results] == [
            (outcome, int(reply[:3]), reply.split()[1])
        ] * 2
        assert peer.handler.messages == []

    @pytest.mark.parametrize(
        ("reply", "outcome"),
        [("554 5.7.1 message refused by policy", "failed"), ("451 4.3.0 try later", "deferred")],
    )
    @PIPELINING
    async def test_refusal_of_the_data_command_decides_every_accepted_recipient(
        self,
        smtp_peer: PeerFactory,
        smtp_transport: TransportFactory,
        reply: str,
        outcome: str,
        pipelining: bool,
    ) -> None:
        peer = smtp_peer(pipelining=pipelining, data_command_reply=reply)
        transport = smtp_transport(peer.url())
        result = await transport.send(envelope("a@example.org", "b@example.org"))
        assert [(r.outcome, r.code) for r in result.results] == [(outcome, int(reply[:3]))] * 2
        peer.handler.data_command_reply = None
        assert (await transport.send(envelope())).results[0].outcome == "sent"
        assert len(peer.handler.peers) == 1  # RSET, same connection

    async def test_data_command_taken_as_done_is_not_counted_as_sent(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer(data_command_reply="250 2.0.0 OK")
        result = await smtp_transport(peer.url()).send(envelope())
        [r] = result.results
        assert (r.outcome, r.code) == ("deferred", None)
        assert "instead of 354" in r.response
