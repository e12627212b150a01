"""An erased address stays out: no API write brings it back without an
explicit new opt-in, which lifts the erasure."""

from __future__ import annotations

import httpx
from sqlalchemy import text

from sendstream.contacts.addresses import normalize_address
from sendstream.contacts.suppression import address_hash, address_hashes, suppress
from sendstream.core.db import Database
from tests.contacts.helpers import count
from tests.fixtures.actors import Actor


async def _erase(db: Database, actor: Actor, email: str) -> None:
    async with db.session() as session:
        await suppress(session, actor.workspace_id, normalize_address(email).key, "erased")


class TestErasedAddresses:
    async def test_create_upsert_and_batch_refuse_an_erased_address(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        await _erase(db, admin_actor, "gone@example.com")
        create = await client.post(
            "/v1/contacts", headers=admin_actor.headers, json={"email": "Gone@Example.com"}
        )
        assert create.status_code == 409
        assert create.json()["code"] == "contact_erased"
        upsert = await client.put(
            "/v1/contacts/by-email/gone@example.com", headers=admin_actor.headers, json={}
        )
        assert upsert.status_code == 409
        batch = await client.post(
            "/v1/contacts/batch",
            headers=admin_actor.headers,
            json={"contacts": [{"email": "gone@example.com"}, {"email": "kept@example.com"}]},
        )
        assert [r["status"] for r in batch.json()["results"]] == ["rejected", "created"]
        assert batch.json()["results"][0]["code"] == "contact_erased"
        assert await count(db, "contacts") == 1

    async def test_explicit_opt_in_brings_the_person_back_and_lifts_the_erasure(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        await _erase(db, admin_actor, "back@example.com")
        response = await client.post(
            "/v1/contacts",
            headers=admin_actor.headers,
            json={
                "email": "back@example.com",
                "consent": {"source": "form", "explicit_opt_in": True, "text": "Sign me up"},
            },
        )
        assert response.status_code == 201, response.text
        assert await count(db, "suppressions") == 0

    async def test_the_erasure_is_per_workspace_and_stores_no_address(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        other_workspace_actor: Actor,
        db: Database,
    ) -> None:
        await _erase(db, admin_actor, "gone@example.com")
        elsewhere = await client.post(
            "/v1/contacts",
            headers=other_workspace_actor.headers,
            json={"email": "gone@example.com"},
        )
        assert elsewhere.status_code == 201
        async with db.engine.connect() as conn:
            stored = (
                await conn.execute(text("SELECT address_hash FROM suppressions"))
            ).scalar_one()
        assert stored == address_hash("gone@example.com")
        assert "gone" not in stored


class TestAddressHashes:
    def test_bulk_hashes_equal_one_at_a_time_hashes(self) -> None:
        keys = ["a@example.com", "b@example.com"]
        assert address_hashes(keys) == [address_hash(k) for k in keys]
        assert len(set(address_hashes(keys))) == 2
