"""Batch upserts: per-item results, valid items apply, and concurrent writers
of one address end with one contact."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from sendstream.core.db import Database
from tests.contacts.helpers import count, create_contact, create_field, events_of
from tests.fixtures.actors import Actor


async def batch(
    client: httpx.AsyncClient, actor: Actor, contacts: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/contacts/batch", headers=actor.headers, json={"contacts": contacts, **extra}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


class TestBatchUpsert:
    async def test_each_item_reports_created_updated_unchanged_or_rejected(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        await create_field(client, admin_actor, "plan", "enum", options=["free", "pro"])
        same = await create_contact(client, admin_actor, email="same@example.com", first_name="S")
        changed = await create_contact(client, admin_actor, email="changed@example.com")
        result = await batch(
            client,
            admin_actor,
            [
                {"email": "new@example.com", "attributes": {"plan": "pro"}},
                {"email": "SAME@example.com", "first_name": "S"},
                {"email": "changed@example.com", "first_name": "C"},
                {"email": "not-an-address"},
                {"email": "bad-plan@example.com", "attributes": {"plan": "gold"}},
                {"email": "typo@example.com", "frist_name": "X"},
                {"email": "new@example.com", "first_name": "again"},
            ],
        )
        statuses = [(r["status"], r.get("code")) for r in result["results"]]
        assert statuses == [
            ("created", None),
            ("unchanged", None),
            ("updated", None),
            ("rejected", "invalid_email"),
            ("rejected", "invalid_field_value"),
            ("rejected", "invalid_contact"),
            ("rejected", "duplicate_in_batch"),
        ]
        assert (result["created"], result["updated"], result["unchanged"], result["rejected"]) == (
            1,
            1,
            1,
            4,
        )
        assert result["results"][1]["id"] == same["id"]
        assert result["results"][2]["id"] == changed["id"]
        assert "frist_name" in result["results"][5]["error"]
        assert "same contact as item 0" in result["results"][6]["error"]
        assert "gold" in result["results"][4]["error"]
        assert await count(db, "contacts") == 3
        created = await events_of(db, "contact.created")
        assert len(created) == 3  # two before the batch, one from it
        assert len(await events_of(db, "contact.updated")) == 1

    async def test_match_by_external_id(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        first = await batch(
            client,
            admin_actor,
            [{"external_id": "c1", "email": "a@example.com"}, {"external_id": "c2"}],
            match="external_id",
        )
        assert [r["status"] for r in first["results"]] == ["created", "rejected"]
        second = await batch(
            client,
            admin_actor,
            [{"external_id": "c1", "first_name": "Ann"}],
            match="external_id",
        )
        assert second["results"][0]["status"] == "updated"
        assert second["results"][0]["id"] == first["results"][0]["id"]

    async def test_more_than_a_thousand_items_is_refused_whole(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        response = await client.post(
            "/v1/contacts/batch",
            headers=admin_actor.headers,
            json={"contacts": [{"email": f"u{i}@example.com"} for i in range(1001)]},
        )
        assert response.status_code in (413, 422)
        assert await count(db, "contacts") == 0


class TestConcurrentWriters:
    async def test_two_clients_upserting_one_address_at_once_make_one_contact(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        # Real concurrency: each request runs in its own transaction on its own
        # connection; both are started before either commits.
        for round_ in range(5):
            email = f"race{round_}@example.com"
            responses = await asyncio.gather(
                *(
                    client.put(
                        f"/v1/contacts/by-email/{email}",
                        headers=admin_actor.headers,
                        json={"first_name": f"writer {n}"},
                    )
                    for n in range(4)
                )
            )
            assert sorted(r.status_code for r in responses)[0] in (200, 201)
            assert all(r.status_code in (200, 201, 503) for r in responses), [
                r.text for r in responses
            ]
            assert sum(r.status_code == 201 for r in responses) == 1
            assert len({r.json()["id"] for r in responses if r.status_code < 300}) == 1
        assert await count(db, "contacts") == 5

    async def test_concurrent_batches_over_the_same_addresses_make_each_contact_once(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        people = [{"email": f"p{i}@example.com"} for i in range(200)]
        results = await asyncio.gather(
            *(batch(client, admin_actor, people[::step]) for step in (1, -1, 2, 1))
        )
        created = sum(r["created"] for r in results)
        assert created == 200
        assert await count(db, "contacts") == 200
        assert all(r["rejected"] == 0 for r in results)
