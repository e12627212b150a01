"""TLS (STARTTLS and implicit) and AUTH against aiosmtpd with a self-signed
certificate. A login refused by the relay is our configuration's fault, not
the message's: deferred, logged as an error, and the relay is backed off."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from structlog.testing import capture_logs

from tests.fixtures.smtp_servers import PeerFactory, TransportFactory, envelope


class TestTls:
    async def test_starttls_with_a_self_signed_certificate_when_verify_is_off(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer(tls="starttls")
        transport = smtp_transport(peer.url(starttls="true", verify="false"))
        result = await transport.send(envelope())
        assert result.results[0].outcome == "sent"
        assert peer.handler.secure == [True]

    async def test_starttls_is_used_when_offered_by_default(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer(tls="starttls")
        result = await smtp_transport(peer.url(verify="false")).send(envelope())
        assert result.results[0].outcome == "sent"
        assert peer.handler.secure == [True]

    async def test_starttls_false_stays_in_plain_text(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer(tls="starttls")
        result = await smtp_transport(peer.url(starttls="false")).send(envelope())
        assert result.results[0].outcome == "sent"
        assert peer.handler.secure == [False]

    async def test_self_signed_certificate_is_refused_when_verifying(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer(tls="starttls")
        transport = smtp_transport(peer.url(starttls="true"))
        result = await transport.send(envelope())
        [r] = result.results
        assert (r.outcome, r.code) == ("deferred", None)
        assert "certificate verify failed" in r.response.lower()
        assert peer.handler.messages == []

    async def test_required_starttls_that_is_not_offered_defers(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer()
        result = await smtp_transport(peer.url(starttls="true")).send(envelope())
        [r] = result.results
        assert r.outcome == "deferred"
        assert "STARTTLS" in r.response
        assert peer.handler.messages == []

    async def test_implicit_tls(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer(tls="implicit")
        transport = smtp_transport(peer.url(verify="false"))
        assert transport.relays[0].config.implicit_tls
        results = [await transport.send(envelope()) for _ in range(3)]
        assert [r.results[0].outcome for r in results] == ["sent"] * 3
        assert peer.handler.secure == [True] * 3
        assert len(peer.handler.peers) == 1  # TLS connections are pooled too

    async def test_implicit_tls_with_an_unverifiable_certificate_defers(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer(tls="implicit")
        result = await smtp_transport(peer.url()).send(envelope())
        assert result.results[0].outcome == "deferred"
        assert "TLS with 127.0.0.1" in result.results[0].response


class TestAuth:
    @pytest.mark.parametrize("mechanism", ["plain", "login"])
    async def test_right_password_sends(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory, mechanism: str
    ) -> None:
        other = {"plain": "LOGIN", "login": "PLAIN"}[mechanism]
        peer = smtp_peer(users={"ada": "s3cret"}, exclude_auth=[other])
        transport = smtp_transport(peer.url("ada", "s3cret", auth=mechanism))
        result = await transport.send(envelope())
        assert result.results[0].outcome == "sent"

    async def test_mechanism_offered_by_the_relay_is_used_when_none_is_forced(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        peer = smtp_peer(users={"ada": "s3cret"}, exclude_auth=["PLAIN"])
        result = await smtp_transport(peer.url("ada", "s3cret")).send(envelope())
        assert result.results[0].outcome == "sent"

    async def test_credentials_are_percent_decoded(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        user, password = "ada@example.com", "p@ss,w:rd/%"
        peer = smtp_peer(users={user: password})
        url = peer.url(quote(user, safe=""), quote(password, safe=""))
        result = await smtp_transport(url).send(envelope())
        assert result.results[0].outcome == "sent"

    @pytest.mark.parametrize("mechanism", ["plain", "login"])
    async def test_wrong_password_defers_and_is_logged_as_an_error(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory, mechanism: str
    ) -> None:
        peer = smtp_peer(users={"ada": "s3cret"})
        transport = smtp_transport(peer.url("ada", "wrong", auth=mechanism))

        with capture_logs() as logs:
            result = await transport.send(envelope("a@example.org", "b@example.org"))

        for r in result.results:
            # 535 answers the login, not the message: never a permanent failure.
            assert (r.outcome, r.code) == ("deferred", None)
            assert "refused our credentials: 535" in r.response
        assert peer.handler.messages == []
        [entry] = [e for e in logs if e["event"] == "smtp.relay_misconfigured"]
        assert entry["log_level"] == "error"
        assert entry["relay"] == f"127.0.0.1:{peer.port}"
        assert "wrong" not in str(entry)
        assert transport.relays[0].health.failures == 1

    async def test_wrong_password_fails_over_to_a_working_relay(
        self, smtp_peer: PeerFactory, smtp_transport: TransportFactory
    ) -> None:
        locked = smtp_peer(users={"ada": "s3cret"})
        open_relay = smtp_peer()
        transport = smtp_transport(locked.url("ada", "wrong", weight=1000000), open_relay.url())
        result = await transport.send(envelope())
        assert (result.results[0].outcome, result.relay) == (
            "sent",
            f"127.0.0.1:{open_relay.port}",
        )
