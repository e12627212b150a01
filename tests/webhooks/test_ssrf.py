"""SSRF protection of webhook URLs: which addresses are refused (IPv4, IPv6
and IPv4 inside IPv6), URL rules, and host names resolved through a real DNS
server on loopback, including answers that mix public and internal
addresses and names that alias internal ones."""

from __future__ import annotations

import ipaddress

import pytest

from sendstream.core.errors import SendstreamError
from sendstream.core.settings import Settings
from sendstream.webhooks import ssrf
from tests.fixtures.dns import DnsServer
from tests.webhooks.conftest import publish_address

REFUSED = {
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "0.0.0.0": "unspecified",  # noqa: S104 (an address under test, not a bind)
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "172.31.255.254": "private",
    "192.168.1.1": "private",
    "100.64.0.1": "shared (CGNAT)",
    "100.127.255.254": "shared (CGNAT)",
    "169.254.169.254": "cloud metadata",
    "169.254.10.10": "link-local",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "reserved",
    "192.0.2.10": "private",
    "198.18.0.1": "private",
    "::1": "loopback",
    "::": "unspecified",
    "fe80::1": "link-local",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "fd00:ec2::254": "cloud metadata",
    "ff02::1": "multicast",
    "2001:db8::1": "private",
    "::ffff:127.0.0.1": "loopback (IPv4 inside IPv6)",
    "::ffff:10.0.0.1": "private (IPv4 inside IPv6)",
    "::ffff:169.254.169.254": "cloud metadata (IPv4 inside IPv6)",
    "64:ff9b::a9fe:a9fe": "cloud metadata (IPv4 inside IPv6)",
    "64:ff9b::7f00:1": "loopback (IPv4 inside IPv6)",
    "2002:7f00:1::": "loopback (IPv4 inside IPv6)",
    "2002:c0a8:101::1": "private (IPv4 inside IPv6)",
}
PUBLIC = ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


class TestAddresses:
    @pytest.mark.parametrize(("address", "reason"), REFUSED.items())
    def test_internal_addresses_are_refused_with_their_kind(
        self, address: str, reason: str
    ) -> None:
        assert ssrf.forbidden_reason(ipaddress.ip_address(address)) == reason

    @pytest.mark.parametrize("address", PUBLIC)
    def test_public_addresses_pass(self, address: str) -> None:
        assert ssrf.forbidden_reason(ipaddress.ip_address(address)) is None


class TestUrlRules:
    @pytest.mark.parametrize(
        ("url", "why"),
        [
            ("ftp://hooks.example.com/x", "only http:// and https://"),
            ("hooks.example.com/x", "only http:// and https://"),
            ("https://user:pass@hooks.example.com/x", "credentials"),
            ("https://token@hooks.example.com/x", "credentials"),
            ("https://hooks.example.com/x#frag", "fragment"),
            ("https:///x", "names no host"),
            ("https://hooks.example.com:0/x", "port 0"),
            ("https://hooks.example.com:99999/x", "Port out of range"),
            ("https://hooks.example.com/a b", "spaces or control"),
            ("https://2130706433/x", "neither a dotted IPv4"),
            ("https://0x7f.1/x", "neither a dotted IPv4"),
            ("https://127.1/x", "neither a dotted IPv4"),
            ("https://hooks.example.com/" + "a" * 2100, "longer than 2048"),
        ],
    )
    def test_unusable_urls_are_invalid_webhook_urls(self, url: str, why: str) -> None:
        with pytest.raises(SendstreamError, match=why) as raised:
            ssrf.parse_url(url)
        assert raised.value.code == "invalid_webhook_url"
        assert raised.value.status == 422

    def test_http_is_refused_outside_development(self, settings: Settings) -> None:
        assert settings.environment == "test"
        with pytest.raises(SendstreamError) as raised:
            ssrf.parse_url("http://hooks.example.com/x")
        assert raised.value.code == "webhook_https_required"

    def test_http_is_accepted_where_allowed(self, settings: Settings, http_webhooks: None) -> None:
        _, host = ssrf.parse_url("http://Hooks.Example.com./x")
        assert host == "hooks.example.com"

    def test_an_idn_host_becomes_its_a_label(self, settings: Settings) -> None:
        _, host = ssrf.parse_url("https://bücher.example/hook")
        assert host == "xn--bcher-kva.example"

    def test_an_ipv6_literal_loses_its_brackets(self, settings: Settings) -> None:
        _, host = ssrf.parse_url("https://[2606:4700:4700::1111]:8443/hook")
        assert host == "2606:4700:4700::1111"


class TestCheckUrl:
    async def test_a_loopback_literal_is_refused(self, settings: Settings) -> None:
        with pytest.raises(SendstreamError) as raised:
            await ssrf.check_url("https://127.0.0.1:8443/hook", allow_private=False)
        assert raised.value.code == "webhook_url_not_allowed"
        assert "loopback" in raised.value.message

    async def test_an_ipv4_mapped_literal_is_refused(self, settings: Settings) -> None:
        with pytest.raises(SendstreamError) as raised:
            await ssrf.check_url("https://[::ffff:169.254.169.254]/latest", allow_private=False)
        assert raised.value.code == "webhook_url_not_allowed"

    async def test_private_addresses_pass_when_allowed(self, settings: Settings) -> None:
        found = await ssrf.check_url("https://127.0.0.1:8443/hook", allow_private=True)
        assert found == [ipaddress.ip_address("127.0.0.1")]

    async def test_localhost_is_loopback_without_asking_dns(
        self, settings: Settings, dns_server: DnsServer
    ) -> None:
        with pytest.raises(SendstreamError) as raised:
            await ssrf.check_url("https://api.localhost/hook", allow_private=False)
        assert raised.value.code == "webhook_url_not_allowed"
        assert dns_server.queries == []

    async def test_a_name_resolving_to_a_public_address_passes_with_its_addresses(
        self, settings: Settings, dns_server: DnsServer
    ) -> None:
        publish_address(dns_server, "hooks.example.com", "93.184.216.34")
        publish_address(dns_server, "hooks.example.com", "2606:4700:4700::1111")

        found = await ssrf.check_url("https://hooks.example.com/in", allow_private=False)

        assert found == [
            ipaddress.ip_address("93.184.216.34"),
            ipaddress.ip_address("2606:4700:4700::1111"),
        ]
        assert {(name, rtype) for _, name, rtype in dns_server.queries} == {
            ("hooks.example.com", "A"),
            ("hooks.example.com", "AAAA"),
        }

    async def test_a_name_resolving_to_a_private_address_is_refused(
        self, settings: Settings, dns_server: DnsServer
    ) -> None:
        publish_address(dns_server, "intranet.example.com", "10.0.0.5")

        with pytest.raises(SendstreamError) as raised:
            await ssrf.check_url("https://intranet.example.com/", allow_private=False)

        assert raised.value.code == "webhook_url_not_allowed"
        assert "intranet.example.com (10.0.0.5) is a private address" in raised.value.message

    async def test_one_internal_address_among_public_ones_is_enough_to_refuse(
        self, settings: Settings, dns_server: DnsServer
    ) -> None:
        publish_address(dns_server, "mixed.example.com", "93.184.216.34")
        publish_address(dns_server, "mixed.example.com", "::1")

        with pytest.raises(SendstreamError) as raised:
            await ssrf.check_url("https://mixed.example.com/", allow_private=False)

        assert raised.value.code == "webhook_url_not_allowed"

    async def test_an_alias_of_an_internal_name_is_refused(
        self, settings: Settings, dns_server: DnsServer
    ) -> None:
        dns_server.add_cname("innocent.example.com", "metadata.internal.example")
        publish_address(dns_server, "metadata.internal.example", "169.254.169.254")

        with pytest.raises(SendstreamError) as raised:
            await ssrf.check_url("https://innocent.example.com/", allow_private=False)

        assert "cloud metadata" in raised.value.message

    async def test_a_name_that_does_not_exist_is_unresolvable(
        self, settings: Settings, dns_server: DnsServer
    ) -> None:
        with pytest.raises(SendstreamError) as raised:
            await ssrf.check_url("https://nowhere.example.com/", allow_private=False)
        assert raised.value.code == "webhook_host_unresolvable"

    async def test_a_resolver_that_never_answers_makes_the_host_unresolvable(
        self, settings: Settings, dns_server: DnsServer
    ) -> None:
        dns_server.drop("slow.example.com")
        settings.webhooks.dns_timeout = 0.3

        with pytest.raises(SendstreamError) as raised:
            await ssrf.check_url("https://slow.example.com/", allow_private=False)

        assert raised.value.code == "webhook_host_unresolvable"
        assert "no answer" in raised.value.message

    async def test_the_installation_switch_allows_private_addresses(
        self, settings: Settings
    ) -> None:
        assert not ssrf.private_allowed(False)
        settings.webhooks.allow_private_addresses = True
        try:
            assert ssrf.private_allowed(False)
        finally:
            settings.webhooks.allow_private_addresses = False
