"""Contacts over HTTP: create, read, PATCH, upsert, delete, filters, timeline."""

from __future__ import annotations

import httpx
from sqlalchemy import text

from sendstream.core.db import Database
from tests.contacts.helpers import count, create_contact, create_field, events_of
from tests.fixtures.actors import Actor


class TestCreateContact:
    async def test_address_is_kept_as_given_and_matched_case_insensitively(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        created = await create_contact(client, admin_actor, email=" Jane.Doe@Example.COM ")
        assert created["email"] == "Jane.Doe@Example.COM"
        again = await client.post(
            "/v1/contacts", headers=admin_actor.headers, json={"email": "jane.doe@example.com"}
        )
        assert again.status_code == 409
        assert again.json()["code"] == "contact_exists"
        found = await client.get(
            "/v1/contacts", headers=admin_actor.headers, params={"email": "JANE.DOE@example.com"}
        )
        assert [c["id"] for c in found.json()["data"]] == [created["id"]]

    async def test_internationalised_domain_matches_its_punycode_form(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        await create_contact(client, admin_actor, email="anna@bücher.de")
        again = await client.post(
            "/v1/contacts", headers=admin_actor.headers, json={"email": "Anna@xn--bcher-kva.de"}
        )
        assert again.status_code == 409

    async def test_invalid_address_names_the_field_and_the_reason(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        response = await client.post(
            "/v1/contacts", headers=admin_actor.headers, json={"email": "jane..doe@example.com"}
        )
        assert response.status_code == 422
        assert response.json()["code"] == "invalid_email"
        assert "email:" in response.json()["detail"]
        assert "period" in response.json()["detail"]
        assert await count(db, "contacts") == 0

    async def test_created_contact_emits_its_event_and_a_consent_record(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        created = await create_contact(
            client,
            admin_actor,
            email="ada@example.com",
            first_name="Ada",
            tags=["vip", "vip", "beta"],
            consent={"source": "form", "text": "Send me news", "ip": "203.0.113.9"},
        )
        assert created["tags"] == ["vip", "beta"]
        (event,) = await events_of(db, "contact.created")
        assert event["subject_id"] == created["id"]
        assert event["data"]["contact"]["first_name"] == "Ada"
        assert event["data"]["source"] == "form"
        async with db.engine.connect() as conn:
            record = (
                await conn.execute(
                    text("SELECT status, source, consent_text, host(ip) AS ip FROM consent_records")
                )
            ).one()
        assert tuple(record) == ("active", "form", "Send me news", "203.0.113.9")

    async def test_field_defaults_fill_missing_values(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        await create_field(
            client, admin_actor, "plan", "enum", options=["free", "pro"], default="free"
        )
        created = await create_contact(client, admin_actor, email="a@example.com")
        assert created["attributes"] == {"plan": "free"}
        given = await create_contact(
            client, admin_actor, email="b@example.com", attributes={"plan": "pro"}
        )
        assert given["attributes"] == {"plan": "pro"}

    async def test_unknown_field_and_wrong_type_are_refused_with_the_field_named(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        await create_field(client, admin_actor, "age", "number")
        unknown = await client.post(
            "/v1/contacts",
            headers=admin_actor.headers,
            json={"email": "a@example.com", "attributes": {"shoe_size": 42}},
        )
        assert unknown.status_code == 422
        assert unknown.json()["code"] == "unknown_field"
        assert "attributes.shoe_size" in unknown.json()["detail"]
        wrong = await client.post(
            "/v1/contacts",
            headers=admin_actor.headers,
            json={"email": "a@example.com", "attributes": {"age": "forty"}},
        )
        assert wrong.status_code == 422
        assert wrong.json()["code"] == "invalid_field_value"
        assert "attributes.age: expected a number" in wrong.json()["detail"]
        assert await count(db, "contacts") == 0

    async def test_oversized_value_is_refused_not_stored(
        self, client: httpx.AsyncClient, make_actor: object, admin_actor: Actor, db: Database
    ) -> None:
        await create_field(client, admin_actor, "bio", "text")
        response = await client.post(
            "/v1/contacts",
            headers=admin_actor.headers,
            json={"email": "a@example.com", "attributes": {"bio": "x" * 20_000}},
        )
        assert response.status_code == 422
        assert "longer than 10000" in response.json()["detail"]
        assert await count(db, "contacts") == 0

    async def test_unknown_timezone_is_refused(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await client.post(
            "/v1/contacts",
            headers=admin_actor.headers,
            json={"email": "a@example.com", "timezone": "Mars/Olympus"},
        )
        assert response.status_code == 422
        assert "IANA" in response.text


class TestUpdateContact:
    async def test_patch_changes_only_given_fields_and_null_clears(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        await create_field(client, admin_actor, "plan", "text")
        await create_field(client, admin_actor, "seats", "number")
        created = await create_contact(
            client,
            admin_actor,
            email="a@example.com",
            first_name="Ann",
            last_name="Lee",
            attributes={"plan": "pro", "seats": 3},
        )
        response = await client.patch(
            f"/v1/contacts/{created['id']}",
            headers=admin_actor.headers,
            json={"last_name": None, "attributes": {"seats": None, "plan": "team"}},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["first_name"] == "Ann"
        assert body["last_name"] is None
        assert body["attributes"] == {"plan": "team"}
        (event,) = await events_of(db, "contact.updated")
        assert event["data"]["changes"] == {
            "last_name": {"old": "Lee", "new": None},
            "attributes.plan": {"old": "pro", "new": "team"},
            "attributes.seats": {"old": 3, "new": None},
        }
        fetched = await client.get(f"/v1/contacts/{created['id']}", headers=admin_actor.headers)
        assert fetched.json() == body

    async def test_patch_that_changes_nothing_emits_nothing(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        created = await create_contact(client, admin_actor, email="a@example.com", first_name="A")
        response = await client.patch(
            f"/v1/contacts/{created['id']}", headers=admin_actor.headers, json={"first_name": "A"}
        )
        assert response.status_code == 200
        assert response.json()["updated_at"] == created["updated_at"]
        assert await events_of(db, "contact.updated") == []

    async def test_email_cannot_be_cleared_or_taken_from_another_contact(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        first = await create_contact(client, admin_actor, email="a@example.com")
        await create_contact(client, admin_actor, email="b@example.com")
        cleared = await client.patch(
            f"/v1/contacts/{first['id']}", headers=admin_actor.headers, json={"email": None}
        )
        assert cleared.status_code == 200
        assert cleared.json()["email"] == "a@example.com"
        taken = await client.patch(
            f"/v1/contacts/{first['id']}",
            headers=admin_actor.headers,
            json={"email": "B@example.com"},
        )
        assert taken.status_code == 409
        assert taken.json()["code"] == "contact_exists"

    async def test_unsubscribing_globally_is_a_consent_record_and_an_event(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        created = await create_contact(client, admin_actor, email="a@example.com")
        response = await client.patch(
            f"/v1/contacts/{created['id']}",
            headers=admin_actor.headers,
            json={"status": "unsubscribed", "consent": {"source": "form", "ip": "198.51.100.4"}},
        )
        assert response.json()["status"] == "unsubscribed"
        (event,) = await events_of(db, "contact.unsubscribed")
        assert event["data"]["list_id"] is None
        async with db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text("SELECT status, previous_status, source FROM consent_records ORDER BY id")
                )
            ).all()
        assert [tuple(r) for r in rows] == [
            ("active", None, "api"),
            ("unsubscribed", "active", "form"),
        ]

    async def test_external_ids_per_system_are_set_and_removed(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        created = await create_contact(
            client, admin_actor, email="a@example.com", external_ids={"hubspot": "51"}
        )
        assert created["external_ids"] == {"hubspot": "51"}
        response = await client.patch(
            f"/v1/contacts/{created['id']}",
            headers=admin_actor.headers,
            json={"external_ids": {"hubspot": None, "salesforce": "003xx"}},
        )
        assert response.status_code == 200, response.text
        assert response.json()["external_ids"] == {"salesforce": "003xx"}
        other = await client.post(
            "/v1/contacts",
            headers=admin_actor.headers,
            json={"email": "b@example.com", "external_ids": {"salesforce": "003xx"}},
        )
        assert other.status_code == 409


class TestUpsert:
    async def test_upsert_by_email_creates_then_updates(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        first = await client.put(
            "/v1/contacts/by-email/Ann@Example.com",
            headers=admin_actor.headers,
            json={"first_name": "Ann"},
        )
        assert first.status_code == 201
        second = await client.put(
            "/v1/contacts/by-email/ann@example.com",
            headers=admin_actor.headers,
            json={"last_name": "Lee"},
        )
        assert second.status_code == 200
        assert second.json()["id"] == first.json()["id"]
        assert (second.json()["first_name"], second.json()["last_name"]) == ("Ann", "Lee")

    async def test_upsert_by_external_id_finds_the_contact_and_changes_its_address(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        created = await client.put(
            "/v1/contacts/by-external-id/crm-7",
            headers=admin_actor.headers,
            json={"email": "old@example.com"},
        )
        assert created.status_code == 201
        moved = await client.put(
            "/v1/contacts/by-external-id/crm-7",
            headers=admin_actor.headers,
            json={"email": "new@example.com"},
        )
        assert moved.status_code == 200
        assert moved.json()["email"] == "new@example.com"
        assert moved.json()["id"] == created.json()["id"]

    async def test_upsert_by_external_id_needs_an_address_to_create(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await client.put(
            "/v1/contacts/by-external-id/crm-8", headers=admin_actor.headers, json={}
        )
        assert response.status_code == 422
        assert response.json()["code"] == "email_required"


class TestDelete:
    async def test_deleted_contact_is_gone_and_announced(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        created = await create_contact(client, admin_actor, email="a@example.com")
        response = await client.delete(f"/v1/contacts/{created['id']}", headers=admin_actor.headers)
        assert response.status_code == 204
        gone = await client.get(f"/v1/contacts/{created['id']}", headers=admin_actor.headers)
        assert gone.status_code == 404
        assert gone.json()["code"] == "contact_not_found"
        (event,) = await events_of(db, "contact.deleted")
        assert event["data"]["email"] == "a@example.com"


class TestListContacts:
    async def test_filters_by_status_tag_and_custom_field(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        await create_field(client, admin_actor, "plan", "text")
        a = await create_contact(
            client, admin_actor, email="a@example.com", tags=["vip"], attributes={"plan": "pro"}
        )
        await create_contact(
            client, admin_actor, email="b@example.com", attributes={"plan": "free"}
        )
        c = await create_contact(
            client, admin_actor, email="c@example.com", tags=["vip"], status="unsubscribed"
        )

        async def ids(**params: str) -> list[str]:
            response = await client.get("/v1/contacts", headers=admin_actor.headers, params=params)
            assert response.status_code == 200, response.text
            return [x["id"] for x in response.json()["data"]]

        assert await ids(tag="vip") == [a["id"], c["id"]]
        assert await ids(status="unsubscribed") == [c["id"]]
        assert await ids(where='{"plan": "pro"}') == [a["id"]]
        bad = await client.get("/v1/contacts", headers=admin_actor.headers, params={"where": "[1]"})
        assert bad.status_code == 422

    async def test_pages_cover_every_contact_once(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        made = [
            (await create_contact(client, admin_actor, email=f"p{i}@example.com"))["id"]
            for i in range(7)
        ]
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
            page = (
                await client.get("/v1/contacts", headers=admin_actor.headers, params=params)
            ).json()
            seen += [c["id"] for c in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == made


class TestTimeline:
    async def test_timeline_shows_the_contacts_events_newest_first(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        created = await create_contact(client, admin_actor, email="a@example.com")
        await create_contact(client, admin_actor, email="other@example.com")
        for name in ("B", "C"):
            await client.patch(
                f"/v1/contacts/{created['id']}",
                headers=admin_actor.headers,
                json={"first_name": name},
            )
        first = await client.get(
            f"/v1/contacts/{created['id']}/timeline",
            headers=admin_actor.headers,
            params={"limit": 2},
        )
        body = first.json()
        assert [e["type"] for e in body["data"]] == ["contact.updated", "contact.updated"]
        assert body["data"][0]["data"]["changes"]["first_name"]["new"] == "C"
        rest = await client.get(
            f"/v1/contacts/{created['id']}/timeline",
            headers=admin_actor.headers,
            params={"cursor": body["next_cursor"]},
        )
        assert [e["type"] for e in rest.json()["data"]] == ["contact.created"]
        assert rest.json()["next_cursor"] is None
