"""Verifying sending domains against a real DNS server on loopback (dnslib
over UDP and TCP): each record's result, the domain's status, and the
events of becoming and ceasing to be verified."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from sendstream.core.db import Database
from sendstream.core.settings import Settings
from tests.fixtures.actors import Actor
from tests.fixtures.dns import DnsServer, publish
from tests.fixtures.processes import free_port

OUR_SPF = "v=spf1 include:spf.sendstream.localhost ~all"


async def register(
    client: httpx.AsyncClient, actor: Actor, name: str = "example.com", **body: Any
) -> dict[str, Any]:
    response = await client.post("/v1/domains", headers=actor.headers, json={"name": name, **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def verify(client: httpx.AsyncClient, actor: Actor, domain: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"/v1/domains/{domain['id']}/verify", headers=actor.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def record(domain: dict[str, Any], purpose: str, type_: str = "TXT") -> dict[str, Any]:
    [found] = [r for r in domain["records"] if r["purpose"] == purpose and r["type"] == type_]
    return found


def checks(domain: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(r["purpose"], r["type"]): r["check"]["status"] for r in domain["records"]}


def is_(purpose: str, type_: str = "TXT") -> Any:
    return lambda r: r["purpose"] == purpose and r["type"] == type_


async def domain_events(db: Database) -> list[tuple[str, dict[str, Any]]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT type, data FROM events WHERE type LIKE 'domain.%' ORDER BY position")
        )
        return [(r.type, r.data) for r in rows]


class TestAllRecordsRight:
    async def test_domain_becomes_verified_and_says_so_once(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer, db: Database
    ) -> None:
        domain = await register(client, admin_actor)
        publish(dns_server, domain)

        checked = await verify(client, admin_actor, domain)

        assert checked["status"] == "verified"
        assert checked["verified_at"] is not None
        assert checked["checked_at"] == checked["verified_at"]
        assert set(checks(checked).values()) == {"ok"}
        assert record(checked, "dkim")["check"]["found"] == [record(domain, "dkim")["value"]]
        events = await domain_events(db)
        assert [kind for kind, _ in events] == ["domain.verified"]
        assert events[0][1]["domain_id"] == domain["id"]
        assert events[0][1]["name"] == "example.com"

        again = await verify(client, admin_actor, domain)
        assert again["status"] == "verified"
        assert again["verified_at"] == checked["verified_at"]
        assert len(await domain_events(db)) == 1

    async def test_two_checks_at_once_announce_it_once(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer, db: Database
    ) -> None:
        domain = await register(client, admin_actor)
        publish(dns_server, domain)

        results = await asyncio.gather(*(verify(client, admin_actor, domain) for _ in range(3)))

        assert {r["status"] for r in results} == {"verified"}
        assert [kind for kind, _ in await domain_events(db)] == ["domain.verified"]

    async def test_dmarc_and_tracking_do_not_block_verification(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer
    ) -> None:
        domain = await register(client, admin_actor)
        publish(dns_server, domain, skip=lambda r: not r["required"])

        checked = await verify(client, admin_actor, domain)

        assert checked["status"] == "verified"
        assert record(checked, "dmarc")["check"]["status"] == "missing"
        assert "does not block" in record(checked, "dmarc")["check"]["message"]
        assert record(checked, "tracking", "CNAME")["check"]["status"] == "missing"

    async def test_dual_signing_domain_needs_both_dkim_records(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer
    ) -> None:
        domain = await register(client, admin_actor, dual_sign_ed25519=True)
        ed_host = next(r for r in domain["records"] if "k=ed25519" in r["value"])["host"]
        publish(dns_server, domain, skip=lambda r: r["host"] == ed_host)

        checked = await verify(client, admin_actor, domain)
        assert checked["status"] == "failed"
        ed = next(r for r in checked["records"] if r["host"] == ed_host)
        assert ed["check"]["status"] == "missing"

        publish(dns_server, domain, skip=lambda r: r["host"] != ed_host)
        assert (await verify(client, admin_actor, domain))["status"] == "verified"

    async def test_a_key_published_as_one_string_per_line_break_is_accepted(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer
    ) -> None:
        domain = await register(client, admin_actor)
        publish(dns_server, domain, skip=is_("dkim"))
        dkim = record(domain, "dkim")
        # DNS hosts split values where they like; receivers join the strings.
        value = dkim["value"].replace("; p=", ";  p=")
        dns_server.add_txt(dkim["host"], [value[i : i + 100] for i in range(0, len(value), 100)])

        checked = await verify(client, admin_actor, domain)

        assert record(checked, "dkim")["check"]["status"] == "ok"

    async def test_an_answer_too_large_for_udp_is_fetched_over_tcp(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer
    ) -> None:
        domain = await register(client, admin_actor)
        publish(dns_server, domain)
        dns_server.udp_limit = 200

        checked = await verify(client, admin_actor, domain)

        assert checked["status"] == "verified"
        dkim_host = record(domain, "dkim")["host"]
        protocols = [p for p, name, _ in dns_server.queries if name == dkim_host]
        assert protocols == ["udp", "tcp"]

    async def test_published_tracking_cname_is_ok(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer
    ) -> None:
        domain = await register(client, admin_actor)
        publish(dns_server, domain)
        checked = await verify(client, admin_actor, domain)
        assert record(checked, "tracking", "CNAME")["check"] == {
            "status": "ok",
            "found": ["track.sendstream.localhost"],
            "message": None,
        }


class TestRecordsMissingOrWrong:
    async def test_missing_dkim_fails_and_names_the_host(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer
    ) -> None:
        domain = await register(client, admin_actor)
        publish(dns_server, domain, skip=is_("dkim"))

        checked = await verify(client, admin_actor, domain)

        assert checked["status"] == "failed"
        assert checked["verified_at"] is None
        dkim = record(checked, "dkim")["check"]
        assert dkim["status"] == "missing"
        assert record(domain, "dkim")["host"] in dkim["message"]
        others = {k: v for k, v in checks(checked).items() if k != ("dkim", "TXT")}
        assert set(others.values()) == {"ok"}

    async def test_another_dkim_key_is_wrong_and_shows_what_was_found(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer
    ) -> None:
        domain = await register(client, admin_actor)
        stranger = await register(client, admin_actor, name="other.example")
        publish(dns_server, domain, skip=is_("dkim"))
        foreign = record(stranger, "dkim")["value"]
        dns_server.add_txt(record(domain, "dkim")["host"], foreign)

        checked = await verify(client, admin_actor, domain)

        assert checked["status"] == "failed"
        dkim = record(checked, "dkim")["check"]
        assert dkim["status"] == "wrong"
        assert dkim["found"] == [foreign]
        assert "another key" in dkim["message"]

    async def test_missing_spf_fails(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer
    ) -> None:
        domain = await register(client, admin_actor)
        publish(dns_server, domain, skip=is_("spf"))
        dns_server.add_txt("example.com", "google-site-verification=abc")

        checked = await verify(client, admin_actor, domain)

        assert checked["status"] == "failed"
        spf = record(checked, "spf")
        assert spf["check"]["status"] == "missing"
        assert spf["value"] == OUR_SPF

    async def test_spf_without_our_include_shows_the_record_with_it_added(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer
    ) -> None:
        domain = await register(client, admin_actor)
        publish(dns_server, domain, skip=is_("spf"))
        existing = "v=spf1 ip4:192.0.2.0/24 include:_spf.google.com -all"
        dns_server.add_txt("example.com", existing)

        checked = await verify(client, admin_actor, domain)

        assert checked["status"] == "failed"
        spf = record(checked, "spf")
        assert spf["check"]["status"] == "wrong"
        assert spf["check"]["found"] == [existing]
        assert "does not include spf.sendstream.localhost" in spf["check"]["message"]
        assert spf["value"] == (
            "v=spf1 ip4:192.0.2.0/24 include:_spf.google.com include:spf.sendstream.localhost -all"
        )
        assert spf["strings"] == [spf["value"]]

    async def test_spf_that_already_includes_us_among_others_is_ok(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer
    ) -> None:
        domain = await register(client, admin_actor)
        publish(dns_server, domain, skip=is_("spf"))
        dns_server.add_txt(
            "example.com", "v=spf1 mx include:SPF.Sendstream.localhost include:x.example ?all"
        )

        checked = await verify(client, admin_actor, domain)

        assert record(checked, "spf")["check"]["status"] == "ok"
        assert checked["status"] == "verified"

    async def test_two_spf_records_are_an_error_with_one_merged_record_to_publish(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer
    ) -> None:
        domain = await register(client, admin_actor)
        publish(dns_server, domain)  # ours is there, and a second one too
        dns_server.add_txt("example.com", "v=spf1 include:mailer.example ~all")

        checked = await verify(client, admin_actor, domain)

        assert checked["status"] == "failed"
        spf = record(checked, "spf")
        assert spf["check"]["status"] == "wrong"
        assert "2 SPF records" in spf["check"]["message"]
        assert sorted(spf["check"]["found"]) == sorted(
            [OUR_SPF, "v=spf1 include:mailer.example ~all"]
        )
        assert spf["value"].count("v=spf1") == 1
        assert "include:spf.sendstream.localhost" in spf["value"]
        assert "include:mailer.example" in spf["value"]
        assert spf["value"].endswith("~all")

    async def test_return_path_mx_elsewhere_is_wrong(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer
    ) -> None:
        domain = await register(client, admin_actor)
        publish(dns_server, domain, skip=is_("return_path", "MX"))
        dns_server.add_mx("bounces.example.com", "mx.elsewhere.example", 5)

        checked = await verify(client, admin_actor, domain)

        assert checked["status"] == "failed"
        mx = record(checked, "return_path", "MX")["check"]
        assert mx["status"] == "wrong"
        assert mx["found"] == ["5 mx.elsewhere.example"]
        assert "bounces.sendstream.localhost" in mx["message"]

    async def test_return_path_without_spf_fails(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer
    ) -> None:
        domain = await register(client, admin_actor)
        publish(dns_server, domain, skip=is_("return_path"))

        checked = await verify(client, admin_actor, domain)

        assert checked["status"] == "failed"
        assert record(checked, "return_path")["check"]["status"] == "missing"
        assert record(checked, "return_path", "MX")["check"]["status"] == "ok"

    async def test_nothing_published_fails_every_required_record(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer
    ) -> None:
        domain = await register(client, admin_actor)

        checked = await verify(client, admin_actor, domain)

        assert checked["status"] == "failed"
        assert set(checks(checked).values()) == {"missing"}


class TestDnsTrouble:
    @pytest.fixture
    def quick_timeout(self, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(settings.delivery, "dns_timeout", 0.5)

    @pytest.mark.usefixtures("quick_timeout")
    async def test_a_resolver_that_never_answers_is_an_error_per_record_not_a_500(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer
    ) -> None:
        domain = await register(client, admin_actor)
        publish(dns_server, domain)
        dns_server.down = True

        checked = await verify(client, admin_actor, domain)

        assert checked["status"] == "pending"
        assert checked["checked_at"] is not None
        for item in checked["records"]:
            assert item["check"]["status"] == "error", item
            assert "no answer within 0.5 s" in item["check"]["message"]

    async def test_an_unreachable_resolver_is_an_error(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        settings: Settings,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        domain = await register(client, admin_actor)
        monkeypatch.setattr(settings.delivery, "dns_port", free_port())  # nothing listens
        monkeypatch.setattr(settings.delivery, "dns_timeout", 0.5)

        checked = await verify(client, admin_actor, domain)

        assert checked["status"] == "pending"
        assert {r["check"]["status"] for r in checked["records"]} == {"error"}

    async def test_servfail_on_one_record_leaves_the_status_as_it_was(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer
    ) -> None:
        domain = await register(client, admin_actor)
        publish(dns_server, domain)
        dns_server.servfail(record(domain, "dkim")["host"])

        checked = await verify(client, admin_actor, domain)

        assert checked["status"] == "pending"
        dkim = record(checked, "dkim")["check"]
        assert dkim["status"] == "error"
        assert "SERVFAIL" in dkim["message"]
        assert record(checked, "spf")["check"]["status"] == "ok"

    async def test_a_misconfigured_resolver_address_is_an_error(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        settings: Settings,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        domain = await register(client, admin_actor)
        monkeypatch.setattr(settings.delivery, "dns_nameservers", ["not an address"])

        checked = await verify(client, admin_actor, domain)

        assert {r["check"]["status"] for r in checked["records"]} == {"error"}
        assert "dns_nameservers" in checked["records"][0]["check"]["message"]


class TestLosingVerification:
    async def test_a_removed_record_fails_a_verified_domain_and_says_so(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer, db: Database
    ) -> None:
        domain = await register(client, admin_actor)
        publish(dns_server, domain)
        assert (await verify(client, admin_actor, domain))["status"] == "verified"

        dns_server.clear()
        publish(dns_server, domain, skip=is_("dkim"))
        checked = await verify(client, admin_actor, domain)

        assert checked["status"] == "failed"
        assert checked["verified_at"] is None
        events = await domain_events(db)
        assert [kind for kind, _ in events] == ["domain.verified", "domain.verification_failed"]
        assert events[1][1]["records"][f"dkim:{domain['dkim_selectors'][0]}"] == "missing"

        # Failing again says nothing new; fixing it verifies again.
        await verify(client, admin_actor, domain)
        publish(dns_server, domain, skip=lambda r: not is_("dkim")(r))
        assert (await verify(client, admin_actor, domain))["status"] == "verified"
        assert [kind for kind, _ in await domain_events(db)] == [
            "domain.verified",
            "domain.verification_failed",
            "domain.verified",
        ]

    async def test_a_dns_outage_does_not_unverify_a_domain(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        dns_server: DnsServer,
        db: Database,
        settings: Settings,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        domain = await register(client, admin_actor)
        publish(dns_server, domain)
        assert (await verify(client, admin_actor, domain))["status"] == "verified"

        monkeypatch.setattr(settings.delivery, "dns_timeout", 0.5)
        dns_server.down = True
        checked = await verify(client, admin_actor, domain)

        assert checked["status"] == "verified"
        assert checked["verified_at"] is not None
        assert [kind for kind, _ in await domain_events(db)] == ["domain.verified"]

    async def test_a_failed_first_check_emits_nothing(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, dns_server: DnsServer
    ) -> None:
        domain = await register(client, admin_actor)
        assert (await verify(client, admin_actor, domain))["status"] == "failed"
        assert await domain_events(db) == []
