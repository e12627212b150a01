"""Template test-sends (`POST /v1/templates/{id}/test-send` and the same for
one version) through the send pipeline to an SMTP server on loopback
(aiosmtpd): the rendered template arrives marked `[Test] `, as a
transactional message, and suppressions of bounces and complaints still
hold."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text

from sendstream.contacts.suppression import suppress
from sendstream.core.db import Database
from sendstream.core.settings import Settings
from tests.delivery.messages_helpers import (
    DOMAIN,
    events_of,
    relay_settings,
    running,
    verified_domain,
)
from tests.fixtures.actors import Actor, MakeActor
from tests.fixtures.smtp import SmtpCapture

TEMPLATE = {
    "key": "receipt",
    "name": "Receipt",
    "subject": "Order {{ order }} for {{ contact.first_name | default('you') }}",
    "html": "<p>Thanks {{ contact.first_name | default('friend') }}, order {{ order }}</p>",
    "from_email": f"shop@{DOMAIN}",
    "from_name": "Shop",
    "headers": {"X-Order": "{{ order }}"},
    "sample_data": {"order": "A-1"},
}


@pytest.fixture
async def sender(db: Database, admin_actor: Actor) -> Actor:
    await verified_domain(db, admin_actor.workspace_id)
    return admin_actor


async def create(client: httpx.AsyncClient, actor: Actor, **fields: Any) -> str:
    made = await client.post("/v1/templates", headers=actor.headers, json={**TEMPLATE, **fields})
    assert made.status_code == 201, made.text
    found: str = made.json()["id"]
    return found


async def post_test_send(
    client: httpx.AsyncClient, actor: Actor, path: str, body: dict[str, Any]
) -> httpx.Response:
    return await client.post(f"/v1/templates/{path}/test-send", headers=actor.headers, json=body)


async def messages(db: Database) -> int:
    async with db.engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM messages")) or 0)


class TestTestSend:
    async def test_the_active_version_arrives_marked_as_a_test_with_sample_data(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_server: SmtpCapture,
    ) -> None:
        await create(client, sender)
        async with running(relay_settings(settings, smtp_server), db):
            response = await post_test_send(
                client, sender, "receipt", {"to": ["qa@example.com", "Dev <dev@example.com>"]}
            )
            assert response.status_code == 202, response.text
            queued = response.json()["messages"]
            mails = await smtp_server.wait_for(2)

        assert sorted(m["to"] for m in queued) == ["dev@example.com", "qa@example.com"]
        by_to = {m.recipients[0]: m for m in mails}
        mail = by_to["qa@example.com"]
        assert mail.message["Subject"] == "[Test] Order A-1 for you"
        assert mail.message["From"] == f"Shop <shop@{DOMAIN}>"
        assert mail.message["X-Order"] == "A-1"
        assert "List-Unsubscribe" not in mail.message
        html = mail.message.get_body(preferencelist=("html",))
        assert html is not None
        assert "Thanks friend, order A-1" in html.get_content()
        assert "order A-1" in mail.text

        message_id = next(m["id"] for m in queued if m["to"] == "qa@example.com")
        read = (await client.get(f"/v1/messages/{message_id}", headers=sender.headers)).json()
        assert read["stream"] == "transactional"
        assert read["tags"] == ["test"]
        assert read["metadata"]["test"] is True
        assert read["metadata"]["template_key"] == "receipt"
        assert read["metadata"]["template_version"] == 1
        queued_event = dict(await events_of(db, message_id))["message.queued"]
        assert queued_event["test"] is True

    async def test_a_version_renders_with_given_data_as_a_contact(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_server: SmtpCapture,
    ) -> None:
        template_id = await create(client, sender)
        second = await client.post(
            f"/v1/templates/{template_id}/versions",
            headers=sender.headers,
            json={
                **{k: v for k, v in TEMPLATE.items() if k not in ("key", "name")},
                "subject": "v2 {{ order }}",
                "activate": True,
            },
        )
        assert second.status_code == 201, second.text
        made = await client.post(
            "/v1/contacts",
            headers=sender.headers,
            json={"email": "ada@example.com", "first_name": "Ada"},
        )
        assert made.status_code == 201, made.text

        async with running(relay_settings(settings, smtp_server), db):
            response = await post_test_send(
                client,
                sender,
                f"{template_id}/versions/1",
                {
                    "to": ["qa@example.com"],
                    "data": {"order": "B-2"},
                    "contact_id": made.json()["id"],
                },
            )
            assert response.status_code == 202, response.text
            [mail] = await smtp_server.wait_for(1)
        assert mail.message["Subject"] == "[Test] Order B-2 for Ada"

    async def test_bounced_and_complained_addresses_are_refused_but_unsubscribed_are_not(
        self, client: httpx.AsyncClient, sender: Actor, db: Database
    ) -> None:
        await create(client, sender)
        async with db.session() as session:
            await suppress(session, sender.workspace_id, "gone@example.com", "bounced")
            await suppress(session, sender.workspace_id, "angry@example.com", "complained")
            await suppress(session, sender.workspace_id, "left@example.com", "unsubscribed")
        for address in ("gone@example.com", "angry@example.com"):
            response = await post_test_send(client, sender, "receipt", {"to": [address]})
            assert response.status_code == 422, response.text
            assert response.json()["code"] == "recipient_suppressed"
        assert await messages(db) == 0
        response = await post_test_send(client, sender, "receipt", {"to": ["left@example.com"]})
        assert response.status_code == 202, response.text

    @pytest.mark.parametrize(
        ("body", "status", "code"),
        [
            ({"to": []}, 422, "validation_error"),
            ({"to": [f"u{i}@example.com" for i in range(6)]}, 422, "validation_error"),
            ({"to": ["qa@example.com"], "data": {}}, 422, "template_undefined_variable"),
        ],
        ids=["no address", "six addresses", "strict template missing a variable"],
    )
    async def test_bad_requests_are_refused_and_queue_nothing(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        body: dict[str, Any],
        status: int,
        code: str,
    ) -> None:
        await create(client, sender, strict=True)
        response = await post_test_send(client, sender, "receipt", body)
        assert response.status_code == status, response.text
        assert response.json()["code"] == code
        assert await messages(db) == 0

    async def test_an_unknown_template_or_version_is_not_found(
        self, client: httpx.AsyncClient, sender: Actor
    ) -> None:
        await create(client, sender)
        missing = await post_test_send(client, sender, "nope", {"to": ["qa@example.com"]})
        assert missing.status_code == 404
        assert missing.json()["code"] == "template_not_found"
        no_version = await post_test_send(
            client, sender, "receipt/versions/9", {"to": ["qa@example.com"]}
        )
        assert no_version.status_code == 404
        assert no_version.json()["code"] == "template_version_not_found"

    @pytest.mark.parametrize(
        ("scopes", "body", "missing"),
        [
            (["templates:write"], {"to": ["qa@example.com"]}, "messages:send"),
            (["messages:send", "templates:read"], {"to": ["qa@example.com"]}, "templates:write"),
            (
                ["templates:write", "messages:send"],
                {"to": ["qa@example.com"], "contact_id": "01a2b3c4-0000-7000-8000-000000000000"},
                "contacts:read",
            ),
        ],
        ids=["without messages:send", "without templates:write", "contact without contacts:read"],
    )
    async def test_scopes(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        make_actor: MakeActor,
        db: Database,
        scopes: list[str],
        body: dict[str, Any],
        missing: str,
    ) -> None:
        await create(client, sender)
        actor = await make_actor(scopes=scopes, workspace_id=sender.workspace_id, key_name="k")
        response = await post_test_send(client, actor, "receipt", body)
        assert response.status_code == 403, response.text
        assert missing in response.json()["detail"]
        assert await messages(db) == 0
