"""Sending domains over HTTP: registering (keys generated, records to
publish, names validated), listing, reading, deleting, scopes, and private
keys that are stored encrypted and never shown."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.hashes import SHA256
from sqlalchemy import text

from sendstream.core import secrets
from sendstream.core.db import Database
from tests.fixtures.actors import Actor, MakeActor


async def register(client: httpx.AsyncClient, actor: Actor, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "example.com")
    response = await client.post("/v1/domains", headers=actor.headers, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def by_purpose(domain: dict[str, Any], purpose: str, type_: str = "TXT") -> list[dict[str, Any]]:
    return [r for r in domain["records"] if r["purpose"] == purpose and r["type"] == type_]


def dkim_tags(value: str) -> dict[str, str]:
    return dict(part.strip().split("=", 1) for part in value.split(";"))


async def raw_row(db: Database, domain_id: str) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT * FROM sending_domains WHERE id = :id"), {"id": domain_id}
            )
        ).one()
    return dict(row._mapping)


class TestRegisterDomain:
    async def test_new_domain_is_pending_and_lists_every_record_to_publish(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await client.post(
            "/v1/domains", headers=admin_actor.headers, json={"name": "Example.COM."}
        )

        assert response.status_code == 201, response.text
        domain = response.json()
        assert response.headers["location"] == f"/v1/domains/{domain['id']}"
        assert domain["name"] == domain["unicode_name"] == "example.com"
        assert domain["status"] == "pending"
        assert domain["checked_at"] is None
        assert domain["verified_at"] is None
        assert domain["return_path_host"] == "bounces.example.com"
        assert domain["tracking_host"] == "track.example.com"
        [selector] = domain["dkim_selectors"]
        summary = {(r["purpose"], r["type"], r["host"], r["required"]) for r in domain["records"]}
        assert summary == {
            ("dkim", "TXT", f"{selector}._domainkey.example.com", True),
            ("spf", "TXT", "example.com", True),
            ("return_path", "MX", "bounces.example.com", True),
            ("return_path", "TXT", "bounces.example.com", True),
            ("dmarc", "TXT", "_dmarc.example.com", False),
            ("tracking", "CNAME", "track.example.com", False),
        }
        assert all(r["check"] is None for r in domain["records"])

    async def test_records_carry_the_configured_hosts(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        domain = await register(client, admin_actor)

        [spf] = by_purpose(domain, "spf")
        assert spf["value"] == "v=spf1 include:spf.sendstream.localhost ~all"
        [mx] = by_purpose(domain, "return_path", "MX")
        assert (mx["value"], mx["priority"]) == ("bounces.sendstream.localhost", 10)
        [rp_spf] = by_purpose(domain, "return_path")
        assert rp_spf["value"] == spf["value"]
        [dmarc] = by_purpose(domain, "dmarc")
        assert dmarc["value"].startswith("v=DMARC1; p=none")
        [cname] = by_purpose(domain, "tracking", "CNAME")
        assert cname["value"] == "track.sendstream.localhost"
        assert mx["strings"] is None
        assert cname["strings"] is None

    async def test_dkim_record_holds_a_2048_bit_rsa_key_split_into_dns_strings(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        domain = await register(client, admin_actor)

        [dkim] = by_purpose(domain, "dkim")
        tags = dkim_tags(dkim["value"])
        assert (tags["v"], tags["k"]) == ("DKIM1", "rsa")
        public = serialization.load_der_public_key(base64.b64decode(tags["p"]))
        assert isinstance(public, rsa.RSAPublicKey)
        assert public.key_size == 2048
        assert len(dkim["strings"]) > 1
        assert all(len(s.encode()) <= 255 for s in dkim["strings"])
        assert "".join(dkim["strings"]) == dkim["value"]

    async def test_dual_signing_adds_an_ed25519_record_under_its_own_selector(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        domain = await register(client, admin_actor, dual_sign_ed25519=True)

        rsa_selector, ed_selector = domain["dkim_selectors"]
        assert rsa_selector != ed_selector
        rsa_record, ed_record = by_purpose(domain, "dkim")
        assert rsa_record["host"].startswith(f"{rsa_selector}._domainkey.")
        assert ed_record["host"] == f"{ed_selector}._domainkey.example.com"
        tags = dkim_tags(ed_record["value"])
        assert tags["k"] == "ed25519"
        assert len(base64.b64decode(tags["p"])) == 32
        assert ed_record["required"] is True

    async def test_each_domain_gets_its_own_key_and_selector(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        first = await register(client, admin_actor, name="one.example")
        second = await register(client, admin_actor, name="two.example")

        assert first["dkim_selectors"] != second["dkim_selectors"]
        assert by_purpose(first, "dkim")[0]["value"] != by_purpose(second, "dkim")[0]["value"]

    async def test_unicode_name_is_stored_as_its_a_label(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        domain = await register(client, admin_actor, name="Bücher.Example")

        assert domain["name"] == "xn--bcher-kva.example"
        assert domain["unicode_name"] == "bücher.example"
        assert by_purpose(domain, "spf")[0]["host"] == "xn--bcher-kva.example"

    @pytest.mark.parametrize("again", ["example.com", "EXAMPLE.com.", " example.com "])
    async def test_registering_a_name_twice_is_409(
        self, client: httpx.AsyncClient, admin_actor: Actor, again: str
    ) -> None:
        await register(client, admin_actor)

        response = await client.post(
            "/v1/domains", headers=admin_actor.headers, json={"name": again}
        )

        assert response.status_code == 409, response.text
        assert response.json()["code"] == "domain_exists"

    async def test_two_workspaces_can_register_the_same_name(
        self, client: httpx.AsyncClient, admin_actor: Actor, other_workspace_actor: Actor
    ) -> None:
        mine = await register(client, admin_actor)
        theirs = await register(client, other_workspace_actor)
        assert mine["id"] != theirs["id"]

    @pytest.mark.parametrize(
        ("name", "why"),
        [
            ("192.0.2.10", "IP address"),
            ("[2001:db8::1]", "IP address"),
            ("localhost", "two labels"),
            ("exa mple.com", "label"),
            ("-bad.example", "label"),
            ("under_score.example", "label"),
            ("example.123", "top-level"),
            ("mail@example.com", "label"),
            ("😀.example", "internationalised"),
            ("xn--zz.example", "internationalised"),
            ("a" * 64 + ".example", "label"),
            (".".join(["a" * 60] * 4) + ".example", "longer than"),
        ],
    )
    async def test_a_name_that_is_not_a_sending_domain_is_422(
        self, client: httpx.AsyncClient, admin_actor: Actor, name: str, why: str
    ) -> None:
        response = await client.post(
            "/v1/domains", headers=admin_actor.headers, json={"name": name}
        )

        assert response.status_code == 422, response.text
        body = response.json()
        assert body["code"] == "invalid_domain_name"
        assert why in body["detail"]

    async def test_unknown_fields_are_refused(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await client.post(
            "/v1/domains",
            headers=admin_actor.headers,
            json={"name": "example.com", "private_key": "mine"},
        )
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"


class TestReadDomains:
    async def test_list_pages_oldest_first(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        names = ["a.example", "b.example", "c.example"]
        for name in names:
            await register(client, admin_actor, name=name)

        seen: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = await client.get("/v1/domains", headers=admin_actor.headers, params=params)
            assert page.status_code == 200, page.text
            seen += [d["name"] for d in page.json()["data"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert seen == names

    async def test_get_returns_the_domain_with_its_records(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        created = await register(client, admin_actor)

        response = await client.get(f"/v1/domains/{created['id']}", headers=admin_actor.headers)

        assert response.status_code == 200
        assert response.json() == created | {"updated_at": response.json()["updated_at"]}

    async def test_unknown_id_is_404_domain_not_found(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        for method, suffix in (("GET", ""), ("POST", "/verify"), ("DELETE", "")):
            response = await client.request(
                method, f"/v1/domains/{uuid.uuid4()}{suffix}", headers=admin_actor.headers
            )
            assert response.status_code == 404, (method, response.text)
            assert response.json()["code"] == "domain_not_found"


class TestDeleteDomain:
    async def test_deleted_domain_is_gone_with_its_keys(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        created = await register(client, admin_actor)

        response = await client.delete(f"/v1/domains/{created['id']}", headers=admin_actor.headers)

        assert response.status_code == 204
        gone = await client.get(f"/v1/domains/{created['id']}", headers=admin_actor.headers)
        assert gone.status_code == 404
        async with db.engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM sending_domains")) == 0
        # The name can be registered again, with a new key.
        again = await register(client, admin_actor)
        assert again["dkim_selectors"] != created["dkim_selectors"]


class TestScopesAndAudit:
    async def test_read_scope_reads_but_cannot_register(
        self, client: httpx.AsyncClient, make_actor: MakeActor
    ) -> None:
        reader = await make_actor(scopes=["domains:read"])

        listed = await client.get("/v1/domains", headers=reader.headers)
        created = await client.post(
            "/v1/domains", headers=reader.headers, json={"name": "example.com"}
        )

        assert listed.status_code == 200
        assert created.status_code == 403
        assert created.json()["code"] == "missing_scope"

    async def test_contacts_scopes_do_not_reach_domains(
        self, client: httpx.AsyncClient, make_actor: MakeActor
    ) -> None:
        other = await make_actor(scopes=["contacts:read", "contacts:write"])
        response = await client.get("/v1/domains", headers=other.headers)
        assert response.status_code == 403

    async def test_changes_are_audited(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        created = await register(client, admin_actor)
        await client.delete(f"/v1/domains/{created['id']}", headers=admin_actor.headers)

        async with db.engine.connect() as conn:
            actions = (await conn.scalars(text("SELECT action FROM audit_log ORDER BY id"))).all()
        assert actions == ["POST /v1/domains", "DELETE /v1/domains/{domain_id}"]


class TestPrivateKeysAtRest:
    async def test_no_private_key_in_any_answer(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        created = await register(client, admin_actor, dual_sign_ed25519=True)
        shown = [
            (await client.get(f"/v1/domains/{created['id']}", headers=admin_actor.headers)).text,
            (await client.get("/v1/domains", headers=admin_actor.headers)).text,
            str(created),
        ]
        for text_ in shown:
            assert "PRIVATE" not in text_
            assert "private" not in text_

    async def test_columns_hold_ciphertext_that_decrypts_only_in_its_row(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        created = await register(client, admin_actor, dual_sign_ed25519=True)
        row = await raw_row(db, created["id"])

        for column in ("dkim_private_key", "ed25519_private_key"):
            stored = bytes(row[column])
            assert b"PRIVATE KEY" not in stored
            assert b"-----BEGIN" not in stored
            with pytest.raises(secrets.SecretDecryptionFailed, match=column):
                secrets.decrypt(stored, f"sending_domains.{column}:{uuid.uuid4()}")

        pem = secrets.decrypt(
            bytes(row["dkim_private_key"]), f"sending_domains.dkim_private_key:{created['id']}"
        )
        private = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(private, rsa.RSAPrivateKey)
        # The stored private key is the one the published record names.
        published = serialization.load_der_public_key(
            base64.b64decode(dkim_tags(by_purpose(created, "dkim")[0]["value"])["p"])
        )
        assert isinstance(published, rsa.RSAPublicKey)
        signature = private.sign(b"check", padding.PKCS1v15(), SHA256())
        published.verify(signature, b"check", padding.PKCS1v15(), SHA256())

        ed_pem = secrets.decrypt(
            bytes(row["ed25519_private_key"]),
            f"sending_domains.ed25519_private_key:{created['id']}",
        )
        ed_private = serialization.load_pem_private_key(ed_pem, password=None)
        assert isinstance(ed_private, ed25519.Ed25519PrivateKey)
        raw_public = ed_private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        assert base64.b64encode(raw_public).decode() == row["ed25519_public_key"]

    async def test_a_key_copied_into_another_domain_does_not_decrypt(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        victim = await register(client, admin_actor, name="victim.example")
        thief = await register(client, admin_actor, name="thief.example")
        async with db.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE sending_domains SET dkim_private_key = "
                    "(SELECT dkim_private_key FROM sending_domains WHERE id = :victim) "
                    "WHERE id = :thief"
                ),
                {"victim": victim["id"], "thief": thief["id"]},
            )
        row = await raw_row(db, thief["id"])
        with pytest.raises(secrets.SecretDecryptionFailed, match=thief["id"]):
            secrets.decrypt(
                bytes(row["dkim_private_key"]), f"sending_domains.dkim_private_key:{thief['id']}"
            )
