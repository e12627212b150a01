"""Server-side request forgery protection for webhook URLs.

A webhook makes Sendstream send HTTP requests to an address a user chose. So
that it cannot be aimed at the network Sendstream runs in (the database, a
cloud metadata service, an admin port on loopback), an endpoint's host must
resolve only to public addresses: never loopback, private (RFC 1918, IPv6
ULA), link-local, shared/CGNAT, multicast, unspecified, reserved or
documentation ranges, cloud metadata addresses, nor IPv6 forms that embed
such an IPv4 address (IPv4-mapped, NAT64, 6to4).

The check runs when an endpoint is saved (`check_url`) and again before
every connection; the sender must connect to one of the addresses
`check_url` returned, never resolve the name a second time, so a DNS answer
that changes between check and connect (rebinding) cannot slip through.

`private_allowed` is the escape hatch for local development and tests: the
workspace's `webhooks_allow_private_addresses` or the installation-wide
`settings.webhooks.allow_private_addresses`.
"""

from __future__ import annotations

import asyncio
import ipaddress
from urllib.parse import SplitResult, urlsplit

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver

from sendstream.core.settings import WebhookSettings, get_settings
from sendstream.webhooks.errors import (
    InvalidWebhookUrl,
    WebhookHostUnresolvable,
    WebhookHttpsRequired,
    WebhookUrlNotAllowed,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048

# Addresses cloud providers serve instance credentials from. The IPv4 one is
# link-local anyway; AWS's IPv6 one sits in the ULA range; both are named so
# the refusal says what they are.
_METADATA = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def forbidden_reason(address: IPAddress) -> str | None:
    """Why webhooks may not reach `address` ("loopback", "private" ...), or
    None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            inner = forbidden_reason(embedded)
            return f"{inner} (IPv4 inside IPv6)" if inner else None
    if address in _METADATA:
        return "cloud metadata"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "shared (CGNAT)"
    if address.is_multicast:
        return "multicast"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "non-public"
    return None


def private_allowed(workspace_allows: bool, settings: WebhookSettings | None = None) -> bool:
    return workspace_allows or (settings or get_settings().webhooks).allow_private_addresses


def http_allowed() -> bool:
    settings = get_settings()
    configured = settings.webhooks.allow_http
    return settings.environment == "development" if configured is None else configured


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _numeric_looking(host: str) -> bool:
    # `http://2130706433/`, `http://0x7f.1/`, `http://127.1/`: forms some
    # resolvers read as IPv4 addresses. A real host name never ends in an
    # all-numeric label, so refuse them rather than guess how they resolve.
    last = host.rstrip(".").rsplit(".", 1)[-1]
    return last.isdigit() or last.lower().startswith("0x")


def parse_url(url: str) -> tuple[SplitResult, str]:
    """The split URL and its host (lower-case; an IDN as its A-label; an
    IPv6 literal without brackets), or `InvalidWebhookUrl` /
    `WebhookHttpsRequired` saying what is wrong. No DNS."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidWebhookUrl(url, f"longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise InvalidWebhookUrl(url, "it holds spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidWebhookUrl(url, str(exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidWebhookUrl(url, "only http:// and https:// URLs can receive webhooks")
    if parts.username is not None or parts.password is not None:
        raise InvalidWebhookUrl(
            url, "credentials in the URL would be logged and shown; send them as a custom header"
        )
    if parts.fragment:
        raise InvalidWebhookUrl(url, "a #fragment is never sent to the server")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise InvalidWebhookUrl(url, "it names no host")
    if port == 0:
        raise InvalidWebhookUrl(url, "port 0 cannot be connected to")
    if _literal(host) is None:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise InvalidWebhookUrl(url, f"{host[:100]!r} is not a valid host name") from None
        if _numeric_looking(host):
            raise InvalidWebhookUrl(
                url, f"{host[:100]!r} is neither a dotted IPv4 address nor a host name"
            )
    if scheme == "http" and not http_allowed():
        raise WebhookHttpsRequired(url)
    return parts, host


def _resolver(settings: WebhookSettings) -> dns.asyncresolver.Resolver:
    if settings.dns_nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = list(settings.dns_nameservers)
    else:
        resolver = dns.asyncresolver.Resolver()
    resolver.port = settings.dns_port
    resolver.timeout = settings.dns_timeout
    resolver.lifetime = settings.dns_timeout
    # A cached answer could be older than the check it is meant to be.
    resolver.cache = None
    return resolver


async def _addresses(
    resolver: dns.asyncresolver.Resolver, host: str, rdtype: str
) -> tuple[list[IPAddress], str | None]:
    try:
        answer = await resolver.resolve(
            dns.name.from_text(host), rdtype, raise_on_no_answer=False, search=False
        )
    except dns.resolver.NXDOMAIN:
        return [], None
    except dns.exception.Timeout:
        return [], f"no answer for {rdtype} within {resolver.lifetime:g} s"
    except dns.exception.DNSException as exc:
        return [], f"the {rdtype} lookup failed: {exc}"
    if answer.rrset is None:
        return [], None
    found: list[IPAddress] = []
    for rdata in answer.rrset:
        address = _literal(str(rdata.to_text()))
        if address is not None:
            found.append(address)
    return found, None


async def resolve(host: str, settings: WebhookSettings | None = None) -> list[IPAddress]:
    """Every A and AAAA address of `host` (IPv4 first), or
    `WebhookHostUnresolvable`. An IP literal is itself; `localhost` and
    names under it are loopback without asking DNS (RFC 6761)."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    if host == "localhost" or host.endswith(".localhost"):
        return [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    resolver = _resolver(settings or get_settings().webhooks)
    (v4, v4_error), (v6, v6_error) = await asyncio.gather(
        _addresses(resolver, host, "A"), _addresses(resolver, host, "AAAA")
    )
    found = v4 + v6
    if not found:
        raise WebhookHostUnresolvable(host, v4_error or v6_error or "no A or AAAA record")
    return found


async def check_url(url: str, allow_private: bool) -> list[IPAddress]:
    """Validate `url` (see `parse_url`) and resolve its host; the addresses
    to connect to, or a `SendstreamError` (422) saying why the URL cannot be
    used. Every address must be allowed, not just one: a name that also
    resolves to an internal address would be reached there on some tries."""
    _, host = parse_url(url)
    addresses = await resolve(host)
    if not allow_private:
        for address in addresses:
            reason = forbidden_reason(address)
            if reason is not None:
                raise WebhookUrlNotAllowed(host, str(address), reason)
    return addresses
