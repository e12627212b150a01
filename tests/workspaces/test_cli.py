"""`sendstream workspaces ...` and `sendstream keys ...` against the test database."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import select

from sendstream.core.db import Database
from sendstream.models.audit import AuditLogEntry
from tests.fixtures.cli import Invoke
from tests.fixtures.cli import stdout_json as _json


class TestWorkspacesCreate:
    async def test_creates_workspace_owner_and_a_working_admin_key(
        self, cli: Invoke, client: httpx.AsyncClient
    ) -> None:
        out = _json(
            await cli(
                "workspaces",
                "create",
                "Acme Inc",
                "--owner-email",
                "Boss@Acme.io",
                "--with-key",
                "--json",
            )
        )
        assert out["workspace"]["slug"] == "acme-inc"
        assert out["owner"]["email"] == "Boss@Acme.io"
        headers = {"Authorization": f"Bearer {out['api_key']['key']}"}
        users = (await client.get("/v1/users", headers=headers)).json()["data"]
        assert [(u["email"], u["role"]) for u in users] == [("Boss@Acme.io", "owner")]

    async def test_duplicate_slug_is_one_clear_error(self, cli: Invoke) -> None:
        assert (await cli("workspaces", "create", "Acme", "--slug", "acme")).exit_code == 0
        again = await cli("workspaces", "create", "Acme 2", "--slug", "acme")
        assert again.exit_code == 1
        assert "workspace_exists" in again.stderr
        assert "Traceback" not in again.output

    async def test_list_shows_created_workspaces(self, cli: Invoke) -> None:
        await cli("workspaces", "create", "One")
        await cli("workspaces", "create", "Two")
        rows = _json(await cli("workspaces", "list", "--json"))
        assert [w["slug"] for w in rows] == ["one", "two"]


class TestKeys:
    async def test_key_is_printed_once_with_a_warning_and_works(
        self, cli: Invoke, client: httpx.AsyncClient
    ) -> None:
        await cli("workspaces", "create", "Acme")
        result = await cli(
            "keys", "create", "--workspace", "acme", "--name", "ci", "--scope", "users:read"
        )
        assert result.exit_code == 0, result.output
        assert "shown once" in result.stderr
        printed = re.search(r"ss_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", result.stdout)
        assert printed is not None, result.stdout
        key = printed[0]
        headers = {"Authorization": f"Bearer {key}"}
        assert (await client.get("/v1/users", headers=headers)).status_code == 200
        assert (await client.get("/v1/api-keys", headers=headers)).status_code == 403
        listed = await cli("keys", "list", "--workspace", "acme", "--json")
        assert key not in listed.stdout
        assert [k["name"] for k in _json(listed)] == ["ci"]

    async def test_default_scope_is_admin(self, cli: Invoke) -> None:
        await cli("workspaces", "create", "Acme")
        out = _json(await cli("keys", "create", "-w", "acme", "-n", "ops", "--json"))
        assert out["scopes"] == ["admin"]

    async def test_revoke_by_prefix_refuses_the_key(
        self, cli: Invoke, client: httpx.AsyncClient
    ) -> None:
        await cli("workspaces", "create", "Acme")
        out = _json(await cli("keys", "create", "-w", "acme", "-n", "ops", "--json"))
        revoked = await cli("keys", "revoke", out["prefix"], "--workspace", "acme")
        assert revoked.exit_code == 0, revoked.output
        response = await client.get(
            "/v1/workspace", headers={"Authorization": f"Bearer {out['key']}"}
        )
        assert response.json()["code"] == "api_key_revoked"

    async def test_key_of_another_workspace_cannot_be_revoked_through_this_one(
        self, cli: Invoke
    ) -> None:
        await cli("workspaces", "create", "Acme")
        await cli("workspaces", "create", "Globex")
        out = _json(await cli("keys", "create", "-w", "acme", "-n", "ops", "--json"))
        result = await cli("keys", "revoke", out["prefix"], "--workspace", "globex")
        assert result.exit_code == 1
        assert "not_found" in result.stderr

    async def test_unknown_scope_lists_the_valid_ones(self, cli: Invoke) -> None:
        await cli("workspaces", "create", "Acme")
        result = await cli("keys", "create", "-w", "acme", "-n", "x", "-s", "contacts:rw")
        assert result.exit_code == 1
        assert "unknown_scope" in result.stderr
        assert "contacts:write" in result.stderr

    async def test_unknown_workspace_is_one_clear_error(self, cli: Invoke) -> None:
        result = await cli("keys", "list", "--workspace", "nope")
        assert result.exit_code == 1
        assert "No workspace 'nope'" in result.stderr


class TestCliAudit:
    async def test_cli_mutations_are_audited_as_cli(self, cli: Invoke, db: Database) -> None:
        await cli("workspaces", "create", "Acme")
        out = _json(await cli("keys", "create", "-w", "acme", "-n", "ops", "--json"))
        await cli("keys", "revoke", out["id"], "-w", "acme")
        await cli("keys", "list", "-w", "acme")
        async with db.session() as session:
            rows = (
                (await session.execute(select(AuditLogEntry).order_by(AuditLogEntry.id)))
                .scalars()
                .all()
            )
        assert [r.action for r in rows] == [
            "cli: workspaces create",
            "cli: keys create",
            "cli: keys revoke",
        ]
        assert {r.actor_type for r in rows} == {"cli"}
        assert rows[2].target == f"api key {out['prefix']}"
