"""Machine activity is told from people by documented heuristics; each
rule has its reason, and people stay people."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sendstream.core.settings import TrackingSettings
from sendstream.tracking.bots import Verdict, classify

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(hours=1)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)


def verdict(
    hit: str = "open",
    *,
    method: str = "GET",
    ip: str | None = "203.0.113.7",
    user_agent: str | None = IPHONE,
    sent_at: datetime | None = LONG_AGO,
    settings: TrackingSettings | None = None,
) -> Verdict:
    return classify(
        hit,  # type: ignore[arg-type]
        method=method,
        ip=ip,
        user_agent=user_agent,
        sent_at=sent_at,
        now=NOW,
        settings=settings or TrackingSettings(),
    )


class TestPeople:
    @pytest.mark.parametrize("hit", ["open", "click"])
    def test_a_mail_client_long_after_sending_is_a_person(self, hit: str) -> None:
        assert verdict(hit) == Verdict(False, None)

    def test_gmails_image_proxy_fetches_on_open_so_it_counts(self) -> None:
        assert verdict(user_agent=GMAIL_PROXY, ip="66.102.8.1") == Verdict(False, None)

    def test_a_click_through_apples_network_is_a_person(self) -> None:
        # iCloud Private Relay users browse through Apple's egress networks.
        assert not verdict("click", ip="17.58.0.1").machine


class TestMachines:
    def test_the_trap_link_is_always_a_machine(self) -> None:
        assert verdict("trap") == Verdict(True, "trap_link")

    def test_head_requests_are_machines(self) -> None:
        assert verdict("click", method="HEAD") == Verdict(True, "head_request")

    @pytest.mark.parametrize(
        ("ip", "agent"),
        [("17.58.0.1", IPHONE), ("203.0.113.7", "Mozilla/5.0"), ("::ffff:17.1.2.3", IPHONE)],
    )
    def test_apple_mail_privacy_protection_opens_are_labelled(self, ip: str, agent: str) -> None:
        assert verdict(ip=ip, user_agent=agent) == Verdict(True, "apple_mpp")

    def test_operators_can_add_apples_published_egress_networks(self) -> None:
        extra = TrackingSettings(extra_apple_proxy_networks=["2a02:26f7::/32", "bad cidr"])
        assert verdict(ip="2a02:26f7::1", settings=extra) == Verdict(True, "apple_mpp")

    @pytest.mark.parametrize("ip", ["40.107.3.4", "148.163.130.1", "2001:db8::1"])
    def test_security_gateway_networks_are_scanners(self, ip: str) -> None:
        extra = TrackingSettings(extra_scanner_networks=["2001:db8::/32"])
        assert verdict("click", ip=ip, settings=extra) == Verdict(True, "scanner_network")

    @pytest.mark.parametrize(
        "agent",
        [
            None,
            "",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "python-requests/2.31",
            "Barracuda Sentinel (EE)",
            "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0",
            "curl/8.4.0",
        ],
    )
    def test_scanner_user_agents_are_labelled(self, agent: str | None) -> None:
        assert verdict("click", user_agent=agent) == Verdict(True, "scanner_user_agent")

    def test_operators_can_add_user_agents(self) -> None:
        extra = TrackingSettings(extra_scanner_user_agents=["AcmeGuard"])
        assert verdict("click", user_agent="acmeguard/1.0", settings=extra).machine

    def test_hits_right_after_sending_are_too_soon_for_a_person(self) -> None:
        just_sent = NOW - timedelta(seconds=3)
        assert verdict("click", sent_at=just_sent) == Verdict(True, "too_soon")
        # The open window is shorter (2 s by default).
        assert verdict("open", sent_at=just_sent) == Verdict(False, None)
        assert verdict("open", sent_at=NOW - timedelta(seconds=1)) == Verdict(True, "too_soon")
