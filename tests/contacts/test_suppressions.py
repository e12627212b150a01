"""The suppression list: the batch check delivery calls (`suppressed_reasons`),
the rules of adding and strengthening entries, and `/v1/suppressions`."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.contacts.addresses import normalize_address
from sendstream.contacts.suppression import (
    address_hash,
    erased_hashes,
    lift_erasure,
    suppress,
    suppressed_reasons,
)
from sendstream.contacts.suppression_service import domain_target, suppression_service
from sendstream.core.db import Database
from tests.contacts.helpers import count, events_of
from tests.fixtures.actors import Actor, MakeActor


def key(address: str) -> str:
    return normalize_address(address).key


async def add(client: httpx.AsyncClient, actor: Actor, **body: Any) -> httpx.Response:
    return await client.post("/v1/suppressions", headers=actor.headers, json=body)


async def rows(db: Database) -> list[dict[str, Any]]:
    async with db.engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT address, domain, reason, source, note FROM suppressions "
                "ORDER BY created_at, address_hash"
            )
        )
        return [dict(r._mapping) for r in result]


class TestSuppressedReasons:
    async def test_addresses_and_domains_answer_in_one_query(
        self, db: Database, admin_actor: Actor
    ) -> None:
        ws = admin_actor.workspace_id
        async with db.session() as session:
            await suppress(session, ws, key("ann@example.com"), "unsubscribed")
            await suppress(session, ws, key("bo@example.com"), "bounced")
            await add_domain(session, ws, "blocked.example", "manual")
        wanted = [
            key("Ann@Example.com"),
            key("bo@example.com"),
            key("cy@example.com"),
            key("anyone@blocked.example"),
            key("else@sub.blocked.example"),
        ]
        statements: list[str] = []

        def seen(*args: Any) -> None:
            statements.append(args[2])

        event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
        try:
            async with db.session() as session:
                found = await suppressed_reasons(session, ws, wanted)
        finally:
            event.remove(db.engine.sync_engine, "before_cursor_execute", seen)

        assert found == {
            "ann@example.com": "unsubscribed",
            "bo@example.com": "bounced",
            "anyone@blocked.example": "manual",
        }
        assert len([s for s in statements if "suppressions" in s]) == 1

    async def test_the_stronger_of_address_and_domain_wins(
        self, db: Database, admin_actor: Actor
    ) -> None:
        ws = admin_actor.workspace_id
        async with db.session() as session:
            await suppress(session, ws, key("ann@example.com"), "unsubscribed")
            await suppress(session, ws, key("bo@example.com"), "complained")
            await add_domain(session, ws, "example.com", "bounced")
            found = await suppressed_reasons(
                session, ws, [key("ann@example.com"), key("bo@example.com")]
            )
        assert found == {"ann@example.com": "bounced", "bo@example.com": "complained"}

    async def test_another_workspace_and_an_empty_batch_find_nothing(
        self, db: Database, admin_actor: Actor, other_workspace_actor: Actor
    ) -> None:
        async with db.session() as session:
            await suppress(session, admin_actor.workspace_id, key("ann@example.com"), "bounced")
            assert await suppressed_reasons(session, admin_actor.workspace_id, []) == {}
            other = await suppressed_reasons(
                session, other_workspace_actor.workspace_id, [key("ann@example.com")]
            )
        assert other == {}

    async def test_internationalised_domains_match_their_addresses(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        response = await add(client, admin_actor, domain="Bücher.example")
        assert response.status_code == 201, response.text
        assert response.json()["domain"] == "xn--bcher-kva.example"
        async with db.session() as session:
            found = await suppressed_reasons(
                session, admin_actor.workspace_id, [key("leser@bücher.example")]
            )
        assert found == {"leser@xn--bcher-kva.example": "manual"}


async def add_domain(
    session: AsyncSession, workspace_id: uuid.UUID, domain: str, reason: str
) -> None:
    await suppression_service.add_suppression(
        session, workspace_id, domain_target(domain), reason=reason, source="manual"
    )


class TestSuppress:
    async def test_a_stronger_reason_replaces_a_weaker_one_never_the_reverse(
        self, db: Database, admin_actor: Actor
    ) -> None:
        ws = admin_actor.workspace_id
        async with db.session() as session:
            await suppress(session, ws, key("ann@example.com"), "unsubscribed")
            await suppress(session, ws, key("ann@example.com"), "bounced", note="5.1.1")
            await suppress(session, ws, key("ann@example.com"), "manual")
        assert await rows(db) == [
            {
                "address": "ann@example.com",
                "domain": None,
                "reason": "bounced",
                "source": "bounce",
                "note": "5.1.1",
            }
        ]
        added = await events_of(db, "suppression.added")
        assert [e["data"]["reason"] for e in added] == ["unsubscribed", "bounced"]
        assert [e["data"]["created"] for e in added] == [True, False]
        assert {e["subject_id"] for e in added} == {address_hash("ann@example.com")}

    async def test_erasure_keeps_only_the_hash_and_blanks_earlier_events(
        self, db: Database, admin_actor: Actor
    ) -> None:
        ws = admin_actor.workspace_id
        async with db.session() as session:
            await suppress(
                session, ws, key("ann@example.com"), "manual", address="Ann@example.com", note="x"
            )
        async with db.session() as session:
            await suppress(session, ws, key("ann@example.com"), "erased")
            assert await erased_hashes(session, ws, [address_hash("ann@example.com")]) == {
                address_hash("ann@example.com")
            }
        assert await rows(db) == [
            {"address": None, "domain": None, "reason": "erased", "source": "erasure", "note": None}
        ]
        added = await events_of(db, "suppression.added")
        assert [e["data"] for e in added] == [{"erased": True}]
        async with db.session() as session:
            await lift_erasure(session, ws, [address_hash("ann@example.com")])
        assert await count(db, "suppressions") == 0

    async def test_gdpr_erasure_through_the_api_turns_an_entry_into_an_erased_one(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        assert (await add(client, admin_actor, address="ann@example.com")).status_code == 201
        erased = await client.post(
            "/v1/contacts/erase", headers=admin_actor.headers, json={"email": "ann@example.com"}
        )
        assert erased.status_code == 200, erased.text
        assert [(r["address"], r["reason"]) for r in await rows(db)] == [(None, "erased")]
        assert "ann@example.com" not in str(await events_of(db))


class TestSuppressionsApi:
    async def test_add_an_address_then_again_is_200_with_the_entry_as_it_stands(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        first = await add(client, admin_actor, address=" Ann@Example.COM ", note="asked by phone")
        assert first.status_code == 201, first.text
        body = first.json()
        assert {k: body[k] for k in ("address", "domain", "reason", "source", "note")} == {
            "address": "Ann@Example.COM",
            "domain": None,
            "reason": "manual",
            "source": "api",
            "note": "asked by phone",
        }
        assert body["address_hash"] == address_hash("ann@example.com")
        again = await add(client, admin_actor, address="ann@example.com", reason="unsubscribed")
        assert again.status_code == 200
        assert again.json()["reason"] == "manual"
        stronger = await add(client, admin_actor, address="ann@example.com", reason="complained")
        assert (stronger.status_code, stronger.json()["reason"]) == (200, "complained")
        assert await count(db, "suppressions") == 1

    @pytest.mark.parametrize(
        ("body", "code"),
        [
            ({"address": "not an address"}, "invalid_email"),
            ({"domain": "no spaces.example"}, "invalid_domain_name"),
            ({"domain": "ann@example.com"}, "invalid_domain_name"),
            ({"address": "a@example.com", "domain": "example.com"}, "validation_error"),
            ({}, "validation_error"),
            ({"address": "a@example.com", "reason": "erased"}, "validation_error"),
        ],
    )
    async def test_bad_input_is_refused_and_nothing_is_written(
        self,
        client: httpx.AsyncClient,
        db: Database,
        admin_actor: Actor,
        body: dict[str, Any],
        code: str,
    ) -> None:
        response = await add(client, admin_actor, **body)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == code
        assert await count(db, "suppressions") == 0

    async def test_list_filters_searches_and_pages_newest_first(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        for i in range(5):
            reason = "bounced" if i % 2 else "manual"
            response = await add(client, admin_actor, address=f"p{i}@example.com", reason=reason)
            assert response.status_code == 201
        assert (await add(client, admin_actor, domain="spam.example")).status_code == 201

        pages: list[str | None] = []
        cursor: str | None = None
        while True:
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = await client.get("/v1/suppressions", headers=admin_actor.headers, params=params)
            assert page.status_code == 200, page.text
            pages += [e["address"] or e["domain"] for e in page.json()["data"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert pages == [
            "spam.example",
            *(f"p{i}@example.com" for i in reversed(range(5))),
        ]
        bounced = await client.get(
            "/v1/suppressions", headers=admin_actor.headers, params={"reason": "bounced"}
        )
        assert [e["address"] for e in bounced.json()["data"]] == [
            "p3@example.com",
            "p1@example.com",
        ]
        search = await client.get(
            "/v1/suppressions", headers=admin_actor.headers, params={"search": "SPAM"}
        )
        assert [e["domain"] for e in search.json()["data"]] == ["spam.example"]
        literal = await client.get(
            "/v1/suppressions", headers=admin_actor.headers, params={"search": "p_@"}
        )
        assert literal.json()["data"] == []
        bad = await client.get(
            "/v1/suppressions", headers=admin_actor.headers, params={"cursor": "bm90LWEtY3Vyc29y"}
        )
        assert (bad.status_code, bad.json()["code"]) == (422, "invalid_cursor")

    async def test_get_an_address_answers_with_its_own_or_its_domains_entry(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        await add(client, admin_actor, address="ann@example.com", reason="unsubscribed")
        await add(client, admin_actor, domain="blocked.example", reason="complained")
        own = await client.get("/v1/suppressions/ANN@example.com", headers=admin_actor.headers)
        assert (own.status_code, own.json()["reason"]) == (200, "unsubscribed")
        by_domain = await client.get(
            "/v1/suppressions/x@blocked.example", headers=admin_actor.headers
        )
        assert by_domain.json()["domain"] == "blocked.example"
        missing = await client.get("/v1/suppressions/bo@example.com", headers=admin_actor.headers)
        assert (missing.status_code, missing.json()["code"]) == (404, "suppression_not_found")
        domain = await client.get(
            "/v1/suppressions/domains/@Blocked.Example", headers=admin_actor.headers
        )
        assert (domain.status_code, domain.json()["reason"]) == (200, "complained")

    async def test_delete_removes_an_address_or_a_domain_and_announces_it(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        await add(client, admin_actor, address="ann@example.com")
        await add(client, admin_actor, domain="example.com")
        gone = await client.delete("/v1/suppressions/Ann@example.com", headers=admin_actor.headers)
        assert gone.status_code == 204, gone.text
        # The domain entry still covers the address.
        still = await client.get("/v1/suppressions/ann@example.com", headers=admin_actor.headers)
        assert still.json()["domain"] == "example.com"
        again = await client.delete("/v1/suppressions/ann@example.com", headers=admin_actor.headers)
        assert (again.status_code, again.json()["code"]) == (404, "suppression_not_found")
        domain = await client.delete(
            "/v1/suppressions/domains/example.com", headers=admin_actor.headers
        )
        assert domain.status_code == 204
        assert await count(db, "suppressions") == 0
        removed = await events_of(db, "suppression.removed")
        assert [(e["data"]["address"], e["data"]["domain"]) for e in removed] == [
            ("ann@example.com", None),
            (None, "example.com"),
        ]

    async def test_an_erased_address_cannot_be_removed(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        async with db.session() as session:
            await suppress(session, admin_actor.workspace_id, "gone@example.com", "erased")
        listed = await client.get("/v1/suppressions", headers=admin_actor.headers)
        assert [(e["address"], e["reason"]) for e in listed.json()["data"]] == [(None, "erased")]
        response = await client.delete(
            "/v1/suppressions/gone@example.com", headers=admin_actor.headers
        )
        assert response.status_code == 409
        assert response.json()["code"] == "erased_address"
        assert await count(db, "suppressions") == 1
        # Adding it again changes nothing: erasure is the strongest reason.
        again = await add(client, admin_actor, address="gone@example.com", reason="bounced")
        assert (again.status_code, again.json()["reason"], again.json()["address"]) == (
            200,
            "erased",
            None,
        )

    async def test_export_streams_the_list_as_csv(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        await add(client, admin_actor, address="ann@example.com", note="line, with comma")
        await add(client, admin_actor, domain="example.org", reason="complained")
        response = await client.get("/v1/suppressions/export", headers=admin_actor.headers)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert [(r["address"], r["domain"], r["reason"], r["note"]) for r in rows] == [
            ("", "example.org", "complained", ""),
            ("ann@example.com", "", "manual", "line, with comma"),
        ]
        only = await client.get(
            "/v1/suppressions/export", headers=admin_actor.headers, params={"reason": "manual"}
        )
        assert len(list(csv.DictReader(io.StringIO(only.text)))) == 1

    async def test_scopes_and_the_audit_log(
        self,
        client: httpx.AsyncClient,
        db: Database,
        admin_actor: Actor,
        make_actor: MakeActor,
    ) -> None:
        reader = await make_actor(
            scopes=["suppressions:read"], workspace_id=admin_actor.workspace_id
        )
        refused = await add(client, reader, address="ann@example.com")
        assert (refused.status_code, refused.json()["code"]) == (403, "missing_scope")
        assert (await client.get("/v1/suppressions", headers=reader.headers)).status_code == 200
        writer = await make_actor(
            scopes=["suppressions:write"], workspace_id=admin_actor.workspace_id
        )
        assert (await add(client, writer, address="ann@example.com")).status_code == 201
        deleted = await client.delete("/v1/suppressions/ann@example.com", headers=writer.headers)
        assert deleted.status_code == 204
        async with db.engine.connect() as conn:
            audit = (
                await conn.execute(
                    text("SELECT action, actor_id, status FROM audit_log ORDER BY id")
                )
            ).all()
        assert [(a.action, a.actor_id, a.status) for a in audit] == [
            ("POST /v1/suppressions", str(writer.api_key_id), 201),
            ("DELETE /v1/suppressions/{address}", str(writer.api_key_id), 204),
        ]
