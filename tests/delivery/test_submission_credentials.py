"""/v1/smtp-credentials: logins of the submission relay, made and revoked
through the API like API keys (password shown once, hashed at rest, scopes,
audit log, tenant isolation)."""

from __future__ import annotations

import hashlib

import httpx
from sqlalchemy import text

from sendstream.core.db import Database
from tests.fixtures.actors import Actor, MakeActor

URL = "/v1/smtp-credentials"


class TestCreate:
    async def test_password_is_shown_once_and_only_its_hash_is_stored(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        response = await client.post(URL, headers=admin_actor.headers, json={"name": "shop"})
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["username"].startswith("ss-smtp-")
        assert len(created["password"]) >= 40
        assert created["scopes"] == ["messages:send"]
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["location"] == f"{URL}/{created['id']}"

        read = await client.get(f"{URL}/{created['id']}", headers=admin_actor.headers)
        assert "password" not in read.json()
        async with db.engine.connect() as conn:
            stored = (
                await conn.execute(text("SELECT secret_hash FROM smtp_credentials"))
            ).scalar_one()
        assert created["password"] not in stored
        expected = f"{created['username']}\x00{created['password']}".encode()
        assert stored == hashlib.sha256(expected).hexdigest()

    async def test_chosen_username_is_unique_across_workspaces(
        self, client: httpx.AsyncClient, admin_actor: Actor, other_workspace_actor: Actor
    ) -> None:
        body = {"name": "wp", "username": "WordPress-Shop"}
        first = await client.post(URL, headers=admin_actor.headers, json=body)
        assert first.status_code == 201
        assert first.json()["username"] == "wordpress-shop"
        second = await client.post(URL, headers=other_workspace_actor.headers, json=body)
        assert second.status_code == 409
        assert second.json()["code"] == "smtp_username_taken"

    async def test_idempotent_replay_does_not_show_the_password_again(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        headers = {**admin_actor.headers, "Idempotency-Key": "cred-1"}
        first = await client.post(URL, headers=headers, json={"name": "shop"})
        again = await client.post(URL, headers=headers, json={"name": "shop"})
        assert first.json()["password"]
        assert again.json()["id"] == first.json()["id"]
        assert again.json()["password"] is None

    async def test_bad_input_is_refused_with_a_code_and_nothing_written(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        cases = [
            ({"name": "x", "scopes": ["contacts:write"]}, "unknown_scope"),
            ({"name": "x", "username": "ss-smtp-mine"}, "invalid_username"),
            ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, "invalid_expiry"),
            ({"name": "x", "username": "has space"}, "validation_error"),
            ({"name": "x", "allowed_streams": ["bulk"]}, "validation_error"),
        ]
        for body, code in cases:
            response = await client.post(URL, headers=admin_actor.headers, json=body)
            assert response.status_code == 422, body
            assert response.json()["code"] == code, body
        async with db.engine.connect() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM smtp_credentials"))).scalar()
        assert count == 0

    async def test_a_key_cannot_grant_send_it_does_not_hold(
        self, client: httpx.AsyncClient, make_actor: MakeActor
    ) -> None:
        keys_only = await make_actor(scopes=["keys:write"])
        response = await client.post(URL, headers=keys_only.headers, json={"name": "x"})
        assert response.status_code == 403
        assert response.json()["code"] == "scope_escalation"

    async def test_needs_the_keys_write_scope(
        self, client: httpx.AsyncClient, member_actor: Actor
    ) -> None:
        response = await client.post(URL, headers=member_actor.headers, json={"name": "x"})
        assert response.status_code == 403
        assert response.json()["code"] == "missing_scope"


class TestListGetRevoke:
    async def test_list_get_and_revoke_with_audit_entries(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        ids = []
        for name in ("a", "b", "c"):
            response = await client.post(URL, headers=admin_actor.headers, json={"name": name})
            ids.append(response.json()["id"])
        page = await client.get(URL, headers=admin_actor.headers, params={"limit": 2})
        assert [c["id"] for c in page.json()["data"]] == ids[:2]
        rest = await client.get(
            URL, headers=admin_actor.headers, params={"cursor": page.json()["next_cursor"]}
        )
        assert [c["id"] for c in rest.json()["data"]] == ids[2:]

        revoked = await client.delete(f"{URL}/{ids[0]}", headers=admin_actor.headers)
        assert revoked.status_code == 200
        assert revoked.json()["revoked_at"] is not None
        again = await client.delete(f"{URL}/{ids[0]}", headers=admin_actor.headers)
        assert again.json()["revoked_at"] == revoked.json()["revoked_at"]

        audit = await client.get("/v1/audit-log", headers=admin_actor.headers)
        actions = [e["action"] for e in audit.json()["data"]]
        assert actions.count("POST /v1/smtp-credentials") == 3
        assert actions.count("DELETE /v1/smtp-credentials/{credential_id}") == 2

    async def test_another_workspace_sees_none_of_them(
        self, client: httpx.AsyncClient, admin_actor: Actor, other_workspace_actor: Actor
    ) -> None:
        created = (
            await client.post(URL, headers=admin_actor.headers, json={"name": "mine"})
        ).json()
        other = other_workspace_actor.headers
        assert (await client.get(URL, headers=other)).json()["data"] == []
        for method in ("GET", "DELETE"):
            response = await client.request(method, f"{URL}/{created['id']}", headers=other)
            assert response.status_code == 404
            assert response.json()["code"] == "smtp_credential_not_found"
        mine = await client.get(f"{URL}/{created['id']}", headers=admin_actor.headers)
        assert mine.json()["revoked_at"] is None
