"""What a batch writes besides the contacts: one event per change, in item
order, showing the contact exactly as the API reads it, and one consent
record per new contact with the context it came with. Batches of 25 items
take the set-based event write; a single create takes `emit()`; both must
read the same."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text

from sendstream.core.db import Database
from tests.contacts.helpers import create_contact, create_field, events_of
from tests.contacts.test_batch import batch
from tests.fixtures.actors import Actor


def people(count: int, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "email": f"Person{i}@Example.com",
            "first_name": f"First{i}",
            "tags": ["bench", f"cohort{i % 3}"],
            "attributes": {"plan": "pro", "seats": i},
            **extra,
        }
        for i in range(count)
    ]


async def consent_records(db: Database) -> list[dict[str, Any]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT contact_id, list_id, status, previous_status, source, actor, "
                "host(ip) AS ip, user_agent, consent_text FROM consent_records ORDER BY id"
            )
        )
        return [dict(r._mapping) for r in rows]


class TestBatchEvents:
    async def test_created_events_show_each_contact_as_the_api_reads_it(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        await create_field(client, admin_actor, "plan", "enum", options=["free", "pro"])
        await create_field(client, admin_actor, "seats", "number")
        await create_field(client, admin_actor, "region", "text", default="eu")
        items = people(25)
        items[3]["external_id"] = "crm-3"
        items[4]["external_ids"] = {"hubspot": "h-4"}
        result = await batch(client, admin_actor, items)
        assert result["created"] == 25
        created = await events_of(db, "contact.created")
        assert [e["data"]["contact"]["email"] for e in created] == [i["email"] for i in items]
        for event, answer in zip(created, result["results"], strict=True):
            read = await client.get(f"/v1/contacts/{answer['id']}", headers=admin_actor.headers)
            assert event["data"] == {"contact": read.json(), "source": "api"}
            assert event["subject_id"] == answer["id"]
        assert created[4]["data"]["contact"]["external_ids"] == {"hubspot": "h-4"}
        assert created[0]["data"]["contact"]["attributes"] == {
            "plan": "pro",
            "seats": 0,
            "region": "eu",
        }

    async def test_a_single_create_and_a_batch_create_emit_the_same_shape(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        single = await create_contact(client, admin_actor, email="one@example.com")
        await batch(client, admin_actor, people(25))
        created = await events_of(db, "contact.created")
        assert created[0]["data"]["contact"] == single
        assert {frozenset(e["data"]["contact"]) for e in created} == {frozenset(single)}

    async def test_updates_follow_creates_and_keep_item_order(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        await create_field(client, admin_actor, "plan", "enum", options=["free", "pro"])
        await create_field(client, admin_actor, "seats", "number")
        await batch(client, admin_actor, people(20))
        before = len(await events_of(db))
        changed = [{"email": f"person{i}@example.com", "last_name": f"L{i}"} for i in range(20)]
        new = [{"email": f"new{i}@example.com"} for i in range(5)]
        unsubscribe = {"email": "person7@example.com", "status": "unsubscribed"}
        result = await batch(client, admin_actor, [*changed[:7], unsubscribe, *new, *changed[8:]])
        assert (result["created"], result["updated"], result["unchanged"]) == (5, 20, 0)
        events = (await events_of(db))[before:]
        kinds = [e["type"] for e in events]
        assert kinds == [
            *["contact.created"] * 5,
            *["contact.updated"] * 8,
            "contact.unsubscribed",
            *["contact.updated"] * 12,
        ]
        updated = [e for e in events if e["type"] == "contact.updated"]
        assert [e["data"]["email"] for e in updated] == [
            f"Person{i}@Example.com" for i in range(20)
        ]
        assert updated[0]["data"]["changes"] == {"last_name": {"old": None, "new": "L0"}}
        assert updated[7]["data"]["changes"] == {"status": {"old": "active", "new": "unsubscribed"}}

    async def test_a_batch_that_changes_nothing_emits_nothing(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        await create_field(client, admin_actor, "plan", "enum", options=["free", "pro"])
        await create_field(client, admin_actor, "seats", "number")
        await batch(client, admin_actor, people(25))
        before = len(await events_of(db))
        again = await batch(client, admin_actor, people(25))
        assert again["unchanged"] == 25
        assert len(await events_of(db)) == before


class TestBatchConsentRecords:
    async def test_each_new_contact_gets_one_record_with_its_context(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        items: list[dict[str, Any]] = [{"email": f"c{i}@example.com"} for i in range(25)]
        items[2]["consent"] = {
            "source": "form",
            "text": "Send me the newsletter",
            "ip": "203.0.113.9",
            "user_agent": "Mozilla/5.0",
        }
        items[5]["status"] = "unsubscribed"
        result = await batch(client, admin_actor, items)
        ids = [r["id"] for r in result["results"]]
        records = await consent_records(db)
        assert [str(r["contact_id"]) for r in records] == ids
        assert all(r["list_id"] is None and r["previous_status"] is None for r in records)
        assert records[0]["source"] == "api"
        assert records[0]["actor"] == f"api_key:{admin_actor.api_key_id}"
        assert (records[0]["ip"], records[0]["user_agent"], records[0]["consent_text"]) == (
            None,
            None,
            None,
        )
        assert {k: records[2][k] for k in ("source", "ip", "user_agent", "consent_text")} == {
            "source": "form",
            "ip": "203.0.113.9",
            "user_agent": "Mozilla/5.0",
            "consent_text": "Send me the newsletter",
        }
        assert records[5]["status"] == "unsubscribed"
        assert {r["status"] for i, r in enumerate(records) if i != 5} == {"active"}

    async def test_an_existing_address_writes_no_creation_record(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        await batch(client, admin_actor, [{"email": f"c{i}@example.com"} for i in range(25)])
        await batch(client, admin_actor, [{"email": f"C{i}@example.com"} for i in range(30)])
        assert len(await consent_records(db)) == 30
