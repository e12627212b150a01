"""The templates API: create, read, list, rename, archive, versions and their
immutability, events."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import event

from sendstream.core.db import Database
from sendstream.templates.errors import TemplateArchived, TemplateNotFound, TemplateNotSendable
from sendstream.templates.render import RenderContext
from sendstream.templates.service import template_service
from tests.fixtures.actors import Actor, MakeActor
from tests.templates.helpers import create_template, events_of, problem

WELCOME = {
    "key": "welcome",
    "name": "Welcome",
    "subject": "Welcome, {{ first_name|default('friend') }}",
    "html": "<p>Hello {{ first_name }}</p>",
    "from_email": "hello@example.com",
    "from_name": "Acme",
    "headers": {"X-Campaign": "welcome-{{ data.cohort }}"},
    "sample_data": {"cohort": "2026"},
}


class TestCreateTemplate:
    async def test_creates_the_template_with_version_one_active(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        response = await client.post("/v1/templates", headers=admin_actor.headers, json=WELCOME)
        assert response.status_code == 201, response.text
        body = response.json()
        assert response.headers["location"] == f"/v1/templates/{body['id']}"
        assert body["key"] == "welcome"
        assert body["kind"] == "template"
        assert body["archived"] is False
        assert body["latest_version"] == 1
        active = body["active_version"]
        assert active["number"] == 1
        assert active["active"] is True
        assert active["subject"] == WELCOME["subject"]
        assert active["from_email"] == "hello@example.com"
        assert active["headers"] == {"X-Campaign": "welcome-{{ data.cohort }}"}
        assert active["created_by"] == f"api_key:{admin_actor.api_key_id}"
        events = await events_of(db, "template.created", "template.version_created")
        assert [e["type"] for e in events] == ["template.created", "template.version_created"]
        assert events[0]["subject_id"] == body["id"]
        assert events[0]["data"]["version"] == {"id": active["id"], "number": 1}
        assert events[1]["data"]["number"] == 1

    async def test_key_is_unique_per_workspace(
        self, client: httpx.AsyncClient, admin_actor: Actor, other_workspace_actor: Actor
    ) -> None:
        await create_template(client, admin_actor, **WELCOME)
        again = await client.post("/v1/templates", headers=admin_actor.headers, json=WELCOME)
        assert "welcome" in problem(again, 409, "template_exists")["detail"]
        await create_template(client, other_workspace_actor, **WELCOME)

    async def test_a_refused_template_leaves_nothing_behind(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        bad = {**WELCOME, "html": "<p>{{ oops </p>"}
        problem(
            await client.post("/v1/templates", headers=admin_actor.headers, json=bad),
            422,
            "template_syntax_error",
        )
        listed = await client.get("/v1/templates", headers=admin_actor.headers)
        assert listed.json()["data"] == []
        assert await events_of(db) == []

    async def test_a_nul_character_inside_sample_data_is_a_clear_422(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        # PostgreSQL's jsonb refuses \u0000 anywhere, a key included.
        bad = {**WELCOME, "sample_data": {"nested": [{"a\u0000b": 1}]}}
        problem(
            await client.post("/v1/templates", headers=admin_actor.headers, json=bad),
            422,
            "invalid_text",
        )
        assert await events_of(db) == []

    async def test_keys_are_slugs_that_do_not_look_like_ids(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        for key in ("Welcome", "a b", "", "0193a1f0-0000-7000-8000-000000000001"):
            response = await client.post(
                "/v1/templates", headers=admin_actor.headers, json={**WELCOME, "key": key}
            )
            problem(response, 422, "validation_error")

    async def test_needs_templates_write(
        self, client: httpx.AsyncClient, member_actor: Actor
    ) -> None:
        response = await client.post("/v1/templates", headers=member_actor.headers, json=WELCOME)
        problem(response, 403, "missing_scope")


class TestReadAndList:
    async def test_get_by_id_or_by_key(
        self, client: httpx.AsyncClient, admin_actor: Actor, member_actor: Actor
    ) -> None:
        created = await create_template(client, admin_actor, **WELCOME)
        for ref in (created["id"], "welcome"):
            response = await client.get(f"/v1/templates/{ref}", headers=member_actor.headers)
            assert response.status_code == 200, response.text
            assert response.json() == created
        missing = await client.get("/v1/templates/nope", headers=member_actor.headers)
        problem(missing, 404, "template_not_found")

    async def test_list_filters_by_kind_and_archived_with_cursor_pages(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        await create_template(client, admin_actor, **WELCOME)
        await create_template(
            client, admin_actor, key="footer", kind="partial", html="<small>Acme</small>"
        )
        await create_template(
            client, admin_actor, key="base", kind="layout", html="<body>{{ content }}</body>"
        )
        await create_template(client, admin_actor, **{**WELCOME, "key": "old"})
        await client.delete("/v1/templates/old", headers=admin_actor.headers)

        async def keys(query: str) -> list[str]:
            response = await client.get(f"/v1/templates?{query}", headers=admin_actor.headers)
            assert response.status_code == 200, response.text
            return [t["key"] for t in response.json()["data"]]

        assert await keys("") == ["welcome", "footer", "base", "old"]
        assert await keys("kind=partial") == ["footer"]
        assert await keys("archived=true") == ["old"]
        assert await keys("archived=false&kind=template") == ["welcome"]
        first = await client.get("/v1/templates?limit=3", headers=admin_actor.headers)
        page = first.json()
        assert [t["key"] for t in page["data"]] == ["welcome", "footer", "base"]
        assert page["data"][0]["active_version_number"] == 1
        rest = await client.get(
            f"/v1/templates?limit=3&cursor={page['next_cursor']}", headers=admin_actor.headers
        )
        assert [t["key"] for t in rest.json()["data"]] == ["old"]
        assert rest.json()["next_cursor"] is None


class TestUpdateAndArchive:
    async def test_patch_changes_name_and_description_only(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        created = await create_template(client, admin_actor, **WELCOME)
        response = await client.patch(
            f"/v1/templates/{created['id']}",
            headers=admin_actor.headers,
            json={"name": "Welcome mail", "description": "Sent on sign-up"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["name"] == "Welcome mail"
        assert response.json()["description"] == "Sent on sign-up"
        assert response.json()["active_version"] == created["active_version"]
        content = await client.patch(
            "/v1/templates/welcome", headers=admin_actor.headers, json={"html": "<p>x</p>"}
        )
        problem(content, 422, "validation_error")

    async def test_archived_template_keeps_its_versions_but_takes_no_new_ones(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        created = await create_template(client, admin_actor, **WELCOME)
        deleted = await client.delete("/v1/templates/welcome", headers=admin_actor.headers)
        assert deleted.status_code == 204
        again = await client.delete("/v1/templates/welcome", headers=admin_actor.headers)
        assert again.status_code == 204
        read = (await client.get("/v1/templates/welcome", headers=admin_actor.headers)).json()
        assert read["archived"] is True
        assert read["archived_at"] is not None
        version = await client.get("/v1/templates/welcome/versions/1", headers=admin_actor.headers)
        assert version.json()["html"] == WELCOME["html"]
        new = await client.post(
            "/v1/templates/welcome/versions",
            headers=admin_actor.headers,
            json={"subject": "s", "text": "t"},
        )
        problem(new, 409, "template_archived")
        activate = await client.post(
            "/v1/templates/welcome/versions/1/activate", headers=admin_actor.headers
        )
        problem(activate, 409, "template_archived")
        async with db.session() as session:
            with pytest.raises(TemplateArchived):
                await template_service.get_renderer(session, admin_actor.workspace_id, "welcome")
            # A message queued before the archive still renders its version.
            renderer = await template_service.get_version_renderer(
                session, admin_actor.workspace_id, created["active_version"]["id"]
            )
        assert renderer.render(RenderContext(contact={"first_name": "Ada"})).subject == (
            "Welcome, Ada"
        )
        events = await events_of(db, "template.archived")
        assert len(events) == 1

    async def test_a_partial_in_use_cannot_be_archived_until_no_live_template_uses_it(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        await create_template(client, admin_actor, key="footer", kind="partial", html="<i>f</i>")
        await create_template(
            client, admin_actor, **{**WELCOME, "html": '<p>x</p>{% include "footer" %}'}
        )
        refused = await client.delete("/v1/templates/footer", headers=admin_actor.headers)
        assert "'welcome'" in problem(refused, 409, "template_in_use")["detail"]
        await client.post(
            "/v1/templates/welcome/versions",
            headers=admin_actor.headers,
            json={"subject": "s", "html": "<p>no footer</p>"},
        )
        archived = await client.delete("/v1/templates/footer", headers=admin_actor.headers)
        assert archived.status_code == 204


class TestVersions:
    async def test_a_new_version_never_changes_an_old_one(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        created = await create_template(client, admin_actor, **WELCOME)
        first = (
            await client.get("/v1/templates/welcome/versions/1", headers=admin_actor.headers)
        ).json()
        response = await client.post(
            "/v1/templates/welcome/versions",
            headers=admin_actor.headers,
            json={"subject": "Hi again {{ first_name }}", "html": "<p>Version two</p>"},
        )
        assert response.status_code == 201, response.text
        second = response.json()
        assert second["number"] == 2
        assert second["active"] is True
        assert response.headers["location"] == "/v1/templates/" + created["id"] + "/versions/2"
        after = (
            await client.get("/v1/templates/welcome/versions/1", headers=admin_actor.headers)
        ).json()
        assert after == {**first, "active": False}
        # Rendering the old version by its id still gives the old content.
        async with db.session() as session:
            old = await template_service.get_version_renderer(
                session, admin_actor.workspace_id, first["id"]
            )
            new = await template_service.get_renderer(session, admin_actor.workspace_id, "welcome")
        context = RenderContext(contact={"first_name": "Ada"})
        assert old.render(context).html == "<p>Hello Ada</p>"
        assert new.render(context).html == "<p>Version two</p>"
        assert old.version_number == 1
        assert new.version_number == 2

    async def test_activate_false_saves_without_switching_and_activate_switches(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        await create_template(client, admin_actor, **WELCOME)
        draft = await client.post(
            "/v1/templates/welcome/versions",
            headers=admin_actor.headers,
            json={"subject": "Draft", "text": "draft", "activate": False},
        )
        assert draft.json()["active"] is False
        read = (await client.get("/v1/templates/welcome", headers=admin_actor.headers)).json()
        assert read["active_version"]["number"] == 1
        assert read["latest_version"] == 2
        switched = await client.post(
            "/v1/templates/welcome/versions/2/activate", headers=admin_actor.headers
        )
        assert switched.status_code == 200, switched.text
        assert switched.json()["active_version"]["number"] == 2
        back = await client.post(
            "/v1/templates/welcome/versions/1/activate", headers=admin_actor.headers
        )
        assert back.json()["active_version"]["number"] == 1
        events = await events_of(db, "template.version_activated")
        assert [e["data"]["number"] for e in events] == [2, 1]
        missing = await client.post(
            "/v1/templates/welcome/versions/9/activate", headers=admin_actor.headers
        )
        problem(missing, 404, "template_version_not_found")

    async def test_versions_list_newest_first_in_pages(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        await create_template(client, admin_actor, **WELCOME)
        for n in range(2, 5):
            await client.post(
                "/v1/templates/welcome/versions",
                headers=admin_actor.headers,
                json={"subject": f"v{n}", "text": "t", "activate": n == 3},
            )
        page = (
            await client.get("/v1/templates/welcome/versions?limit=3", headers=admin_actor.headers)
        ).json()
        assert [(v["number"], v["active"]) for v in page["data"]] == [
            (4, False),
            (3, True),
            (2, False),
        ]
        rest = (
            await client.get(
                f"/v1/templates/welcome/versions?limit=3&cursor={page['next_cursor']}",
                headers=admin_actor.headers,
            )
        ).json()
        assert [v["number"] for v in rest["data"]] == [1]
        assert rest["next_cursor"] is None

    async def test_concurrent_saves_get_distinct_numbers(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        await create_template(client, admin_actor, **WELCOME)
        responses = await asyncio.gather(
            *(
                client.post(
                    "/v1/templates/welcome/versions",
                    headers=admin_actor.headers,
                    json={"subject": f"s{n}", "text": "t"},
                )
                for n in range(5)
            )
        )
        assert sorted(r.json()["number"] for r in responses) == [2, 3, 4, 5, 6]


class TestRenderer:
    async def test_renders_many_times_without_the_database(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        await create_template(client, admin_actor, **WELCOME)
        async with db.session() as session:
            renderer = await template_service.get_renderer(
                session, admin_actor.workspace_id, "welcome"
            )
        statements: list[str] = []

        def count(*args: object) -> None:
            statements.append(str(args[2]))

        event.listen(db.engine.sync_engine, "before_cursor_execute", count)
        try:
            for n in range(100):
                rendered = renderer.render(
                    RenderContext(contact={"first_name": f"P{n}"}, data={"cohort": n})
                )
                assert rendered.subject == f"Welcome, P{n}"
                assert rendered.headers == {"X-Campaign": f"welcome-{n}"}
        finally:
            event.remove(db.engine.sync_engine, "before_cursor_execute", count)
        assert statements == []
        assert rendered.from_ is not None
        assert rendered.from_.email == "hello@example.com"
        assert rendered.text == "Hello P99\n"

    async def test_by_key_id_or_version_number_and_only_sendable_kinds(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        created = await create_template(client, admin_actor, **WELCOME)
        await client.post(
            "/v1/templates/welcome/versions",
            headers=admin_actor.headers,
            json={"subject": "two", "text": "2"},
        )
        await create_template(client, admin_actor, key="footer", kind="partial", text="f")
        ws = admin_actor.workspace_id
        async with db.session() as session:
            by_key = await template_service.get_renderer(session, ws, "welcome")
            by_id = await template_service.get_renderer(session, ws, created["id"])
            first = await template_service.get_renderer(session, ws, "welcome", version=1)
            assert by_key is by_id  # the same cached compiled template
            assert by_key.version_number == 2
            assert first.version_number == 1
            active = await template_service.find_active_version(session, ws, "welcome")
            assert active is not None
            assert active.number == 2
            assert await template_service.find_active_version(session, ws, "footer") is None
            assert await template_service.find_active_version(session, ws, "nope") is None
            with pytest.raises(TemplateNotSendable):
                await template_service.get_renderer(session, ws, "footer")
            with pytest.raises(TemplateNotFound):
                await template_service.get_renderer(session, ws, "nope")

    async def test_a_new_partial_version_reaches_the_next_renderer(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        await create_template(client, admin_actor, key="footer", kind="partial", text="v1")
        await create_template(
            client, admin_actor, key="mail", subject="s", text='body {% include "footer" %}'
        )
        ws = admin_actor.workspace_id
        async with db.session() as session:
            before = await template_service.get_renderer(session, ws, "mail")
        await client.post(
            "/v1/templates/footer/versions", headers=admin_actor.headers, json={"text": "v2"}
        )
        async with db.session() as session:
            after = await template_service.get_renderer(session, ws, "mail")
        assert before.render().text == "body v1"
        assert after.render().text == "body v2"
        assert after.version_ids["mail"] == before.version_ids["mail"]
        assert after.version_ids["footer"] != before.version_ids["footer"]

    async def test_another_workspace_cannot_render_a_template_by_its_id(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        make_actor: MakeActor,
        db: Database,
    ) -> None:
        created = await create_template(client, admin_actor, **WELCOME)
        other = await make_actor(scopes=["admin"], name="globex")
        async with db.session() as session:
            with pytest.raises(TemplateNotFound):
                await template_service.get_renderer(session, other.workspace_id, created["id"])
            with pytest.raises(TemplateNotFound):
                await template_service.get_version_renderer(
                    session, other.workspace_id, created["active_version"]["id"]
                )
