"""Fixtures shared by the webhook tests.

- Every test that has `settings` resolves webhook hosts through the
  loopback DNS server (tests/fixtures/dns.py), so no lookup leaves the
  machine; `publish_address(dns_server, host, ip)` gives a name its A or
  AAAA record there.
- `http_webhooks`: plain http:// endpoint URLs accepted for the test (the
  loopback receivers speak HTTP; the test environment requires HTTPS).
- `receiver`: a real HTTP server on 127.0.0.1 recording every request
  (tests/webhooks/receiver.py documents its paths).
- `private_actor`: an admin key whose workspace may point webhooks at
  loopback and private addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Iterator

import pytest
from dnslib import AAAA, A

from sendstream.core.db import Database
from sendstream.core.settings import Settings
from sendstream.webhooks.endpoint_service import endpoint_service
from tests.fixtures.actors import Actor, MakeActor
from tests.fixtures.dns import DnsServer
from tests.webhooks.receiver import Receiver, receiving


def publish_address(dns: DnsServer, host: str, address: str) -> None:
    """An A (IPv4) or AAAA (IPv6) record for `host` on the loopback server."""
    ip = ipaddress.ip_address(address)
    rtype, rdata = ("A", A(address)) if ip.version == 4 else ("AAAA", AAAA(address))
    # DnsServer has no public adder for address records; its zone store is
    # the same for every type.
    dns._add(host, rtype, rdata)


@pytest.fixture(autouse=True)
def _webhook_dns_on_loopback(request: pytest.FixtureRequest) -> Iterator[None]:
    if "settings" not in request.fixturenames:
        yield
        return
    settings: Settings = request.getfixturevalue("settings")
    server: DnsServer = request.getfixturevalue("_loopback_dns")
    hooks = settings.webhooks
    saved = (hooks.dns_nameservers, hooks.dns_port, hooks.dns_timeout)
    hooks.dns_nameservers = [server.host]
    hooks.dns_port = server.port
    hooks.dns_timeout = 2.0
    try:
        yield
    finally:
        hooks.dns_nameservers, hooks.dns_port, hooks.dns_timeout = saved


@pytest.fixture
def http_webhooks(settings: Settings) -> Iterator[None]:
    saved = settings.webhooks.allow_http
    settings.webhooks.allow_http = True
    try:
        yield
    finally:
        settings.webhooks.allow_http = saved


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as running:
        yield running


@pytest.fixture
async def private_actor(make_actor: MakeActor, db: Database) -> Actor:
    actor = await make_actor(scopes=["admin"], name="private")
    async with db.session() as session:
        await endpoint_service.set_private_addresses_allowed(session, actor.workspace_id, True)
    return actor
