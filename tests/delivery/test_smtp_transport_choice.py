"""`transport_from_settings`: the capture transport without `smtp_url`, the
SMTP transport with it, and a clear error for a URL that cannot be used."""

from __future__ import annotations

import pytest

from sendstream.core.settings import Settings
from sendstream.delivery.capture import CaptureTransport
from sendstream.delivery.smtp import SmtpTransport
from sendstream.delivery.smtp_relays import InvalidSmtpUrl
from sendstream.delivery.transport import Envelope, transport_from_settings
from tests.fixtures.smtp_servers import PeerFactory, envelope


class TestCaptureTransport:
    async def test_unset_url_captures_every_message(self) -> None:
        kept: list[Envelope] = []

        async def sink(env: Envelope) -> None:
            kept.append(env)

        transport = transport_from_settings(Settings(smtp_url=None), capture_sink=sink)
        assert isinstance(transport, CaptureTransport)
        mail = envelope("bob@example.org", "carol@example.org")

        result = await transport.send(mail)
        await transport.aclose()

        assert kept == [mail]
        assert result.relay == "capture"
        assert result.uncertain is False
        assert [(r.recipient, r.outcome, r.code, r.enhanced) for r in result.results] == [
            ("bob@example.org", "sent", 250, "2.0.0"),
            ("carol@example.org", "sent", 250, "2.0.0"),
        ]

    async def test_works_without_a_sink(self) -> None:
        transport = transport_from_settings(Settings(smtp_url="  "), capture_sink=None)
        result = await transport.send(envelope())
        assert result.results[0].outcome == "sent"

    async def test_failing_sink_is_not_reported_as_sent(self) -> None:
        async def sink(env: Envelope) -> None:
            raise RuntimeError("database is down")

        transport = transport_from_settings(Settings(), capture_sink=sink)
        with pytest.raises(RuntimeError, match="database is down"):
            await transport.send(envelope())


class TestSmtpTransportFromSettings:
    async def test_url_selects_smtp(self, smtp_peer: PeerFactory) -> None:
        peer = smtp_peer()
        settings = Settings(
            smtp_url=f"{peer.url()},smtps://backup.example.com?weight=3",
            delivery={"smtp_helo_name": "client.test"},
        )
        transport = transport_from_settings(settings, capture_sink=None)
        try:
            assert isinstance(transport, SmtpTransport)
            assert [(r.config.name, r.config.weight) for r in transport.relays] == [
                (f"127.0.0.1:{peer.port}", 1.0),
                ("backup.example.com:465", 3.0),
            ]
            # The backup is never reached; take it out of the running.
            transport.relays[1].health.down_until = float("inf")
            result = await transport.send(envelope())
            assert result.results[0].outcome == "sent"
        finally:
            await transport.aclose()

    def test_url_is_read_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("SENDSTREAM_SMTP_URL", "smtp://relay.example.com:2525")
        monkeypatch.setenv(
            "SENDSTREAM_DELIVERY__DOMAIN_LIMITS", '{"gmail.com": {"concurrency": 4}}'
        )
        settings = Settings()
        assert settings.smtp_url == "smtp://relay.example.com:2525"
        assert settings.delivery.domain_limits["gmail.com"].concurrency == 4

    def test_bad_url_is_refused_with_the_bad_part(self) -> None:
        settings = Settings(smtp_url="smtp://ada:secret@relay.example.com?pool=3")
        with pytest.raises(InvalidSmtpUrl) as caught:
            transport_from_settings(settings, capture_sink=None)
        assert str(caught.value) == (
            "SENDSTREAM_SMTP_URL, relay 1 (smtp://ada:***@relay.example.com?pool=3): "
            "unknown option 'pool' (known: starttls, verify, weight, max_connections, auth)."
        )
