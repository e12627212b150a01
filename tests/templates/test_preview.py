"""Previews: sample data, given data, a real contact (read through the
contacts service), a chosen version, layouts, and errors."""

from __future__ import annotations

import httpx

from tests.fixtures.actors import Actor, MakeActor
from tests.templates.helpers import create_template, problem

ORDER = {
    "key": "order",
    "name": "Order confirmation",
    "subject": "Order {{ data.order.id }} for {{ first_name|default('you') }}",
    "html": (
        "<h1>Thanks {{ contact.first_name }}</h1>"
        "<p>Total: {{ data.order.total|money('EUR') }}, placed "
        "{{ data.order.at|datetime('short') }}</p>"
    ),
    "sample_data": {"order": {"id": "A-1", "total": 1234.5, "at": "2026-03-01T23:30:00Z"}},
}


async def _contact(client: httpx.AsyncClient, actor: Actor, **fields: str) -> str:
    response = await client.post("/v1/contacts", headers=actor.headers, json=fields)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


class TestPreview:
    async def test_sample_data_is_used_when_no_data_is_given(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        await create_template(client, admin_actor, **ORDER)
        response = await client.post("/v1/templates/order/preview", headers=admin_actor.headers)
        assert response.status_code == 422  # a body is required
        response = await client.post(
            "/v1/templates/order/preview", headers=admin_actor.headers, json={}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["version"] == 1
        assert body["subject"] == "Order A-1 for you"
        assert body["html"] == (
            "<h1>Thanks </h1><p>Total: €1,234.50, placed 3/1/26, 11:30\u202fPM</p>"
        )
        assert body["text"] == "Thanks\n\nTotal: €1,234.50, placed 3/1/26, 11:30\u202fPM\n"

    async def test_a_contact_gives_names_locale_and_time_zone(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        await create_template(client, admin_actor, **ORDER)
        contact_id = await _contact(
            client,
            admin_actor,
            email="anna@example.com",
            first_name="Anna",
            locale="de-DE",
            timezone="Europe/Berlin",
        )
        response = await client.post(
            "/v1/templates/order/preview",
            headers=admin_actor.headers,
            json={"contact_id": contact_id},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["subject"] == "Order A-1 for Anna"
        assert body["html"] == (
            "<h1>Thanks Anna</h1><p>Total: 1.234,50\u00a0€, placed 02.03.26, 00:30</p>"
        )

    async def test_given_data_replaces_the_sample(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        await create_template(client, admin_actor, **ORDER)
        response = await client.post(
            "/v1/templates/order/preview",
            headers=admin_actor.headers,
            json={"data": {"order": {"id": "B-2", "total": "5", "at": "2026-01-01"}}},
        )
        assert response.json()["subject"] == "Order B-2 for you"

    async def test_a_chosen_version_previews_instead_of_the_active_one(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        await create_template(client, admin_actor, **ORDER)
        await client.post(
            "/v1/templates/order/versions",
            headers=admin_actor.headers,
            json={"subject": "Draft", "text": "draft", "activate": False},
        )
        active = await client.post(
            "/v1/templates/order/preview", headers=admin_actor.headers, json={}
        )
        draft = await client.post(
            "/v1/templates/order/preview", headers=admin_actor.headers, json={"version": 2}
        )
        assert active.json()["version"] == 1
        assert (draft.json()["version"], draft.json()["subject"]) == (2, "Draft")
        missing = await client.post(
            "/v1/templates/order/preview", headers=admin_actor.headers, json={"version": 7}
        )
        problem(missing, 404, "template_version_not_found")

    async def test_a_template_previews_inside_its_layout_and_a_layout_alone(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        await create_template(
            client,
            admin_actor,
            key="base",
            kind="layout",
            html="<div class='frame'>{{ content }}<p>Acme</p></div>",
        )
        await create_template(
            client, admin_actor, key="note", subject="s", html="<p>Hi</p>", layout="base"
        )
        wrapped = await client.post(
            "/v1/templates/note/preview", headers=admin_actor.headers, json={}
        )
        assert wrapped.json()["html"] == "<div class='frame'><p>Hi</p><p>Acme</p></div>"
        alone = await client.post(
            "/v1/templates/base/preview", headers=admin_actor.headers, json={}
        )
        assert alone.status_code == 200, alone.text
        assert "the template's HTML goes here" in alone.json()["html"]

    async def test_render_errors_come_back_with_line_and_column(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        await create_template(
            client,
            admin_actor,
            key="strict",
            subject="s",
            text="Dear {{ first_name }},\nyour code: {{ data.code }}",
            strict=True,
        )
        response = await client.post(
            "/v1/templates/strict/preview",
            headers=admin_actor.headers,
            json={"data": {"first_name": "Al"}},
        )
        body = problem(response, 422, "template_undefined_variable")
        assert body["errors"] == [
            {
                "location": "body.text",
                "field": "text",
                "line": 2,
                "column": 20,
                "message": "'dict object' has no attribute 'code'",
                "name": "code",
            }
        ]
        assert body["detail"] == ("text, line 2, column 20: 'dict object' has no attribute 'code'")


class TestPreviewAccess:
    async def test_a_contact_needs_the_contacts_read_scope(
        self, client: httpx.AsyncClient, admin_actor: Actor, make_actor: MakeActor
    ) -> None:
        await create_template(client, admin_actor, **ORDER)
        contact_id = await _contact(client, admin_actor, email="a@example.com")
        templates_only = await make_actor(
            scopes=["templates:read"], workspace_id=admin_actor.workspace_id
        )
        response = await client.post(
            "/v1/templates/order/preview",
            headers=templates_only.headers,
            json={"contact_id": contact_id},
        )
        problem(response, 403, "missing_scope")
        without_contact = await client.post(
            "/v1/templates/order/preview", headers=templates_only.headers, json={}
        )
        assert without_contact.status_code == 200

    async def test_another_workspaces_contact_is_not_found(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        other_workspace_actor: Actor,
    ) -> None:
        await create_template(client, admin_actor, **ORDER)
        theirs = await _contact(client, other_workspace_actor, email="b@example.com")
        response = await client.post(
            "/v1/templates/order/preview",
            headers=admin_actor.headers,
            json={"contact_id": theirs},
        )
        problem(response, 404, "contact_not_found")
