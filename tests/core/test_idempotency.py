"""Idempotency-Key on creates, through real authenticated routes: a test-only
create route mounted on the real app (it emits one event per create, so
"created once" is countable), and the real `POST /v1/api-keys`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Response
from pydantic import BaseModel
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core import outbox
from sendstream.core.db import Database
from sendstream.core.errors import InvalidInput
from sendstream.core.http import UnitOfWorkRoute, get_session
from sendstream.core.idempotency import delete_expired_idempotency_keys
from sendstream.models.api_key import ApiKey
from sendstream.models.event import Event
from sendstream.models.idempotency import IdempotencyKey
from sendstream.workspaces.auth import Principal, require_scope
from tests.fixtures.actors import Actor, MakeActor

THINGS = "/v1/_test/things"


class Controls:
    """Lets a test hold a create mid-transaction or make it fail."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.gate: asyncio.Event | None = None
        self.fail_names: set[str] = set()


class ThingCreate(BaseModel):
    name: str


def things_router(controls: Controls) -> APIRouter:
    router = APIRouter(route_class=UnitOfWorkRoute)

    @router.post(THINGS, status_code=201)
    async def create_thing(
        body: ThingCreate,
        response: Response,
        session: Annotated[AsyncSession, Depends(get_session)],
        principal: Principal = require_scope("events:write"),
    ) -> dict[str, str]:
        outbox.emit(session, principal.workspace_id, "test.thing_created", {"name": body.name})
        await session.flush()
        controls.arrived.set()
        if controls.gate is not None:
            await controls.gate.wait()
        if body.name in controls.fail_names:
            controls.fail_names.discard(body.name)  # fail once, like a transient error
            raise InvalidInput("failing on purpose", code="test_failure")
        thing_id = uuid.uuid4()
        response.headers["Location"] = f"{THINGS}/{thing_id}"
        return {"id": str(thing_id), "name": body.name}

    return router


@pytest.fixture
def controls() -> Controls:
    return Controls()


@pytest.fixture
def things_client_app(app: FastAPI, controls: Controls) -> FastAPI:
    app.include_router(things_router(controls))
    return app


@pytest.fixture
async def things(things_client_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=things_client_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def actor(make_actor: MakeActor) -> Actor:
    return await make_actor(scopes=["admin"])


def with_key(actor: Actor, key: str) -> dict[str, str]:
    return {**actor.headers, "Idempotency-Key": key}


async def created(db: Database, workspace_id: uuid.UUID) -> int:
    async with db.session() as session:
        count = await session.scalar(
            select(func.count()).select_from(Event).where(Event.workspace_id == workspace_id)
        )
    return int(count or 0)


class TestReplay:
    async def test_same_key_and_body_returns_the_stored_response_and_creates_once(
        self, things: httpx.AsyncClient, actor: Actor, db: Database
    ) -> None:
        first = await things.post(THINGS, json={"name": "a"}, headers=with_key(actor, "k1"))
        second = await things.post(THINGS, json={"name": "a"}, headers=with_key(actor, "k1"))
        assert first.status_code == second.status_code == 201
        assert second.content == first.content
        assert second.headers["location"] == first.headers["location"]
        assert second.headers["content-type"] == first.headers["content-type"]
        assert second.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert await created(db, actor.workspace_id) == 1

    async def test_a_replay_still_carries_fresh_ratelimit_headers(
        self, things: httpx.AsyncClient, actor: Actor
    ) -> None:
        await things.post(THINGS, json={"name": "a"}, headers=with_key(actor, "k1"))
        replay = await things.post(THINGS, json={"name": "a"}, headers=with_key(actor, "k1"))
        assert replay.headers.get_list("ratelimit-limit") == [replay.headers["ratelimit-limit"]]
        assert "ratelimit-remaining" in replay.headers

    async def test_requests_without_the_header_are_not_deduplicated(
        self, things: httpx.AsyncClient, actor: Actor, db: Database
    ) -> None:
        for _ in range(2):
            response = await things.post(THINGS, json={"name": "a"}, headers=actor.headers)
            assert response.status_code == 201
        assert await created(db, actor.workspace_id) == 2

    async def test_the_api_key_route_creates_one_key_and_never_stores_its_secret(
        self, client: httpx.AsyncClient, actor: Actor, db: Database
    ) -> None:
        body = {"name": "ci", "scopes": ["contacts:read"]}
        first = await client.post("/v1/api-keys", json=body, headers=with_key(actor, "ci-1"))
        second = await client.post("/v1/api-keys", json=body, headers=with_key(actor, "ci-1"))
        assert first.status_code == 201
        assert second.status_code == 201
        assert second.headers["idempotent-replayed"] == "true"
        assert second.headers["location"] == first.headers["location"]
        # The route stores its response without the secret (store_instead):
        # the full key is shown once and never rests in clear.
        secret = first.json()["key"]
        assert second.json() == {**first.json(), "key": None}
        async with db.session() as session:
            stored = (await session.scalars(select(IdempotencyKey.response_body))).all()
        assert stored
        assert all(secret.encode() not in body for body in stored if body)
        async with db.session() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(ApiKey)
                .where(ApiKey.workspace_id == actor.workspace_id, ApiKey.name == "ci")
            )
        assert count == 1


class TestKeyReuse:
    async def test_same_key_with_a_different_body_is_refused(
        self, things: httpx.AsyncClient, actor: Actor, db: Database
    ) -> None:
        await things.post(THINGS, json={"name": "a"}, headers=with_key(actor, "k1"))
        response = await things.post(THINGS, json={"name": "b"}, headers=with_key(actor, "k1"))
        assert response.status_code == 422
        assert response.json()["code"] == "idempotency_key_reused"
        assert await created(db, actor.workspace_id) == 1

    async def test_same_key_on_another_route_is_refused(
        self, things: httpx.AsyncClient, actor: Actor
    ) -> None:
        await things.post(THINGS, json={"name": "a"}, headers=with_key(actor, "k1"))
        response = await things.post(
            "/v1/api-keys",
            json={"name": "a", "scopes": ["contacts:read"]},
            headers=with_key(actor, "k1"),
        )
        assert response.status_code == 422
        assert response.json()["code"] == "idempotency_key_reused"

    async def test_keys_are_per_workspace(
        self, things: httpx.AsyncClient, make_actor: MakeActor, db: Database
    ) -> None:
        first, second = await make_actor(name="one"), await make_actor(name="two")
        for actor in (first, second):
            response = await things.post(THINGS, json={"name": "a"}, headers=with_key(actor, "k"))
            assert response.status_code == 201
            assert "idempotent-replayed" not in response.headers
        assert await created(db, first.workspace_id) == 1
        assert await created(db, second.workspace_id) == 1

    @pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
    async def test_malformed_key_is_refused(
        self, things: httpx.AsyncClient, actor: Actor, db: Database, key: str
    ) -> None:
        # Raw bytes: httpx would refuse to encode a non-ASCII str itself.
        headers = [(k.encode(), v.encode()) for k, v in actor.headers.items()]
        headers.append((b"idempotency-key", key.encode("latin-1")))
        response = await things.post(THINGS, json={"name": "a"}, headers=headers)
        assert response.status_code == 422
        assert response.json()["code"] == "invalid_idempotency_key"
        assert await created(db, actor.workspace_id) == 0

    async def test_header_is_ignored_on_reads(
        self, things: httpx.AsyncClient, actor: Actor
    ) -> None:
        response = await things.get("/v1/workspace", headers=with_key(actor, "x" * 300))
        assert response.status_code == 200


class TestFailureAndExpiry:
    async def test_a_failed_request_does_not_burn_the_key(
        self, things: httpx.AsyncClient, actor: Actor, controls: Controls, db: Database
    ) -> None:
        controls.fail_names.add("a")
        failed = await things.post(THINGS, json={"name": "a"}, headers=with_key(actor, "k1"))
        assert failed.json()["code"] == "test_failure"
        retried = await things.post(THINGS, json={"name": "a"}, headers=with_key(actor, "k1"))
        assert retried.status_code == 201
        assert "idempotent-replayed" not in retried.headers
        assert await created(db, actor.workspace_id) == 1

    async def test_an_expired_key_is_treated_as_new(
        self, things: httpx.AsyncClient, actor: Actor, db: Database
    ) -> None:
        await things.post(THINGS, json={"name": "a"}, headers=with_key(actor, "k1"))
        async with db.session() as session:
            await session.execute(
                update(IdempotencyKey).values(created_at=func.now() - text("interval '25 hours'"))
            )
        again = await things.post(THINGS, json={"name": "b"}, headers=with_key(actor, "k1"))
        assert again.status_code == 201
        assert again.json()["name"] == "b"
        assert await created(db, actor.workspace_id) == 2

    async def test_cleanup_deletes_only_expired_keys(
        self, things: httpx.AsyncClient, actor: Actor, db: Database
    ) -> None:
        for key in ("old", "new"):
            await things.post(THINGS, json={"name": key}, headers=with_key(actor, key))
        async with db.session() as session:
            await session.execute(
                update(IdempotencyKey)
                .where(IdempotencyKey.key == "old")
                .values(created_at=func.now() - text("interval '25 hours'"))
            )
        async with db.session() as session:
            assert await delete_expired_idempotency_keys(session) == 1
        async with db.session() as session:
            keys = (await session.scalars(select(IdempotencyKey.key))).all()
        assert keys == ["new"]


class TestConcurrentDuplicates:
    async def test_a_duplicate_waits_for_the_first_and_replays_it(
        self, things: httpx.AsyncClient, actor: Actor, controls: Controls, db: Database
    ) -> None:
        one, two = await race_duplicates(things, actor, controls, db)
        assert one.status_code == two.status_code == 201
        assert two.content == one.content
        assert two.headers["idempotent-replayed"] == "true"
        assert await created(db, actor.workspace_id) == 1

    async def test_a_duplicate_of_a_failed_request_runs_itself(
        self, things: httpx.AsyncClient, actor: Actor, controls: Controls, db: Database
    ) -> None:
        controls.fail_names.add("a")
        # The first fails (once) and rolls back; the second then claims the
        # key and runs the create itself.
        failed, succeeded = await race_duplicates(things, actor, controls, db)
        assert failed.json()["code"] == "test_failure"
        assert succeeded.status_code == 201
        assert "idempotent-replayed" not in succeeded.headers
        assert await created(db, actor.workspace_id) == 1


async def race_duplicates(
    things: httpx.AsyncClient, actor: Actor, controls: Controls, db: Database
) -> tuple[httpx.Response, httpx.Response]:
    """Two identical keyed creates: the first is held inside its transaction
    until the second is blocked behind its key, then both are let go."""
    controls.gate = asyncio.Event()
    headers = with_key(actor, "same")
    first = asyncio.create_task(things.post(THINGS, json={"name": "a"}, headers=headers))
    tasks = [first]
    try:
        await asyncio.wait_for(controls.arrived.wait(), timeout=30)
        tasks.append(asyncio.create_task(things.post(THINGS, json={"name": "a"}, headers=headers)))
        await wait_for_a_lock_wait(db)
    finally:
        # Never leave a request parked on the gate for the next test.
        controls.gate.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return tasks[0].result(), tasks[1].result()


async def wait_for_a_lock_wait(db: Database) -> None:
    """Until some backend of this database is blocked on a lock (the second
    request's insert behind the first's uncommitted key)."""
    async with db.engine.connect() as conn:
        for _ in range(1000):
            waiting = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            await conn.rollback()
            if waiting:
                return
            await asyncio.sleep(0.01)
    pytest.fail("the duplicate request never waited on the first one's key")
