"""Managing provider webhooks (/v1/provider-webhooks), and the walls
between workspaces: a webhook acts only in its own workspace."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from sqlalchemy import select

from sendstream.core.db import Database
from sendstream.models.provider_webhook import ProviderWebhook
from tests.bounces.providers_support import (
    TOPIC,
    FakeSns,
    SendGridSigner,
    create_webhook,
    fake_sns_fixture,  # noqa: F401 - the fake_sns fixture
    hook_path,
    make_message,
    message_status,
    ses_bounce,
    suppressed,
)
from tests.fixtures.actors import Actor, MakeActor


class TestManagement:
    async def test_create_list_get_delete(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        signer = SendGridSigner()
        created = await create_webhook(
            client, admin_actor, "sendgrid", public_key=signer.public_key
        )
        postmark = await create_webhook(client, admin_actor, "postmark")

        assert created["url"] == f"http://127.0.0.1:8000/hooks/sendgrid/{created['id']}"
        assert created["key_hint"] == "..." + signer.public_key[-4:]
        assert "public_key" not in created
        assert created["password"] is None
        assert postmark["password"]
        assert postmark["username"].startswith("pm_")
        listed = (await client.get("/v1/provider-webhooks", headers=admin_actor.headers)).json()
        assert [w["id"] for w in listed["data"]] == [created["id"], postmark["id"]]
        shown = (
            await client.get(f"/v1/provider-webhooks/{postmark['id']}", headers=admin_actor.headers)
        ).json()
        assert "password" not in shown
        assert shown["counters"] == {"received": 0, "applied": 0, "ignored": 0, "duplicates": 0}

        deleted = await client.delete(
            f"/v1/provider-webhooks/{created['id']}", headers=admin_actor.headers
        )
        assert deleted.status_code == 204
        gone = await client.post(hook_path(created), content=b"[]")
        assert gone.status_code == 404

    async def test_secrets_are_encrypted_at_rest(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        hook = await create_webhook(
            client, admin_actor, "mailgun", signing_key="key-plain-text-123"
        )
        async with db.session() as session:
            stored = await session.scalar(
                select(ProviderWebhook.config_encrypted).where(
                    ProviderWebhook.id == uuid.UUID(hook["id"])
                )
            )
        assert stored is not None
        assert b"key-plain-text-123" not in stored

    @pytest.mark.parametrize(
        ("body", "where"),
        [
            ({"provider": "ses"}, "topic_arns"),
            ({"provider": "sendgrid", "public_key": "bm90IGEga2V5IGF0IGFsbA=="}, "public_key"),
            ({"provider": "mailgun", "topic_arns": [TOPIC], "signing_key": "k" * 20}, "topic_arns"),
            ({"provider": "ses", "topic_arns": ["arn:aws:sqs:eu-west-1:1:x"]}, "topic_arns"),
        ],
    )
    async def test_bad_input_is_a_422_naming_the_field(
        self,
        client: httpx.AsyncClient,
        db: Database,
        admin_actor: Actor,
        body: dict[str, object],
        where: str,
    ) -> None:
        response = await client.post(
            "/v1/provider-webhooks", json={"name": "x", **body}, headers=admin_actor.headers
        )

        assert response.status_code == 422, response.text
        assert where in response.text
        async with db.session() as session:
            assert (await session.scalars(select(ProviderWebhook))).all() == []

    async def test_read_keys_cannot_create(
        self, client: httpx.AsyncClient, member_actor: Actor
    ) -> None:
        response = await client.post(
            "/v1/provider-webhooks",
            json={"provider": "postmark", "name": "x"},
            headers=member_actor.headers,
        )
        assert response.status_code == 403


class TestWorkspaceWalls:
    async def test_another_workspace_cannot_see_the_webhook(
        self, client: httpx.AsyncClient, admin_actor: Actor, make_actor: MakeActor
    ) -> None:
        hook = await create_webhook(client, admin_actor, "postmark")
        other = await make_actor(name="other")

        response = await client.get(f"/v1/provider-webhooks/{hook['id']}", headers=other.headers)

        assert response.status_code == 404
        assert response.json()["code"] == "provider_webhook_not_found"

    async def test_a_webhook_naming_another_workspaces_message_acts_only_in_its_own(
        self,
        client: httpx.AsyncClient,
        db: Database,
        admin_actor: Actor,
        make_actor: MakeActor,
        fake_sns: FakeSns,
    ) -> None:
        theirs = await make_message(db, admin_actor.workspace_id, "ada@a.example")
        other = await make_actor(name="other")
        hook = await create_webhook(client, other, "ses", topic_arns=[TOPIC])
        note = fake_sns.notification(
            ses_bounce("ada@a.example", message_id_header=theirs.message_id_header)
        )

        response = await client.post(hook_path(hook), content=json.dumps(note))

        assert response.status_code == 200, response.text
        assert await message_status(db, theirs.id) == "sent"
        assert await suppressed(db, admin_actor.workspace_id) == {}
        assert await suppressed(db, other.workspace_id) == {"ada@a.example": "bounced"}

    async def test_an_id_under_another_provider_or_unknown_is_404(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        hook = await create_webhook(client, admin_actor, "postmark")

        wrong_provider = await client.post(f"/hooks/mailgun/{hook['id']}", json={})
        unknown = await client.post(f"/hooks/postmark/{uuid.uuid4()}", json={})
        not_an_id = await client.post("/hooks/postmark/nope", json={})

        assert wrong_provider.status_code == unknown.status_code == not_an_id.status_code == 404
