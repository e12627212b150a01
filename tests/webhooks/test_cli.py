"""`sendstream webhooks ...`: the same rules as the API, the secret printed
once, and an audit entry for each change."""

from __future__ import annotations

from sqlalchemy import text

from sendstream.core.db import Database
from sendstream.webhooks import signing
from tests.fixtures.actors import Actor
from tests.fixtures.cli import Invoke, stdout_json

URL = "https://127.0.0.1:9443/hook"


class TestWebhooksCli:
    async def test_create_list_rotate_delete(
        self, cli: Invoke, private_actor: Actor, db: Database
    ) -> None:
        slug = private_actor.workspace_slug
        created = stdout_json(
            await cli("webhooks", "create", URL, "-e", "message.*", "-w", slug, "--json")
        )
        assert signing.parse_secret(created["secret"])
        assert created["event_types"] == ["message.*"]

        listed = stdout_json(await cli("webhooks", "list", "-w", slug, "--json"))
        assert [w["id"] for w in listed] == [created["id"]]
        assert "secret" not in listed[0]

        rotated = stdout_json(
            await cli(
                "webhooks", "rotate", created["id"], "-w", slug, "--overlap-seconds", "60", "--json"
            )
        )
        assert rotated["secret"] != created["secret"]
        assert rotated["previous_secret_expires_at"] is not None

        deleted = await cli("webhooks", "delete", created["id"], "-w", slug)
        assert deleted.exit_code == 0, deleted.output
        assert stdout_json(await cli("webhooks", "list", "-w", slug, "--json")) == []
        async with db.engine.connect() as conn:
            actions = (
                (
                    await conn.execute(
                        text("SELECT action FROM audit_log WHERE actor_type = 'cli' ORDER BY id")
                    )
                )
                .scalars()
                .all()
            )
        assert actions == ["cli: webhooks create", "cli: webhooks rotate", "cli: webhooks delete"]

    async def test_the_api_rules_apply(self, cli: Invoke, admin_actor: Actor) -> None:
        result = await cli(
            "webhooks", "create", URL, "-e", "message.*", "-w", admin_actor.workspace_slug
        )

        assert result.exit_code == 1
        assert "webhook_url_not_allowed" in result.output

    async def test_an_unknown_event_type_is_named(self, cli: Invoke, private_actor: Actor) -> None:
        result = await cli(
            "webhooks",
            "create",
            URL,
            "-e",
            "message.teleported",
            "-w",
            private_actor.workspace_slug,
        )

        assert result.exit_code == 1
        assert "message.teleported" in result.output
