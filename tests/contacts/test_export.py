"""Contact export through the API: everything, a list's members, a filter;
CSV with one column per custom field, or JSON lines; streamed by COPY."""

from __future__ import annotations

import csv
import io
import json

import httpx
import pytest

from sendstream.core.db import Database
from tests.contacts.helpers import create_field
from tests.contacts.test_import_files import import_bytes
from tests.fixtures.actors import Actor, MakeActor

PEOPLE = (
    "email,first_name,plan,langs,tags\n"
    'ada@example.com,"Lovelace, Ada",pro,en;fr,math;vip\n'
    'bob@example.com,Bob "the" Builder,free,,vip\n'
    "cy@example.com,Cy,,,\n"
)


@pytest.fixture
async def people(client: httpx.AsyncClient, db: Database, admin_actor: Actor) -> None:
    await create_field(client, admin_actor, "plan", "enum", options=["free", "pro"])
    await create_field(client, admin_actor, "langs", "text_list")
    done = await import_bytes(db, admin_actor.workspace_id, PEOPLE.encode())
    assert done.created == 3


def rows(body: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body)))


class TestExport:
    async def test_csv_has_a_column_per_custom_field_and_round_trips(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor, people: None
    ) -> None:
        response = await client.get("/v1/contacts/export", headers=admin_actor.headers)

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        found = {r["email"]: r for r in rows(response.text)}
        assert set(found) == {"ada@example.com", "bob@example.com", "cy@example.com"}
        ada = found["ada@example.com"]
        assert (ada["first_name"], ada["plan"], ada["langs"], ada["tags"]) == (
            "Lovelace, Ada",
            "pro",
            "en;fr",
            "math;vip",
        )
        assert found["bob@example.com"]["first_name"] == 'Bob "the" Builder'

        again = await import_bytes(db, admin_actor.workspace_id, response.content)
        assert (again.status, again.unchanged, again.rejected) == ("completed", 3, 0)

    async def test_json_lines_hold_one_contact_object_per_line(
        self, client: httpx.AsyncClient, admin_actor: Actor, people: None
    ) -> None:
        response = await client.get("/v1/contacts/export?format=jsonl", headers=admin_actor.headers)

        assert response.status_code == 200
        lines = [json.loads(line) for line in response.text.splitlines()]
        ada = next(line for line in lines if line["email"] == "ada@example.com")
        assert ada["attributes"] == {"plan": "pro", "langs": ["en", "fr"]}
        assert ada["tags"] == ["math", "vip"]
        bob = next(line for line in lines if line["email"] == "bob@example.com")
        assert bob["first_name"] == 'Bob "the" Builder'

    async def test_filters_by_tag_and_status(
        self, client: httpx.AsyncClient, admin_actor: Actor, people: None
    ) -> None:
        vip = await client.get("/v1/contacts/export?tag=vip", headers=admin_actor.headers)
        gone = await client.get(
            "/v1/contacts/export?status=unsubscribed", headers=admin_actor.headers
        )

        assert {r["email"] for r in rows(vip.text)} == {"ada@example.com", "bob@example.com"}
        assert rows(gone.text) == []

    async def test_a_list_export_holds_its_subscribed_members_only(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor, people: None
    ) -> None:
        made = await client.post("/v1/lists", headers=admin_actor.headers, json={"name": "L"})
        list_id = made.json()["id"]
        await import_bytes(db, admin_actor.workspace_id, b"email\ncy@example.com\n", list_ref="L")

        response = await client.get(
            f"/v1/contacts/export?list_id={list_id}", headers=admin_actor.headers
        )

        assert [r["email"] for r in rows(response.text)] == ["cy@example.com"]

    async def test_a_nul_in_the_tag_filter_is_a_422_before_anything_streams(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await client.get(
            "/v1/contacts/export", params={"tag": "vip\x00"}, headers=admin_actor.headers
        )
        assert response.status_code == 422
        assert response.json()["code"] == "invalid_text"

    async def test_another_workspaces_list_is_a_404(
        self, client: httpx.AsyncClient, admin_actor: Actor, other_workspace_actor: Actor
    ) -> None:
        made = await client.post("/v1/lists", headers=admin_actor.headers, json={"name": "L"})

        response = await client.get(
            f"/v1/contacts/export?list_id={made.json()['id']}",
            headers=other_workspace_actor.headers,
        )

        assert response.status_code == 404
        assert response.json()["code"] == "list_not_found"

    async def test_export_needs_the_read_scope(
        self, client: httpx.AsyncClient, make_actor: MakeActor, admin_actor: Actor
    ) -> None:
        writer = await make_actor(
            scopes=["contacts:write"], workspace_id=admin_actor.workspace_id, key_name="w"
        )

        response = await client.get("/v1/contacts/export", headers=writer.headers)

        assert response.status_code == 403
