"""Relay URLs (`SENDSTREAM_SMTP_URL`), the weighted choice between relays,
and the back-off of a relay that failed."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from sendstream.core.settings import DeliverySettings
from sendstream.delivery.smtp_relays import (
    InvalidSmtpUrl,
    RelayHealth,
    mask_password,
    parse_smtp_urls,
    weighted_order,
)

SETTINGS = DeliverySettings(smtp_max_connections=7)


class TestParseSmtpUrls:
    def test_full_url(self) -> None:
        [relay] = parse_smtp_urls(
            "smtp://user:pa%40ss@smtp.example.com:587?starttls=true&weight=2&max_connections=20",
            SETTINGS,
        )
        assert (relay.host, relay.port, relay.name) == (
            "smtp.example.com",
            587,
            "smtp.example.com:587",
        )
        assert (relay.username, relay.password) == ("user", "pa@ss")
        assert (relay.implicit_tls, relay.starttls, relay.verify) == (False, "always", True)
        assert (relay.weight, relay.max_connections, relay.auth) == (2.0, 20, None)
        assert "pa@ss" not in repr(relay)

    def test_defaults(self) -> None:
        plain, tls = parse_smtp_urls("smtp://mail.example.com, smtps://SMTP.Example.com", SETTINGS)
        assert (plain.port, plain.starttls, plain.implicit_tls) == (25, "auto", False)
        assert (tls.host, tls.port, tls.starttls, tls.implicit_tls) == (
            "smtp.example.com",
            465,
            "never",
            True,
        )
        assert plain.max_connections == 7  # from settings
        assert (plain.username, plain.password) == (None, None)
        assert (plain.weight, plain.verify) == (1.0, True)

    def test_options(self) -> None:
        [relay] = parse_smtp_urls(
            "smtp://u@[::1]:2525/?starttls=false&verify=false&auth=LOGIN", SETTINGS
        )
        assert (relay.host, relay.name) == ("::1", "[::1]:2525")
        assert (relay.username, relay.password) == ("u", None)
        assert (relay.starttls, relay.verify, relay.auth) == ("never", False, "login")
        assert relay.on_loopback

    def test_comma_in_a_password_is_percent_encoded(self) -> None:
        first, second = parse_smtp_urls("smtp://a:x%2Cy@one.test,smtp://two.test", SETTINGS)
        assert first.password == "x,y"
        assert second.host == "two.test"

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("http://mail.example.com", "the scheme http: is not smtp: or smtps:"),
            ("mail.example.com:25", "is not smtp: or smtps:"),
            ("smtp://", "no host name"),
            ("smtp://mail.example.com:smtp", "the port 'smtp' is not a number from 1 to 65535"),
            ("smtp://mail.example.com:70000", "the port '70000' is not a number"),
            ("smtp://mail.example.com/relay", "unexpected path '/relay'"),
            ("smtp://mail.example.com?tls=1", "unknown option 'tls'"),
            ("smtp://mail.example.com?weight=0", "weight='0' is not a positive number"),
            ("smtp://mail.example.com?weight=heavy", "weight='heavy' is not a positive number"),
            ("smtp://mail.example.com?max_connections=0", "max_connections='0' is not a whole"),
            (
                "smtp://mail.example.com?starttls=maybe",
                "starttls='maybe' is not true, false or auto",
            ),
            ("smtps://mail.example.com?starttls=true", "starttls does not apply to smtps:"),
            ("smtp://mail.example.com?verify=nah", "verify='nah' is not true or false"),
            ("smtp://mail.example.com?auth=ntlm", "auth='ntlm' is not one of plain, login"),
            ("smtp://mail.example.com?auth=plain", "auth= is given but the URL has no user name"),
            ("smtp://mail.example.com?weight=1&weight=2", "the option 'weight' is given twice"),
        ],
    )
    def test_bad_url_names_the_bad_part(self, url: str, message: str) -> None:
        with pytest.raises(InvalidSmtpUrl) as caught:
            parse_smtp_urls(f"smtp://good.example.com, {url}", SETTINGS)
        text = str(caught.value)
        assert text.startswith("SENDSTREAM_SMTP_URL, relay 2 (")
        assert message in text

    def test_error_never_shows_the_password(self) -> None:
        with pytest.raises(InvalidSmtpUrl) as caught:
            parse_smtp_urls("smtp://ada:hunter2@mail.example.com:x", SETTINGS)
        assert "hunter2" not in str(caught.value)
        assert "smtp://ada:***@mail.example.com:x" in str(caught.value)

    def test_no_relay_at_all(self) -> None:
        with pytest.raises(InvalidSmtpUrl, match="names no relay"):
            parse_smtp_urls(" , ", SETTINGS)

    @pytest.mark.parametrize(
        ("url", "masked"),
        [
            ("smtp://a:b@h:25?x=1", "smtp://a:***@h:25?x=1"),
            ("smtp://a:b@c@h", "smtp://a:***@h"),
            ("smtp://a@h", "smtp://a@h"),
            ("smtp://h:25", "smtp://h:25"),
        ],
    )
    def test_mask_password(self, url: str, masked: str) -> None:
        assert mask_password(url) == masked


class TestWeightedOrder:
    def test_weights_are_roughly_respected_over_a_thousand_choices(self) -> None:
        rng = random.Random(2026)
        firsts = Counter(weighted_order([3.0, 1.0, 1.0], rng)[0] for _ in range(1000))
        # Expected shares 0.6 / 0.2 / 0.2.
        assert 540 <= firsts[0] <= 660
        assert 150 <= firsts[1] <= 250
        assert 150 <= firsts[2] <= 250

    def test_every_relay_appears_once_as_failover(self) -> None:
        rng = random.Random(1)
        for _ in range(100):
            assert sorted(weighted_order([5.0, 1.0, 0.5], rng)) == [0, 1, 2]

    def test_single_relay(self) -> None:
        assert weighted_order([2.0], random.Random()) == [0]


class TestRelayHealth:
    def test_backoff_doubles_and_is_capped(self) -> None:
        health = RelayHealth(backoff=5.0, backoff_max=12.0)
        assert health.available(0.0)
        assert health.mark_down(100.0, "refused") == 5.0
        assert not health.available(104.9)
        assert health.available(105.0)
        assert health.mark_down(105.0, "refused") == 10.0
        assert health.mark_down(115.0, "refused") == 12.0
        health.mark_up()
        assert (health.failures, health.available(115.0)) == (0, True)

    def test_failures_while_already_down_do_not_stretch_the_backoff(self) -> None:
        health = RelayHealth(backoff=5.0, backoff_max=300.0)
        health.mark_down(0.0, "first")
        assert health.mark_down(1.0, "in flight when it went down") == 0.0
        assert health.failures == 1
        assert health.down_until == 5.0
        assert health.last_error == "in flight when it went down"
