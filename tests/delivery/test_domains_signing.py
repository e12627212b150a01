"""`domain_service.signing_keys`: what the delivery pipeline gets for a
From: domain: the decrypted keys of the covering registered domain, or a
refusal, as `delivery.allow_unverified_domains` says."""

from __future__ import annotations

import asyncio
import uuid

import dkim as dkimpy
import dns.resolver
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from sqlalchemy import text

from sendstream.core.db import Database
from sendstream.core.settings import Settings
from sendstream.delivery.dkim import DkimKey, sign
from sendstream.delivery.domain_service import domain_service
from sendstream.delivery.errors import DomainNotVerified, UnknownSendingDomain
from sendstream.models.sending_domain import SendingDomain
from tests.fixtures.actors import Actor
from tests.fixtures.dns import DnsServer, publish


async def registered(
    db: Database,
    workspace_id: uuid.UUID,
    name: str = "example.com",
    *,
    status: str = "verified",
    dual: bool = False,
) -> SendingDomain:
    async with db.session() as session:
        domain = await domain_service.create_domain(
            session, workspace_id, name=name, dual_sign_ed25519=dual
        )
    # The status a DNS check would have set (test_domains_verify covers that).
    async with db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE sending_domains SET status = :s WHERE id = :id"),
            {"s": status, "id": domain.id},
        )
    return domain


async def keys_for(db: Database, workspace_id: uuid.UUID, from_domain: str) -> list[DkimKey]:
    async with db.session() as session:
        return await domain_service.signing_keys(session, workspace_id, from_domain)


class TestVerifiedDomain:
    async def test_returns_the_decrypted_rsa_key_for_the_domain(
        self, db: Database, admin_actor: Actor
    ) -> None:
        domain = await registered(db, admin_actor.workspace_id)

        async with db.session() as session:
            [key] = await domain_service.signing_keys(
                session, admin_actor.workspace_id, "example.com"
            )

        assert (key.domain, key.selector, key.algorithm) == (
            "example.com",
            domain.dkim_selector,
            "rsa-sha256",
        )
        assert isinstance(key.private_key, rsa.RSAPrivateKey)
        assert key.private_key.key_size == 2048
        # The key is the one the domain publishes.
        assert key.dns_record() == f"v=DKIM1; k=rsa; p={domain.dkim_public_key}"

    async def test_dual_signing_returns_rsa_then_ed25519(
        self, db: Database, admin_actor: Actor
    ) -> None:
        domain = await registered(db, admin_actor.workspace_id, dual=True)

        async with db.session() as session:
            keys = await domain_service.signing_keys(
                session, admin_actor.workspace_id, "example.com"
            )

        assert [k.algorithm for k in keys] == ["rsa-sha256", "ed25519-sha256"]
        assert keys[1].selector == domain.ed25519_selector
        assert isinstance(keys[1].private_key, ed25519.Ed25519PrivateKey)
        assert keys[1].dns_record() == f"v=DKIM1; k=ed25519; p={domain.ed25519_public_key}"

    @pytest.mark.parametrize("from_domain", ["news.example.com", "a.b.EXAMPLE.com."])
    async def test_a_subdomain_is_signed_by_its_registered_parent(
        self, db: Database, admin_actor: Actor, from_domain: str
    ) -> None:
        await registered(db, admin_actor.workspace_id)

        async with db.session() as session:
            [key] = await domain_service.signing_keys(
                session, admin_actor.workspace_id, from_domain
            )

        assert key.domain == "example.com"

    async def test_the_closest_registered_domain_wins(
        self, db: Database, admin_actor: Actor
    ) -> None:
        await registered(db, admin_actor.workspace_id, "example.com")
        mail = await registered(db, admin_actor.workspace_id, "mail.example.com")

        async with db.session() as session:
            [key] = await domain_service.signing_keys(
                session, admin_actor.workspace_id, "eu.mail.example.com"
            )

        assert (key.domain, key.selector) == ("mail.example.com", mail.dkim_selector)

    async def test_unicode_from_domain_finds_its_a_label(
        self, db: Database, admin_actor: Actor
    ) -> None:
        await registered(db, admin_actor.workspace_id, "bücher.example")

        async with db.session() as session:
            [key] = await domain_service.signing_keys(
                session, admin_actor.workspace_id, "Bücher.example"
            )

        assert key.domain == "xn--bcher-kva.example"


class TestRefusals:
    async def test_unverified_domain_is_refused(self, db: Database, admin_actor: Actor) -> None:
        await registered(db, admin_actor.workspace_id, status="pending")

        with pytest.raises(DomainNotVerified) as refused:
            await keys_for(db, admin_actor.workspace_id, "example.com")

        assert (refused.value.code, refused.value.status) == ("domain_not_verified", 422)
        assert "pending" in refused.value.message

    async def test_a_domain_that_failed_verification_is_refused(
        self, db: Database, admin_actor: Actor
    ) -> None:
        await registered(db, admin_actor.workspace_id, status="failed")
        with pytest.raises(DomainNotVerified):
            await keys_for(db, admin_actor.workspace_id, "news.example.com")

    @pytest.mark.parametrize("from_domain", ["elsewhere.example", "com", "", "not a domain"])
    async def test_an_unregistered_domain_is_refused(
        self, db: Database, admin_actor: Actor, from_domain: str
    ) -> None:
        await registered(db, admin_actor.workspace_id)

        with pytest.raises(UnknownSendingDomain) as refused:
            await keys_for(db, admin_actor.workspace_id, from_domain)

        assert (refused.value.code, refused.value.status) == ("unknown_sending_domain", 422)

    async def test_a_parent_name_is_not_covered_by_its_subdomain(
        self, db: Database, admin_actor: Actor
    ) -> None:
        await registered(db, admin_actor.workspace_id, "mail.example.com")
        with pytest.raises(UnknownSendingDomain):
            await keys_for(db, admin_actor.workspace_id, "example.com")

    async def test_another_workspaces_domain_is_unknown_here(
        self, db: Database, admin_actor: Actor, other_workspace_actor: Actor
    ) -> None:
        await registered(db, admin_actor.workspace_id)
        with pytest.raises(UnknownSendingDomain):
            await keys_for(db, other_workspace_actor.workspace_id, "example.com")


class TestAllowUnverifiedDomains:
    async def test_when_allowed_an_unverified_domain_still_signs(
        self,
        db: Database,
        admin_actor: Actor,
        settings: Settings,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(settings.delivery, "allow_unverified_domains", True)
        await registered(db, admin_actor.workspace_id, status="pending")

        keys = await keys_for(db, admin_actor.workspace_id, "example.com")

        assert len(keys) == 1

    async def test_when_allowed_an_unregistered_domain_sends_unsigned(
        self,
        db: Database,
        admin_actor: Actor,
        settings: Settings,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(settings.delivery, "allow_unverified_domains", True)
        assert await keys_for(db, admin_actor.workspace_id, "anything.example") == []

    @pytest.mark.parametrize(
        ("environment", "allowed"), [("development", True), ("test", False), ("production", False)]
    )
    async def test_by_default_only_development_allows_it(
        self,
        db: Database,
        admin_actor: Actor,
        settings: Settings,
        monkeypatch: pytest.MonkeyPatch,
        environment: str,
        allowed: bool,
    ) -> None:
        assert settings.delivery.allow_unverified_domains is None
        monkeypatch.setattr(settings, "environment", environment)
        await registered(db, admin_actor.workspace_id, status="pending")

        if allowed:
            assert len(await keys_for(db, admin_actor.workspace_id, "example.com")) == 1
            assert await keys_for(db, admin_actor.workspace_id, "other.example") == []
        else:
            with pytest.raises(DomainNotVerified):
                await keys_for(db, admin_actor.workspace_id, "example.com")

    async def test_false_refuses_even_in_development(
        self,
        db: Database,
        admin_actor: Actor,
        settings: Settings,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(settings, "environment", "development")
        monkeypatch.setattr(settings.delivery, "allow_unverified_domains", False)
        with pytest.raises(UnknownSendingDomain):
            await keys_for(db, admin_actor.workspace_id, "example.com")


class TestSignedMailVerifies:
    async def test_mail_signed_with_the_keys_verifies_against_the_published_record(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer, db: Database
    ) -> None:
        created = await client.post(
            "/v1/domains",
            headers=admin_actor.headers,
            json={"name": "example.com", "dual_sign_ed25519": True},
        )
        publish(dns_server, created.json())
        verified = await client.post(
            f"/v1/domains/{created.json()['id']}/verify", headers=admin_actor.headers
        )
        assert verified.json()["status"] == "verified", verified.text
        message = (
            b"From: News <news@news.example.com>\r\nTo: ada@example.org\r\n"
            b"Subject: Hello\r\nDate: Thu, 26 Nov 2026 14:00:00 +0000\r\n"
            b"Message-ID: <1@news.example.com>\r\n\r\nHello, Ada.\r\n"
        )

        keys = await keys_for(db, admin_actor.workspace_id, "news.example.com")
        signed = sign(message, keys)

        # dkimpy checks the first (RSA) signature, fetching the key record
        # over DNS from the loopback server, as a receiver would.
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [dns_server.host]
        resolver.port = dns_server.port

        def txt(name: bytes, timeout: float = 5) -> bytes:
            answer = resolver.resolve(name.decode(), "TXT", lifetime=timeout)
            return b"".join(answer[0].strings)

        assert await asyncio.to_thread(dkimpy.verify, signed, dnsfunc=txt)
        tampered = signed.replace(b"Hello, Ada.", b"Hello, Eve.")
        assert not await asyncio.to_thread(dkimpy.verify, tampered, dnsfunc=txt)
