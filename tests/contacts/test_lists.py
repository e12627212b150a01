"""Lists and subscriptions over HTTP: list CRUD with subscriber counts,
subscribing and unsubscribing with consent records and events, members,
a contact's subscriptions and consent history."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from sendstream.contacts.consent import ConsentContext
from sendstream.contacts.errors import ListNotFound
from sendstream.contacts.lists import subscription_service
from sendstream.core.db import Database
from tests.contacts.helpers import count, create_contact, events_of
from tests.fixtures.actors import Actor, MakeActor


async def create_list(client: httpx.AsyncClient, actor: Actor, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "Newsletter")
    response = await client.post("/v1/lists", headers=actor.headers, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def put_subscription(
    client: httpx.AsyncClient, actor: Actor, contact_id: str, list_id: str, **body: Any
) -> httpx.Response:
    return await client.put(
        f"/v1/contacts/{contact_id}/subscriptions/{list_id}", headers=actor.headers, json=body
    )


async def consent_rows(db: Database) -> list[dict[str, Any]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT list_id::text AS list_id, status, previous_status, source, actor, "
                "host(ip) AS ip, user_agent, consent_text FROM consent_records ORDER BY id"
            )
        )
        return [dict(r._mapping) for r in rows]


class TestCreateList:
    async def test_new_list_has_defaults_and_zero_counts(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await client.post(
            "/v1/lists", headers=admin_actor.headers, json={"name": "Product news"}
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert response.headers["location"] == f"/v1/lists/{body['id']}"
        assert body["visibility"] == "private"
        assert body["opt_in"] == "single"
        assert body["description"] is None
        assert body["subscribers"] == {
            "subscribed": 0,
            "unconfirmed": 0,
            "unsubscribed": 0,
            "bounced": 0,
            "complained": 0,
        }

    async def test_name_is_unique_per_workspace(
        self, client: httpx.AsyncClient, admin_actor: Actor, other_workspace_actor: Actor
    ) -> None:
        await create_list(client, admin_actor, name="Weekly")
        again = await client.post("/v1/lists", headers=admin_actor.headers, json={"name": "Weekly"})
        assert again.status_code == 409
        assert again.json()["code"] == "list_exists"
        assert "Weekly" in again.json()["detail"]
        await create_list(client, other_workspace_actor, name="Weekly")

    async def test_unknown_attribute_is_refused(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        response = await client.post(
            "/v1/lists", headers=admin_actor.headers, json={"name": "x", "optin": "double"}
        )
        assert response.status_code == 422
        assert await count(db, "lists") == 0

    async def test_read_only_key_cannot_create(
        self, client: httpx.AsyncClient, member_actor: Actor
    ) -> None:
        response = await client.post("/v1/lists", headers=member_actor.headers, json={"name": "x"})
        assert response.status_code == 403
        assert response.json()["code"] == "missing_scope"


class TestReadLists:
    async def test_counts_show_subscriptions_by_state(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        weekly = await create_list(client, admin_actor, name="Weekly")
        for n, status in enumerate(["subscribed", "subscribed", "unsubscribed"]):
            contact = await create_contact(client, admin_actor, email=f"p{n}@example.com")
            response = await put_subscription(
                client, admin_actor, contact["id"], weekly["id"], status=status
            )
            assert response.status_code == 200, response.text
        got = await client.get(f"/v1/lists/{weekly['id']}", headers=admin_actor.headers)
        assert got.json()["subscribers"]["subscribed"] == 2
        assert got.json()["subscribers"]["unsubscribed"] == 1
        listed = await client.get("/v1/lists", headers=admin_actor.headers)
        assert listed.json()["data"][0]["subscribers"]["subscribed"] == 2

    async def test_pages_cover_every_list_once(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        made = [(await create_list(client, admin_actor, name=f"L{n}"))["id"] for n in range(5)]
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            body = (
                await client.get("/v1/lists", headers=admin_actor.headers, params=params)
            ).json()
            seen += [item["id"] for item in body["data"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == made

    async def test_unknown_list_is_a_404_with_its_code(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await client.get(
            "/v1/lists/00000000-0000-7000-8000-000000000000", headers=admin_actor.headers
        )
        assert response.status_code == 404
        assert response.json()["code"] == "list_not_found"


class TestUpdateList:
    async def test_patch_changes_given_fields_and_null_clears_description(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        made = await create_list(client, admin_actor, name="Old", description="About things")
        response = await client.patch(
            f"/v1/lists/{made['id']}",
            headers=admin_actor.headers,
            json={"name": "New", "description": None, "opt_in": "double"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["name"], body["description"], body["opt_in"]) == ("New", None, "double")
        assert body["visibility"] == "private"

    async def test_rename_to_a_taken_name_is_a_conflict(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        await create_list(client, admin_actor, name="A")
        b = await create_list(client, admin_actor, name="B")
        response = await client.patch(
            f"/v1/lists/{b['id']}", headers=admin_actor.headers, json={"name": "A"}
        )
        assert response.status_code == 409
        assert response.json()["code"] == "list_exists"


class TestDeleteList:
    async def test_subscriptions_go_and_consent_history_stays(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        made = await create_list(client, admin_actor)
        contact = await create_contact(client, admin_actor, email="ada@example.com")
        await put_subscription(client, admin_actor, contact["id"], made["id"], status="subscribed")
        response = await client.delete(f"/v1/lists/{made['id']}", headers=admin_actor.headers)
        assert response.status_code == 204
        assert await count(db, "subscriptions") == 0
        records = await consent_rows(db)
        assert [r["status"] for r in records if r["status"] == "subscribed"] == ["subscribed"]
        assert all(r["list_id"] is None for r in records)
        again = await client.get(f"/v1/lists/{made['id']}", headers=admin_actor.headers)
        assert again.status_code == 404


class TestSetSubscription:
    async def test_subscribing_records_consent_and_emits_the_event(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        made = await create_list(client, admin_actor)
        contact = await create_contact(client, admin_actor, email="ada@example.com")
        response = await put_subscription(
            client,
            admin_actor,
            contact["id"],
            made["id"],
            status="subscribed",
            consent={
                "source": "form",
                "text": "Send me the newsletter",
                "ip": "2001:db8::1",
                "user_agent": "Mozilla/5.0",
            },
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "subscribed"
        assert response.json()["list_name"] == "Newsletter"
        record = [r for r in await consent_rows(db) if r["list_id"] == made["id"]]
        assert record == [
            {
                "list_id": made["id"],
                "status": "subscribed",
                "previous_status": None,
                "source": "form",
                "actor": f"key:{admin_actor.api_key_id}",
                "ip": "2001:db8::1",
                "user_agent": "Mozilla/5.0",
                "consent_text": "Send me the newsletter",
            }
        ]
        (event,) = await events_of(db, "contact.subscribed")
        assert event["subject_id"] == contact["id"]
        assert event["data"] == {
            "id": contact["id"],
            "email": "ada@example.com",
            "list_id": made["id"],
            "status": "subscribed",
            "source": "form",
        }

    async def test_asking_again_changes_nothing_and_writes_nothing(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        made = await create_list(client, admin_actor)
        contact = await create_contact(client, admin_actor, email="ada@example.com")
        first = await put_subscription(
            client, admin_actor, contact["id"], made["id"], status="subscribed"
        )
        records = await count(db, "consent_records")
        second = await put_subscription(
            client, admin_actor, contact["id"], made["id"], status="subscribed"
        )
        assert second.status_code == 200
        assert second.json()["updated_at"] == first.json()["updated_at"]
        assert await count(db, "consent_records") == records
        assert len(await events_of(db, "contact.subscribed")) == 1

    async def test_unsubscribe_then_explicit_resubscribe_are_both_recorded(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        made = await create_list(client, admin_actor)
        contact = await create_contact(client, admin_actor, email="ada@example.com")
        cid, lid = contact["id"], made["id"]
        await put_subscription(client, admin_actor, cid, lid, status="subscribed")
        gone = await put_subscription(client, admin_actor, cid, lid, status="unsubscribed")
        assert gone.json()["status"] == "unsubscribed"
        back = await put_subscription(
            client,
            admin_actor,
            cid,
            lid,
            status="subscribed",
            consent={"text": "Yes, again please", "source": "form"},
        )
        assert back.json()["status"] == "subscribed"
        history = [
            (r["previous_status"], r["status"], r["consent_text"])
            for r in await consent_rows(db)
            if r["list_id"] == lid
        ]
        assert history == [
            (None, "subscribed", None),
            ("subscribed", "unsubscribed", None),
            ("unsubscribed", "subscribed", "Yes, again please"),
        ]
        (unsubscribed,) = await events_of(db, "contact.unsubscribed")
        assert unsubscribed["data"]["list_id"] == lid
        assert unsubscribed["data"]["status"] == "unsubscribed"

    async def test_bounced_and_complained_cannot_be_set(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        made = await create_list(client, admin_actor)
        contact = await create_contact(client, admin_actor, email="ada@example.com")
        for status in ("bounced", "complained", "unconfirmed"):
            response = await put_subscription(
                client, admin_actor, contact["id"], made["id"], status=status
            )
            assert response.status_code == 409, response.text
            assert response.json()["code"] == "subscription_status_not_settable"
            assert status in response.json()["detail"]
        assert await count(db, "subscriptions") == 0

    async def test_unknown_list_and_unknown_contact_are_404s(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        made = await create_list(client, admin_actor)
        contact = await create_contact(client, admin_actor, email="ada@example.com")
        nobody = "00000000-0000-7000-8000-000000000000"
        no_list = await put_subscription(
            client, admin_actor, contact["id"], nobody, status="subscribed"
        )
        assert no_list.json()["code"] == "list_not_found"
        no_contact = await put_subscription(
            client, admin_actor, nobody, made["id"], status="subscribed"
        )
        assert no_contact.json()["code"] == "contact_not_found"

    async def test_a_malformed_ip_is_a_validation_error_not_stored(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        made = await create_list(client, admin_actor)
        contact = await create_contact(client, admin_actor, email="ada@example.com")
        response = await put_subscription(
            client,
            admin_actor,
            contact["id"],
            made["id"],
            status="subscribed",
            consent={"ip": "300.1.1.1"},
        )
        assert response.status_code == 422
        assert "consent.ip" in response.json()["detail"]
        assert await count(db, "subscriptions") == 0

    async def test_subscribing_a_globally_unsubscribed_contact_reactivates_it(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        made = await create_list(client, admin_actor)
        contact = await create_contact(client, admin_actor, email="ada@example.com")
        patched = await client.patch(
            f"/v1/contacts/{contact['id']}",
            headers=admin_actor.headers,
            json={"status": "unsubscribed"},
        )
        assert patched.status_code == 200, patched.text
        response = await put_subscription(
            client, admin_actor, contact["id"], made["id"], status="subscribed"
        )
        assert response.status_code == 200
        again = await client.get(f"/v1/contacts/{contact['id']}", headers=admin_actor.headers)
        assert again.json()["status"] == "active"
        global_records = [r for r in await consent_rows(db) if r["list_id"] is None]
        assert (global_records[-1]["previous_status"], global_records[-1]["status"]) == (
            "unsubscribed",
            "active",
        )
        reactivated = [
            e for e in await events_of(db, "contact.subscribed") if e["data"]["list_id"] is None
        ]
        assert [e["data"]["status"] for e in reactivated] == ["active"]


class TestMembers:
    async def test_members_filter_by_state_and_page_by_contact(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        made = await create_list(client, admin_actor)
        ids = []
        for n in range(5):
            contact = await create_contact(client, admin_actor, email=f"p{n}@example.com")
            status = "unsubscribed" if n == 2 else "subscribed"
            await put_subscription(client, admin_actor, contact["id"], made["id"], status=status)
            ids.append(contact["id"])
        seen: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2, "status": "subscribed"}
            if cursor:
                params["cursor"] = cursor
            body = (
                await client.get(
                    f"/v1/lists/{made['id']}/subscriptions",
                    headers=admin_actor.headers,
                    params=params,
                )
            ).json()
            seen += body["data"]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert [m["contact_id"] for m in seen] == sorted(i for n, i in enumerate(ids) if n != 2)
        assert {m["status"] for m in seen} == {"subscribed"}
        assert seen[0]["email"].endswith("@example.com")

    async def test_a_contacts_subscriptions_name_their_lists(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        a = await create_list(client, admin_actor, name="A")
        b = await create_list(client, admin_actor, name="B", opt_in="double")
        contact = await create_contact(client, admin_actor, email="ada@example.com")
        await put_subscription(client, admin_actor, contact["id"], a["id"], status="subscribed")
        await put_subscription(client, admin_actor, contact["id"], b["id"], status="subscribed")
        body = (
            await client.get(
                f"/v1/contacts/{contact['id']}/subscriptions", headers=admin_actor.headers
            )
        ).json()
        assert sorted((s["list_name"], s["status"]) for s in body["data"]) == [
            ("A", "subscribed"),
            ("B", "unconfirmed"),
        ]


class TestConsentHistory:
    async def test_records_are_listed_newest_first_and_never_rewritten(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        made = await create_list(client, admin_actor)
        contact = await create_contact(client, admin_actor, email="ada@example.com")
        url = f"/v1/contacts/{contact['id']}/consent"
        await put_subscription(client, admin_actor, contact["id"], made["id"], status="subscribed")
        before = (await client.get(url, headers=admin_actor.headers)).json()["data"]
        await put_subscription(
            client, admin_actor, contact["id"], made["id"], status="unsubscribed"
        )
        after = (await client.get(url, headers=admin_actor.headers)).json()["data"]
        assert after[0]["status"] == "unsubscribed"
        assert after[0]["previous_status"] == "subscribed"
        assert after[1:] == before
        paged = (await client.get(url, headers=admin_actor.headers, params={"limit": 1})).json()
        assert paged["data"] == after[:1]
        rest = (
            await client.get(
                url, headers=admin_actor.headers, params={"cursor": paged["next_cursor"]}
            )
        ).json()
        assert rest["data"] == after[1:]


class TestSubscribeOnContactCreate:
    async def test_creating_a_contact_with_lists_subscribes_by_each_lists_rule(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        single = await create_list(client, admin_actor, name="Single")
        double = await create_list(client, admin_actor, name="Double", opt_in="double")
        contact = await create_contact(
            client, admin_actor, email="ada@example.com", lists=[single["id"], double["id"]]
        )
        body = (
            await client.get(
                f"/v1/contacts/{contact['id']}/subscriptions", headers=admin_actor.headers
            )
        ).json()
        assert sorted((s["list_name"], s["status"]) for s in body["data"]) == [
            ("Double", "unconfirmed"),
            ("Single", "subscribed"),
        ]
        async with db.engine.connect() as conn:
            jobs = (await conn.execute(text("SELECT kind, payload FROM jobs ORDER BY id"))).all()
        assert [(k, p["list_id"]) for k, p in jobs] == [
            ("contacts.send_confirmation", double["id"])
        ]

    async def test_unknown_list_raises_and_a_subscribed_contact_stays_subscribed(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database, make_actor: MakeActor
    ) -> None:
        made = await create_list(client, admin_actor)
        contact = await create_contact(client, admin_actor, email="ada@example.com")
        await put_subscription(client, admin_actor, contact["id"], made["id"], status="subscribed")
        records = await count(db, "consent_records")
        other = await make_actor()
        other_list = await create_list(client, other, name="Theirs")
        context = ConsentContext(source="api")
        contact_id = uuid.UUID(contact["id"])
        async with db.session() as session:
            await subscription_service.subscribe(
                session, admin_actor.workspace_id, contact_id, [uuid.UUID(made["id"])], context
            )
        assert await count(db, "consent_records") == records
        async with db.session() as session:
            with pytest.raises(ListNotFound):
                await subscription_service.subscribe(
                    session,
                    admin_actor.workspace_id,
                    contact_id,
                    [uuid.UUID(other_list["id"])],
                    context,
                )
