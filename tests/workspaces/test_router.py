"""The workspaces API over HTTP: workspace, users, API keys and the audit log."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, text

from sendstream.core.db import Database
from sendstream.models.api_key import ApiKey
from sendstream.models.audit import AuditLogEntry
from sendstream.models.user import User
from sendstream.workspaces.scopes import SCOPES
from tests.fixtures.actors import Actor, MakeActor


async def _create_key(client: httpx.AsyncClient, actor: Actor, **body: Any) -> httpx.Response:
    payload = {"name": "ci", "scopes": ["contacts:read"], **body}
    return await client.post("/v1/api-keys", headers=actor.headers, json=payload)


async def _audit_rows(db: Database) -> list[AuditLogEntry]:
    async with db.session() as session:
        return list(
            (await session.execute(select(AuditLogEntry).order_by(AuditLogEntry.id))).scalars()
        )


async def _whole_database_text(db: Database) -> str:
    """Every row of every table as text, binary columns decoded too: wherever
    a leaked secret would show."""
    async with db.session() as session:
        columns = await session.execute(
            text(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public'"
            )
        )
        parts: list[str] = []
        for table, column, data_type in list(columns):
            expression = (
                f"encode(\"{column}\", 'escape')" if data_type == "bytea" else f'"{column}"::text'
            )
            rows = await session.execute(text(f'SELECT {expression} FROM "{table}"'))  # noqa: S608
            parts += [str(r[0]) for r in rows]
    return "\n".join(parts)


class TestWorkspace:
    async def test_any_key_reads_its_own_workspace(
        self, client: httpx.AsyncClient, make_actor: MakeActor
    ) -> None:
        actor = await make_actor(scopes=["contacts:read"], name="Initech")
        response = await client.get("/v1/workspace", headers=actor.headers)
        assert response.status_code == 200
        assert response.json()["id"] == str(actor.workspace_id)
        assert response.json()["name"] == "Initech"

    async def test_admin_renames_the_workspace(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await client.patch(
            "/v1/workspace", headers=admin_actor.headers, json={"name": "Acme Ltd"}
        )
        assert response.status_code == 200
        assert (await client.get("/v1/workspace", headers=admin_actor.headers)).json()[
            "name"
        ] == "Acme Ltd"

    async def test_renaming_needs_admin(
        self, client: httpx.AsyncClient, member_actor: Actor
    ) -> None:
        response = await client.patch(
            "/v1/workspace", headers=member_actor.headers, json={"name": "Mine now"}
        )
        assert response.status_code == 403

    async def test_a_name_of_only_spaces_is_refused_by_the_schema(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await client.patch(
            "/v1/workspace", headers=admin_actor.headers, json={"name": " \t "}
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["location"] == "body.name"
        schema = (await client.get("/v1/openapi.json")).json()["components"]["schemas"]
        pattern = schema["WorkspaceUpdate"]["properties"]["name"]["anyOf"][0]["pattern"]
        assert not re.match(pattern, "   ")
        assert re.match(pattern, " Acme ")

    async def test_unknown_field_is_refused(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await client.patch(
            "/v1/workspace", headers=admin_actor.headers, json={"slug": "other"}
        )
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"


class TestCreateApiKey:
    async def test_full_key_is_returned_once_and_works(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        created = await _create_key(client, admin_actor, scopes=["users:read"])
        assert created.status_code == 201
        body = created.json()
        assert body["key"].startswith(body["prefix"] + "_")
        assert created.headers["location"] == f"/v1/api-keys/{body['id']}"
        assert created.headers["cache-control"] == "no-store"
        new_headers = {"Authorization": f"Bearer {body['key']}"}
        assert (await client.get("/v1/users", headers=new_headers)).status_code == 200

    async def test_later_reads_show_the_prefix_only(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        body = (await _create_key(client, admin_actor)).json()
        secret = body["key"]
        one = await client.get(f"/v1/api-keys/{body['id']}", headers=admin_actor.headers)
        listed = await client.get("/v1/api-keys", headers=admin_actor.headers)
        assert one.json()["prefix"] == body["prefix"]
        assert "key" not in one.json()
        for response in (one, listed):
            assert secret not in response.text
            # The secret part may itself hold "_" (URL-safe base64), so cut at the prefix.
            assert secret.removeprefix(body["prefix"] + "_") not in response.text

    async def test_secret_is_stored_only_as_a_hash(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        body = (await _create_key(client, admin_actor)).json()
        secret_part = body["key"].removeprefix(body["prefix"] + "_")
        async with db.session() as session:
            row = (
                await session.execute(select(ApiKey).where(ApiKey.id == body["id"]))
            ).scalar_one()
        stored = " ".join(str(getattr(row, c.key)) for c in ApiKey.__table__.columns)
        assert secret_part not in stored
        assert body["key"] not in stored
        assert len(row.secret_hash) == 64

    async def test_idempotent_retry_returns_the_key_without_its_secret(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        headers = {**admin_actor.headers, "Idempotency-Key": "create-ci-key-1"}
        payload = {"name": "ci", "scopes": ["contacts:read"]}
        first = await client.post("/v1/api-keys", headers=headers, json=payload)
        again = await client.post("/v1/api-keys", headers=headers, json=payload)
        assert first.status_code == again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json()["id"] == first.json()["id"]
        assert again.json()["key"] is None
        secret = first.json()["key"].split("_", 2)[2]
        assert secret not in await _whole_database_text(db)

    async def test_unknown_scope_is_refused_with_the_valid_ones(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await _create_key(client, admin_actor, scopes=["contacts:read", "contacts:rw"])
        assert response.status_code == 422
        body = response.json()
        assert body["code"] == "unknown_scope"
        assert "contacts:rw" in body["detail"]
        assert body["errors"][0]["valid"] == list(SCOPES)

    async def test_key_cannot_grant_scopes_its_creator_lacks(
        self, client: httpx.AsyncClient, make_actor: MakeActor
    ) -> None:
        creator = await make_actor(scopes=["keys:write", "contacts:read"])
        refused = await _create_key(client, creator, scopes=["contacts:read", "contacts:write"])
        assert refused.status_code == 403
        assert refused.json()["code"] == "scope_escalation"
        assert "contacts:write" in refused.json()["detail"]
        escalate_admin = await _create_key(client, creator, scopes=["admin"])
        assert escalate_admin.json()["code"] == "scope_escalation"
        allowed = await _create_key(client, creator, scopes=["contacts:read"])
        assert allowed.status_code == 201

    async def test_expiry_must_be_in_the_future(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        response = await _create_key(client, admin_actor, expires_at=past)
        assert response.status_code == 422
        assert response.json()["code"] == "invalid_expiry"

    async def test_expiring_key_reports_its_expiry(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        later = datetime.now(UTC) + timedelta(days=2)
        body = (await _create_key(client, admin_actor, expires_at=later.isoformat())).json()
        assert datetime.fromisoformat(body["expires_at"]) == later


class TestRevokeApiKey:
    async def test_revoking_twice_keeps_the_first_time(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        key_id = (await _create_key(client, admin_actor)).json()["id"]
        first = await client.post(f"/v1/api-keys/{key_id}/revoke", headers=admin_actor.headers)
        second = await client.post(f"/v1/api-keys/{key_id}/revoke", headers=admin_actor.headers)
        assert first.status_code == second.status_code == 200
        assert first.json()["revoked_at"] is not None
        assert second.json()["revoked_at"] == first.json()["revoked_at"]

    async def test_unknown_key_is_not_found(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await client.post(
            "/v1/api-keys/01a209d9-0000-7000-8000-000000000000/revoke",
            headers=admin_actor.headers,
        )
        assert response.status_code == 404


class TestListApiKeys:
    async def test_pages_cover_every_key_once(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        for _ in range(4):
            await _create_key(client, admin_actor)
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (
                await client.get("/v1/api-keys", headers=admin_actor.headers, params=params)
            ).json()
            seen += [k["id"] for k in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == 5
        assert len(set(seen)) == 5

    async def test_tampered_cursor_is_refused(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await client.get(
            "/v1/api-keys", headers=admin_actor.headers, params={"cursor": "eyJpZCI6IngifQ"}
        )
        assert response.status_code == 422
        assert response.json()["code"] == "invalid_cursor"


class TestUsers:
    async def test_created_user_has_a_verifiable_argon2id_hash(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        from sendstream.core.security import verify_password

        response = await client.post(
            "/v1/users",
            headers=admin_actor.headers,
            json={"email": "  Ada@Example.COM ", "name": "Ada", "password": "analytical engine"},
        )
        assert response.status_code == 201
        body = response.json()
        assert body["email"] == "Ada@Example.COM"
        assert body["has_password"] is True
        assert "password" not in response.text.replace("has_password", "")
        async with db.session() as session:
            row = (await session.execute(select(User).where(User.id == body["id"]))).scalar_one()
        assert row.email_key == "ada@example.com"
        assert row.password_hash is not None
        assert row.password_hash.startswith("$argon2id$")
        assert verify_password(row.password_hash, "analytical engine")

    async def test_same_email_in_other_case_is_a_duplicate(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        first = await client.post(
            "/v1/users", headers=admin_actor.headers, json={"email": "bob@example.com"}
        )
        second = await client.post(
            "/v1/users", headers=admin_actor.headers, json={"email": "BOB@example.com"}
        )
        assert first.status_code == 201
        assert second.status_code == 409
        assert second.json()["code"] == "user_exists"

    async def test_same_email_in_two_workspaces_is_allowed(
        self, client: httpx.AsyncClient, admin_actor: Actor, other_workspace_actor: Actor
    ) -> None:
        for actor in (admin_actor, other_workspace_actor):
            response = await client.post(
                "/v1/users", headers=actor.headers, json={"email": "carol@example.com"}
            )
            assert response.status_code == 201

    async def test_invalid_email_is_refused(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await client.post(
            "/v1/users", headers=admin_actor.headers, json={"email": "not an address"}
        )
        assert response.status_code == 422
        assert response.json()["code"] == "invalid_email"

    async def test_unknown_role_is_refused(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await client.post(
            "/v1/users", headers=admin_actor.headers, json={"email": "d@example.com", "role": "god"}
        )
        assert response.status_code == 422

    async def test_user_is_read_changed_and_deleted(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        headers = admin_actor.headers
        user_id = (
            await client.post("/v1/users", headers=headers, json={"email": "e@example.com"})
        ).json()["id"]
        changed = await client.patch(
            f"/v1/users/{user_id}", headers=headers, json={"role": "admin", "disabled": True}
        )
        assert changed.json()["role"] == "admin"
        assert changed.json()["disabled"] is True
        assert (await client.get(f"/v1/users/{user_id}", headers=headers)).json()["role"] == "admin"
        assert (await client.delete(f"/v1/users/{user_id}", headers=headers)).status_code == 204
        assert (await client.get(f"/v1/users/{user_id}", headers=headers)).status_code == 404

    async def test_list_shows_this_workspaces_users(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        for n in range(3):
            await client.post(
                "/v1/users", headers=admin_actor.headers, json={"email": f"u{n}@example.com"}
            )
        page = (await client.get("/v1/users", headers=admin_actor.headers)).json()
        assert sorted(u["email"] for u in page["data"]) == [
            "u0@example.com",
            "u1@example.com",
            "u2@example.com",
        ]


class TestLastOwner:
    async def _owner(self, client: httpx.AsyncClient, actor: Actor, email: str) -> str:
        response = await client.post(
            "/v1/users", headers=actor.headers, json={"email": email, "role": "owner"}
        )
        return str(response.json()["id"])

    async def test_last_owner_cannot_be_deleted(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        owner = await self._owner(client, admin_actor, "o@example.com")
        response = await client.delete(f"/v1/users/{owner}", headers=admin_actor.headers)
        assert response.status_code == 409
        assert response.json()["code"] == "last_owner"

    async def test_last_owner_cannot_be_demoted_or_disabled(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        owner = await self._owner(client, admin_actor, "o@example.com")
        for change in ({"role": "member"}, {"disabled": True}):
            response = await client.patch(
                f"/v1/users/{owner}", headers=admin_actor.headers, json=change
            )
            assert response.status_code == 409, change
            assert response.json()["code"] == "last_owner"
        user = (await client.get(f"/v1/users/{owner}", headers=admin_actor.headers)).json()
        assert user["role"] == "owner"
        assert user["disabled"] is False

    async def test_an_owner_can_leave_when_another_remains(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        first = await self._owner(client, admin_actor, "o1@example.com")
        await self._owner(client, admin_actor, "o2@example.com")
        response = await client.patch(
            f"/v1/users/{first}", headers=admin_actor.headers, json={"role": "member"}
        )
        assert response.status_code == 200

    async def test_concurrent_removals_keep_one_owner(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        owners = [await self._owner(client, admin_actor, f"o{n}@example.com") for n in range(2)]
        responses = await asyncio.gather(
            *(client.delete(f"/v1/users/{o}", headers=admin_actor.headers) for o in owners)
        )
        assert sorted(r.status_code for r in responses) == [204, 409]


class TestAuditLog:
    async def test_each_mutating_call_is_recorded_with_who_what_where(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        headers = {**admin_actor.headers, "User-Agent": "audit-test/1", "X-Request-Id": "req-42"}
        user_id = (
            await client.post("/v1/users", headers=headers, json={"email": "f@example.com"})
        ).json()["id"]
        await client.patch(f"/v1/users/{user_id}", headers=headers, json={"name": "F"})
        await client.delete(f"/v1/users/{user_id}", headers=headers)
        rows = await _audit_rows(db)
        assert [r.action for r in rows] == [
            "POST /v1/users",
            "PATCH /v1/users/{user_id}",
            "DELETE /v1/users/{user_id}",
        ]
        assert [r.status for r in rows] == [201, 200, 204]
        assert rows[1].target == f"/v1/users/{user_id}"
        for row in rows:
            assert row.workspace_id == admin_actor.workspace_id
            assert row.actor_type == "api_key"
            assert row.actor_id == str(admin_actor.api_key_id)
            assert row.ip == "127.0.0.1"
            assert row.user_agent == "audit-test/1"
            assert row.request_id == "req-42"

    async def test_reads_are_not_recorded(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        for path in ("/v1/workspace", "/v1/users", "/v1/api-keys", "/v1/audit-log"):
            assert (await client.get(path, headers=admin_actor.headers)).status_code == 200
        assert await _audit_rows(db) == []

    async def test_refused_call_leaves_no_entry(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        response = await _create_key(client, admin_actor, scopes=["nope"])
        assert response.status_code == 422
        assert await _audit_rows(db) == []

    async def test_log_reads_newest_first_across_pages(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        for n in range(3):
            await client.post(
                "/v1/users", headers=admin_actor.headers, json={"email": f"g{n}@example.com"}
            )
        first = (
            await client.get("/v1/audit-log", headers=admin_actor.headers, params={"limit": 2})
        ).json()
        second = (
            await client.get(
                "/v1/audit-log",
                headers=admin_actor.headers,
                params={"limit": 2, "cursor": first["next_cursor"]},
            )
        ).json()
        ids = [e["id"] for e in first["data"] + second["data"]]
        assert ids == sorted(ids, reverse=True)
        assert len(ids) == 3
        assert second["next_cursor"] is None

    async def test_filters_by_actor_action_and_time(
        self, client: httpx.AsyncClient, admin_actor: Actor, make_actor: MakeActor
    ) -> None:
        other_key = await make_actor(scopes=["admin"], workspace_id=admin_actor.workspace_id)
        await client.post("/v1/users", headers=admin_actor.headers, json={"email": "h@example.com"})
        await _create_key(client, other_key)
        log = "/v1/audit-log"
        by_actor = (
            await client.get(
                log, headers=admin_actor.headers, params={"actor": str(other_key.api_key_id)}
            )
        ).json()["data"]
        assert [e["action"] for e in by_actor] == ["POST /v1/api-keys"]
        by_action = (
            await client.get(log, headers=admin_actor.headers, params={"action": "POST /v1/users"})
        ).json()["data"]
        assert [e["actor_id"] for e in by_action] == [str(admin_actor.api_key_id)]
        everything = (await client.get(log, headers=admin_actor.headers)).json()["data"]
        newest = datetime.fromisoformat(everything[0]["occurred_at"])
        oldest = datetime.fromisoformat(everything[-1]["occurred_at"])
        in_future = (newest + timedelta(seconds=1)).isoformat()
        before_all = oldest.isoformat()
        assert (
            await client.get(log, headers=admin_actor.headers, params={"since": in_future})
        ).json()["data"] == []
        assert (
            await client.get(log, headers=admin_actor.headers, params={"until": before_all})
        ).json()["data"] == []
        assert (
            len(
                (
                    await client.get(log, headers=admin_actor.headers, params={"since": before_all})
                ).json()["data"]
            )
            == 2
        )

    async def test_reading_needs_audit_scope(
        self, client: httpx.AsyncClient, make_actor: MakeActor
    ) -> None:
        actor = await make_actor(scopes=["users:read"])
        response = await client.get("/v1/audit-log", headers=actor.headers)
        assert response.status_code == 403
        assert "audit:read" in response.json()["detail"]


class TestBadInput:
    async def test_control_characters_in_names_are_refused(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        for path, body in (
            ("/v1/users", {"email": "nul@example.com", "name": "a\x00b"}),
            ("/v1/api-keys", {"name": "line\nbreak", "scopes": ["admin"]}),
        ):
            response = await client.post(path, headers=admin_actor.headers, json=body)
            assert response.status_code == 422, (path, response.text)
            assert response.json()["code"] == "validation_error"

    async def test_out_of_range_audit_cursor_is_refused(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        from sendstream.core.pagination import encode_cursor

        for cursor in ({"id": 10**30}, {"id": True}, {"id": "7"}):
            response = await client.get(
                "/v1/audit-log",
                headers=admin_actor.headers,
                params={"cursor": encode_cursor(cursor)},
            )
            assert response.status_code == 422, cursor
            assert response.json()["code"] == "invalid_cursor"


class TestWorkspaceNameInput:
    async def test_a_nul_in_the_new_name_is_refused_not_a_server_error(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await client.patch(
            "/v1/workspace", headers=admin_actor.headers, json={"name": "\u0000B"}
        )
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"
