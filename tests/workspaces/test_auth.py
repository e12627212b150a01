"""The `require_scope` dependency: how keys are read, refused, scoped and recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import structlog
from fastapi import APIRouter, FastAPI, Request
from sqlalchemy import select, update

from sendstream.app import create_app
from sendstream.core.db import Database
from sendstream.core.http import UnitOfWorkRoute
from sendstream.models.api_key import ApiKey
from sendstream.workspaces.auth import Principal, require_scope
from tests.fixtures.actors import Actor, MakeActor


def _probe_router() -> APIRouter:
    """A route only tests mount: it echoes what the dependency established."""
    router = APIRouter(route_class=UnitOfWorkRoute)

    @router.get("/v1/_probe")
    async def probe(request: Request, principal: Principal = require_scope("jobs:read")) -> Any:
        return {
            "workspace_id": str(principal.workspace_id),
            "api_key_id": str(principal.api_key_id),
            "scopes": sorted(principal.scopes),
            "state_is_principal": request.state.principal is principal,
            "log_context": {k: str(v) for k, v in structlog.contextvars.get_contextvars().items()},
        }

    return router


@pytest.fixture
def probe_app(db: Database) -> FastAPI:
    app = create_app(manage_database=False)
    app.include_router(_probe_router())
    return app


@pytest.fixture
async def probe(probe_app: FastAPI) -> Any:
    transport = httpx.ASGITransport(app=probe_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def _assert_401(response: httpx.Response, code: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert response.headers["www-authenticate"].startswith("Bearer")


class TestMissingKey:
    async def test_request_without_authorization_is_refused(
        self, client: httpx.AsyncClient
    ) -> None:
        _assert_401(await client.get("/v1/workspace"), "missing_api_key")

    async def test_empty_authorization_header_counts_as_missing(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/v1/workspace", headers={"Authorization": ""})
        _assert_401(response, "missing_api_key")


class TestInvalidKey:
    @pytest.mark.parametrize(
        "header",
        [
            "Bearer nonsense",
            "Bearer ",
            "Basic dXNlcjpwYXNz",
            "Bearer ss_0123456789ab_" + "A" * 43,
            "Bearer ss_0123456789ab_short",
            "Bearer ss_ZZZZ_" + "A" * 43,
            "ss_0123456789ab_" + "A" * 43,
        ],
    )
    async def test_malformed_or_unknown_key_is_refused(
        self, client: httpx.AsyncClient, db: Database, header: str
    ) -> None:
        response = await client.get("/v1/workspace", headers={"Authorization": header})
        _assert_401(response, "invalid_api_key")

    async def test_known_prefix_with_wrong_secret_is_refused(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        prefix = admin_actor.api_key[: len("ss_0123456789ab_")]
        forged = prefix + "B" * 43
        response = await client.get("/v1/workspace", headers={"Authorization": f"Bearer {forged}"})
        _assert_401(response, "invalid_api_key")

    async def test_scheme_is_case_insensitive(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await client.get(
            "/v1/workspace", headers={"Authorization": f"bearer {admin_actor.api_key}"}
        )
        assert response.status_code == 200


class TestRevokedKey:
    async def test_revoked_key_is_refused(
        self, client: httpx.AsyncClient, admin_actor: Actor, make_actor: MakeActor
    ) -> None:
        victim = await make_actor(scopes=["jobs:read"], workspace_id=admin_actor.workspace_id)
        assert (await client.get("/v1/workspace", headers=victim.headers)).status_code == 200
        revoked = await client.post(
            f"/v1/api-keys/{victim.api_key_id}/revoke", headers=admin_actor.headers
        )
        assert revoked.status_code == 200
        _assert_401(await client.get("/v1/workspace", headers=victim.headers), "api_key_revoked")


class TestExpiredKey:
    async def test_expired_key_is_refused(
        self, client: httpx.AsyncClient, db: Database, make_actor: MakeActor
    ) -> None:
        actor = await make_actor(
            scopes=["admin"], expires_at=datetime.now(UTC) + timedelta(hours=1)
        )
        assert (await client.get("/v1/workspace", headers=actor.headers)).status_code == 200
        async with db.session() as session:
            await session.execute(
                update(ApiKey)
                .where(ApiKey.id == actor.api_key_id)
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        _assert_401(await client.get("/v1/workspace", headers=actor.headers), "api_key_expired")


class TestScopes:
    async def test_missing_scope_is_forbidden_and_names_the_scope(
        self, client: httpx.AsyncClient, member_actor: Actor
    ) -> None:
        response = await client.post(
            "/v1/users", headers=member_actor.headers, json={"email": "a@example.com"}
        )
        assert response.status_code == 403
        body = response.json()
        assert body["code"] == "missing_scope"
        assert "users:write" in body["detail"]

    async def test_exact_scope_is_enough(
        self, probe: httpx.AsyncClient, make_actor: MakeActor
    ) -> None:
        actor = await make_actor(scopes=["jobs:read"])
        assert (await probe.get("/v1/_probe", headers=actor.headers)).status_code == 200

    async def test_admin_implies_every_scope(
        self, probe: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        assert (await probe.get("/v1/_probe", headers=admin_actor.headers)).status_code == 200

    async def test_other_scope_does_not_imply_this_one(
        self, probe: httpx.AsyncClient, make_actor: MakeActor
    ) -> None:
        actor = await make_actor(scopes=["jobs:write", "contacts:read"])
        response = await probe.get("/v1/_probe", headers=actor.headers)
        assert response.status_code == 403
        assert response.json()["code"] == "missing_scope"

    def test_unknown_scope_in_a_router_fails_at_import(self) -> None:
        with pytest.raises(ValueError, match="unknown scope"):
            require_scope("jobs:reed")


class TestPrincipal:
    async def test_principal_is_the_keys_workspace_and_scopes(
        self, probe: httpx.AsyncClient, make_actor: MakeActor
    ) -> None:
        actor = await make_actor(scopes=["jobs:read", "audit:read"])
        body = (await probe.get("/v1/_probe", headers=actor.headers)).json()
        assert body["workspace_id"] == str(actor.workspace_id)
        assert body["api_key_id"] == str(actor.api_key_id)
        assert body["scopes"] == ["audit:read", "jobs:read"]
        assert body["state_is_principal"] is True

    async def test_workspace_id_is_bound_into_the_log_context(
        self, probe: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        body = (await probe.get("/v1/_probe", headers=admin_actor.headers)).json()
        assert body["log_context"]["workspace_id"] == str(admin_actor.workspace_id)
        # ...and unbound afterwards, so it never leaks onto another request's lines.
        assert "workspace_id" not in structlog.contextvars.get_contextvars()


class TestLastUsed:
    async def _row(self, db: Database, actor: Actor) -> ApiKey:
        async with db.session() as session:
            return (
                await session.execute(select(ApiKey).where(ApiKey.id == actor.api_key_id))
            ).scalar_one()

    async def test_first_use_records_time_and_address(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        assert (await self._row(db, admin_actor)).last_used_at is None
        await client.get("/v1/workspace", headers=admin_actor.headers)
        row = await self._row(db, admin_actor)
        assert row.last_used_at is not None
        assert row.last_used_ip == "127.0.0.1"

    async def test_uses_within_a_minute_write_once(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        await client.get("/v1/workspace", headers=admin_actor.headers)
        first = (await self._row(db, admin_actor)).last_used_at
        for _ in range(3):
            await client.get("/v1/workspace", headers=admin_actor.headers)
        assert (await self._row(db, admin_actor)).last_used_at == first

    async def test_use_after_a_minute_is_recorded_again(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        long_ago = datetime.now(UTC) - timedelta(minutes=5)
        async with db.session() as session:
            await session.execute(
                update(ApiKey)
                .where(ApiKey.id == admin_actor.api_key_id)
                .values(last_used_at=long_ago)
            )
        await client.get("/v1/workspace", headers=admin_actor.headers)
        row = await self._row(db, admin_actor)
        assert row.last_used_at is not None
        assert row.last_used_at > long_ago

    async def test_refused_request_still_counts_as_a_use(
        self, client: httpx.AsyncClient, db: Database, member_actor: Actor
    ) -> None:
        response = await client.post(
            "/v1/users", headers=member_actor.headers, json={"email": "a@example.com"}
        )
        assert response.status_code == 403
        assert (await self._row(db, member_actor)).last_used_at is not None


class TestOpenApi:
    async def test_routes_declare_the_bearer_scheme(self, client: httpx.AsyncClient) -> None:
        document = (await client.get("/v1/openapi.json")).json()
        schemes = document["components"]["securitySchemes"]
        assert schemes["ApiKey"] == {
            "type": "http",
            "scheme": "bearer",
            "description": schemes["ApiKey"]["description"],
        }
        assert document["paths"]["/v1/users"]["get"]["security"] == [{"ApiKey": []}]
