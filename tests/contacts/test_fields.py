"""Custom fields: declaring, validating, renaming and deleting safely."""

from __future__ import annotations

import httpx

from tests.contacts.helpers import create_contact, create_field
from tests.fixtures.actors import Actor


class TestDeclareField:
    async def test_every_type_validates_its_values(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        cases = {
            "text": ("hello", 5),
            "number": (4.5, "4.5"),
            "boolean": (True, "yes"),
            "date": ("1990-02-28", "31/02/1990"),
            "datetime": ("2026-01-31T09:00:00Z", "2026-01-31T09:00:00"),
            "text_list": (["a", "b"], "a"),
            "json": ({"nested": [1, 2]}, None),
        }
        for type_, (good, bad) in cases.items():
            await create_field(client, admin_actor, f"f_{type_}", type_)
            ok = await client.post(
                "/v1/contacts",
                headers=admin_actor.headers,
                json={"email": f"{type_}@example.com", "attributes": {f"f_{type_}": good}},
            )
            assert ok.status_code == 201, (type_, ok.text)
            if bad is not None:
                refused = await client.post(
                    "/v1/contacts",
                    headers=admin_actor.headers,
                    json={"email": f"bad-{type_}@example.com", "attributes": {f"f_{type_}": bad}},
                )
                assert refused.status_code == 422, type_
                assert f"attributes.f_{type_}" in refused.json()["detail"]

    async def test_enum_needs_options_and_its_default_must_be_one(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        none = await client.post(
            "/v1/fields", headers=admin_actor.headers, json={"key": "plan", "type": "enum"}
        )
        assert none.status_code == 422
        wrong_default = await client.post(
            "/v1/fields",
            headers=admin_actor.headers,
            json={"key": "plan", "type": "enum", "options": ["a"], "default": "b"},
        )
        assert wrong_default.status_code == 422
        assert "default" in wrong_default.json()["detail"]

    async def test_built_in_names_and_duplicates_are_refused(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        built_in = await client.post(
            "/v1/fields", headers=admin_actor.headers, json={"key": "email", "type": "text"}
        )
        assert built_in.status_code == 422
        await create_field(client, admin_actor, "plan", "text")
        again = await client.post(
            "/v1/fields", headers=admin_actor.headers, json={"key": "plan", "type": "number"}
        )
        assert again.status_code == 409
        assert again.json()["code"] == "field_exists"


class TestRenameAndDelete:
    async def test_rename_moves_every_value_to_the_new_key(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        await create_field(client, admin_actor, "plan", "text")
        contact = await create_contact(
            client, admin_actor, email="a@example.com", attributes={"plan": "pro"}
        )
        renamed = await client.patch(
            "/v1/fields/plan", headers=admin_actor.headers, json={"key": "tier"}
        )
        assert renamed.status_code == 200
        assert renamed.json()["key"] == "tier"
        fetched = await client.get(f"/v1/contacts/{contact['id']}", headers=admin_actor.headers)
        assert fetched.json()["attributes"] == {"tier": "pro"}
        assert (await client.get("/v1/fields/plan", headers=admin_actor.headers)).status_code == 404
        filtered = await client.get(
            "/v1/contacts", headers=admin_actor.headers, params={"where": '{"tier": "pro"}'}
        )
        assert [c["id"] for c in filtered.json()["data"]] == [contact["id"]]

    async def test_delete_removes_the_values_and_the_key_becomes_unknown(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        await create_field(client, admin_actor, "plan", "text")
        await create_field(client, admin_actor, "seats", "number")
        contact = await create_contact(
            client, admin_actor, email="a@example.com", attributes={"plan": "pro", "seats": 2}
        )
        deleted = await client.delete("/v1/fields/plan", headers=admin_actor.headers)
        assert deleted.status_code == 204
        fetched = await client.get(f"/v1/contacts/{contact['id']}", headers=admin_actor.headers)
        assert fetched.json()["attributes"] == {"seats": 2}
        write = await client.patch(
            f"/v1/contacts/{contact['id']}",
            headers=admin_actor.headers,
            json={"attributes": {"plan": "x"}},
        )
        assert write.status_code == 422
        assert write.json()["code"] == "unknown_field"

    async def test_an_enum_option_in_use_cannot_be_removed(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        await create_field(client, admin_actor, "plan", "enum", options=["free", "pro", "team"])
        await create_contact(client, admin_actor, email="a@example.com", attributes={"plan": "pro"})
        in_use = await client.patch(
            "/v1/fields/plan", headers=admin_actor.headers, json={"options": ["free", "team"]}
        )
        assert in_use.status_code == 409
        assert in_use.json()["code"] == "field_option_in_use"
        assert "1 contact" in in_use.json()["detail"]
        unused = await client.patch(
            "/v1/fields/plan", headers=admin_actor.headers, json={"options": ["free", "pro"]}
        )
        assert unused.status_code == 200
        assert unused.json()["options"] == ["free", "pro"]


class TestNulCharacters:
    async def test_nul_in_values_filters_and_definitions_is_refused_not_a_server_error(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        await create_field(client, admin_actor, "blob", "json")
        value = await client.post(
            "/v1/contacts",
            headers=admin_actor.headers,
            json={"email": "a@example.com", "attributes": {"blob": {"k": "a\u0000b"}}},
        )
        assert value.status_code == 422
        assert value.json()["code"] == "invalid_field_value"
        where = await client.get(
            "/v1/contacts", headers=admin_actor.headers, params={"where": '{"blob": "\\u0000"}'}
        )
        assert where.status_code == 422
        assert where.json()["code"] == "invalid_where"
        definition = await client.post(
            "/v1/fields",
            headers=admin_actor.headers,
            json={"key": "note", "type": "text", "description": "a\u0000b"},
        )
        assert definition.status_code == 422
