"""GDPR export and erasure over HTTP: the export holds everything about the
contact; erasure leaves no trace of the address in any table, only a keyed
hash that keeps the person from being brought back."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text

from sendstream.contacts.suppression import address_hash
from sendstream.core.db import Database
from tests.contacts.helpers import create_contact, create_field, events_of
from tests.contacts.test_lists import create_list, put_subscription
from tests.fixtures.actors import Actor

ADDRESS = "Zelda.Quartermaine-7731@Example.org"
NEEDLE = "quartermaine-7731"


async def rows_mentioning(db: Database, needle: str) -> dict[str, int]:
    """Rows of every table whose text form holds `needle` (any column, any
    type: text, jsonb, arrays, inet; bytea is searched by its hex form)."""
    found: dict[str, int] = {}
    async with db.engine.connect() as conn:
        tables = [
            r[0]
            for r in await conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
        ]
        for table in tables:
            hits = await conn.scalar(
                text(
                    f'SELECT count(*) FROM "{table}" AS t '  # noqa: S608
                    "WHERE t::text ILIKE :plain OR t::text ILIKE :hex"
                ),
                {"plain": f"%{needle}%", "hex": f"%{needle.encode().hex()}%"},
            )
            if hits:
                found[table] = int(hits)
    return found


async def held_contact(client: httpx.AsyncClient, actor: Actor) -> tuple[dict[str, Any], str]:
    """A contact with a custom field value, a subscription, consent records and
    events, created with an Idempotency-Key (so its response is stored too)."""
    await create_field(client, actor, "plan", "text")
    await create_field(client, actor, "unused", "text")
    newsletter = await create_list(client, actor, name="Newsletter")
    response = await client.post(
        "/v1/contacts",
        headers={**actor.headers, "Idempotency-Key": "create-zelda"},
        json={"email": ADDRESS, "first_name": "Zelda", "attributes": {"plan": "pro"}},
    )
    assert response.status_code == 201, response.text
    contact = dict(response.json())
    subscribed = await put_subscription(
        client,
        actor,
        contact["id"],
        newsletter["id"],
        status="subscribed",
        consent={"text": "News please", "ip": "198.51.100.7", "user_agent": "Browser/1"},
    )
    assert subscribed.status_code == 200, subscribed.text
    patched = await client.patch(
        f"/v1/contacts/{contact['id']}", headers=actor.headers, json={"last_name": "Q"}
    )
    assert patched.status_code == 200, patched.text
    return contact, newsletter["id"]


class TestExport:
    async def test_export_holds_everything_about_the_contact(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        contact, list_id = await held_contact(client, admin_actor)
        response = await client.get(
            f"/v1/contacts/{contact['id']}/export", headers=admin_actor.headers
        )
        assert response.status_code == 200, response.text
        assert "attachment" in response.headers["content-disposition"]
        body = response.json()
        assert body["contact"]["email"] == ADDRESS
        assert body["contact"]["last_name"] == "Q"
        assert body["contact"]["attributes"] == {"plan": "pro"}
        assert [f["key"] for f in body["fields"]] == ["plan"]
        assert [(s["list_id"], s["status"]) for s in body["subscriptions"]] == [
            (list_id, "subscribed")
        ]
        listed = [(c["list_id"], c["status"], c["text"], c["ip"]) for c in body["consent"]]
        assert (list_id, "subscribed", "News please", "198.51.100.7") in listed
        types = [e["type"] for e in body["timeline"]]
        assert types[0] == "contact.created"
        assert {"contact.subscribed", "contact.updated"} <= set(types)
        assert body["messages"] == []

    async def test_another_workspace_cannot_export(
        self, client: httpx.AsyncClient, admin_actor: Actor, other_workspace_actor: Actor
    ) -> None:
        contact = await create_contact(client, admin_actor, email="ada@example.com")
        response = await client.get(
            f"/v1/contacts/{contact['id']}/export", headers=other_workspace_actor.headers
        )
        assert response.status_code == 404
        assert response.json()["code"] == "contact_not_found"
        assert "ada@" not in response.text


class TestEraseContact:
    async def test_erasure_leaves_no_trace_of_the_address_anywhere(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        contact, _ = await held_contact(client, admin_actor)
        assert "contacts" in await rows_mentioning(db, NEEDLE)

        response = await client.post(
            f"/v1/contacts/{contact['id']}/erase", headers=admin_actor.headers
        )

        assert response.status_code == 200, response.text
        receipt = response.json()
        assert receipt["erased"] is True
        assert receipt["contact_id"] == contact["id"]
        assert receipt["address_hash"] == address_hash(ADDRESS.lower())
        assert receipt["removed"]["contacts"] == 1
        assert receipt["removed"]["subscriptions"] == 1
        assert receipt["removed"]["consent_records"] >= 2
        assert receipt["removed"]["events_redacted"] >= 3
        assert receipt["removed"]["idempotency_records"] == 1
        assert await rows_mentioning(db, NEEDLE) == {}
        assert await rows_mentioning(db, "Zelda") == {}

    async def test_events_are_redacted_and_erasure_is_announced_by_hash(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        contact, _ = await held_contact(client, admin_actor)
        receipt = (
            await client.post(f"/v1/contacts/{contact['id']}/erase", headers=admin_actor.headers)
        ).json()
        about = [e for e in await events_of(db) if e["subject_id"] == contact["id"]]
        assert [e["data"] for e in about[:-1]] == [{"erased": True}] * (len(about) - 1)
        assert about[-1]["type"] == "contact.erased"
        assert about[-1]["data"] == {"id": contact["id"], "address_hash": receipt["address_hash"]}
        async with db.engine.connect() as conn:
            suppressed = (
                await conn.execute(text("SELECT address_hash, reason FROM suppressions"))
            ).all()
        assert [tuple(r) for r in suppressed] == [(receipt["address_hash"], "erased")]
        gone = await client.get(f"/v1/contacts/{contact['id']}", headers=admin_actor.headers)
        assert gone.status_code == 404

    async def test_an_erased_address_cannot_be_created_again(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        contact = await create_contact(client, admin_actor, email=ADDRESS)
        await client.post(f"/v1/contacts/{contact['id']}/erase", headers=admin_actor.headers)
        for email in (ADDRESS, ADDRESS.upper()):
            again = await client.post(
                "/v1/contacts", headers=admin_actor.headers, json={"email": email}
            )
            assert again.status_code == 409, again.text
            assert again.json()["code"] == "contact_erased"

    async def test_a_read_only_key_cannot_erase(
        self, client: httpx.AsyncClient, admin_actor: Actor, member_actor: Actor
    ) -> None:
        contact = await create_contact(client, admin_actor, email="ada@example.com")
        response = await client.post(
            f"/v1/contacts/{contact['id']}/erase", headers=member_actor.headers
        )
        assert response.status_code == 403
        still = await client.get(f"/v1/contacts/{contact['id']}", headers=admin_actor.headers)
        assert still.status_code == 200


class TestEraseAddress:
    async def test_an_address_that_is_no_contact_is_suppressed_all_the_same(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        response = await client.post(
            "/v1/contacts/erase", headers=admin_actor.headers, json={"email": ADDRESS}
        )
        assert response.status_code == 200, response.text
        assert response.json()["contact_id"] is None
        assert response.json()["removed"]["contacts"] == 0
        (erased,) = await events_of(db, "contact.erased")
        assert erased["data"] == {"id": None, "address_hash": address_hash(ADDRESS.lower())}
        again = await client.post(
            "/v1/contacts", headers=admin_actor.headers, json={"email": ADDRESS}
        )
        assert again.json()["code"] == "contact_erased"
        assert await rows_mentioning(db, NEEDLE) == {}

    async def test_erases_the_contact_whatever_the_case_of_the_address(
        self,
        client: httpx.AsyncClient,
        db: Database,
        admin_actor: Actor,
        other_workspace_actor: Actor,
    ) -> None:
        mine = await create_contact(client, admin_actor, email=ADDRESS)
        theirs = await create_contact(client, other_workspace_actor, email=ADDRESS)
        response = await client.post(
            "/v1/contacts/erase", headers=admin_actor.headers, json={"email": ADDRESS.upper()}
        )
        assert response.json()["contact_id"] == mine["id"]
        gone = await client.get(f"/v1/contacts/{mine['id']}", headers=admin_actor.headers)
        assert gone.status_code == 404
        kept = await client.get(
            f"/v1/contacts/{theirs['id']}", headers=other_workspace_actor.headers
        )
        assert kept.status_code == 200
        assert kept.json()["email"] == ADDRESS

    async def test_an_invalid_address_is_refused_with_the_reason(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        response = await client.post(
            "/v1/contacts/erase", headers=admin_actor.headers, json={"email": "not-an-address"}
        )
        assert response.status_code == 422
        assert response.json()["code"] == "invalid_email"
        assert response.json()["detail"].startswith("email:")
        assert await events_of(db, "contact.erased") == []
