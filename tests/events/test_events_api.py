"""GET /v1/events: the workspace's event stream in position order, with
cursor pages, resuming after a stored position, and filters by type
(exact, `prefix.*`, repeated), contact, message and time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from sendstream.core.db import Database
from sendstream.core.outbox import emit
from tests.fixtures.actors import Actor, MakeActor

CONTACT = uuid.uuid4()
MESSAGE = uuid.uuid4()
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

# (type, subject_type, subject_id, data, hours after T0)
STREAM: list[tuple[str, str | None, uuid.UUID | None, dict[str, Any], int]] = [
    ("contact.created", "contact", CONTACT, {"contact": {"id": str(CONTACT)}}, 0),
    ("message.queued", "message", MESSAGE, {"message_id": str(MESSAGE)}, 1),
    ("message.sent", "message", MESSAGE, {"message_id": str(MESSAGE)}, 2),
    (
        "message.opened",
        "message",
        MESSAGE,
        {"message_id": str(MESSAGE), "contact_id": str(CONTACT)},
        3,
    ),
    ("contact.updated", "contact", uuid.uuid4(), {"changes": {}}, 4),
    ("template.created", "template", uuid.uuid4(), {"key": "welcome"}, 5),
    ("message.sent", "message", uuid.uuid4(), {"message_id": "another"}, 6),
]


async def emit_stream(db: Database, workspace_id: uuid.UUID) -> None:
    async with db.session() as session:
        for kind, subject_type, subject_id, data, hours in STREAM:
            emit(
                session,
                workspace_id,
                kind,
                data,
                subject_type=subject_type,
                subject_id=subject_id,
                occurred_at=T0 + timedelta(hours=hours),
            )


async def read(
    client: httpx.AsyncClient, actor: Actor, **params: Any
) -> tuple[list[dict[str, Any]], str | None]:
    response = await client.get("/v1/events", headers=actor.headers, params=params)
    assert response.status_code == 200, response.text
    page = response.json()
    return page["data"], page["next_cursor"]


def positions(events: list[dict[str, Any]]) -> list[int]:
    return [e["position"] for e in events]


@pytest.fixture
async def stream(db: Database, admin_actor: Actor) -> Actor:
    await emit_stream(db, admin_actor.workspace_id)
    return admin_actor


class TestReadingTheStream:
    async def test_events_come_in_position_order_with_every_field(
        self, client: httpx.AsyncClient, stream: Actor
    ) -> None:
        events, cursor = await read(client, stream)

        assert positions(events) == [1, 2, 3, 4, 5, 6, 7]
        assert cursor is None
        first = events[0]
        assert first["type"] == "contact.created"
        assert (first["subject_type"], first["subject_id"]) == ("contact", str(CONTACT))
        assert first["data"] == {"contact": {"id": str(CONTACT)}}
        assert datetime.fromisoformat(first["occurred_at"]) == T0

    async def test_pages_follow_the_cursor_without_gaps_or_repeats(
        self, client: httpx.AsyncClient, stream: Actor
    ) -> None:
        seen: list[int] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 3}
            if cursor:
                params["cursor"] = cursor
            events, cursor = await read(client, stream, **params)
            seen += positions(events)
            pages += 1
            if cursor is None:
                break

        assert seen == [1, 2, 3, 4, 5, 6, 7]
        assert pages == 3

    async def test_after_position_resumes_where_a_client_stopped(
        self, client: httpx.AsyncClient, stream: Actor, db: Database
    ) -> None:
        events, _ = await read(client, stream, after_position=5)
        assert positions(events) == [6, 7]

        await emit_stream(db, stream.workspace_id)
        events, _ = await read(client, stream, after_position=7, limit=2)
        assert positions(events) == [8, 9]

    async def test_an_events_api_call_sees_events_the_api_caused(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        created = await client.post(
            "/v1/contacts", headers=admin_actor.headers, json={"email": "ada@example.com"}
        )
        assert created.status_code == 201, created.text

        events, _ = await read(client, admin_actor, type="contact.created")

        assert [e["subject_id"] for e in events] == [created.json()["id"]]


class TestFilters:
    @pytest.mark.parametrize(
        ("types", "expected"),
        [
            (["message.sent"], [3, 7]),
            (["message.*"], [2, 3, 4, 7]),
            (["contact.*", "template.created"], [1, 5, 6]),
            (["*"], [1, 2, 3, 4, 5, 6, 7]),
            (["message.bounced"], []),
        ],
    )
    async def test_by_type(
        self, client: httpx.AsyncClient, stream: Actor, types: list[str], expected: list[int]
    ) -> None:
        events, _ = await read(client, stream, type=types)
        assert positions(events) == expected

    async def test_by_contact_the_subject_or_a_mention_in_data(
        self, client: httpx.AsyncClient, stream: Actor
    ) -> None:
        events, _ = await read(client, stream, contact_id=str(CONTACT))
        assert positions(events) == [1, 4]

    async def test_by_message_the_subject_or_a_mention_in_data(
        self, client: httpx.AsyncClient, stream: Actor
    ) -> None:
        events, _ = await read(client, stream, message_id=str(MESSAGE))
        assert positions(events) == [2, 3, 4]

    async def test_by_time_after_inclusive_before_exclusive(
        self, client: httpx.AsyncClient, stream: Actor
    ) -> None:
        events, _ = await read(
            client,
            stream,
            after=(T0 + timedelta(hours=2)).isoformat(),
            before=(T0 + timedelta(hours=5)).isoformat(),
        )
        assert positions(events) == [3, 4, 5]

    async def test_filters_combine_and_page_by_position(
        self, client: httpx.AsyncClient, stream: Actor
    ) -> None:
        events, cursor = await read(
            client, stream, type="message.*", message_id=str(MESSAGE), limit=2
        )
        assert positions(events) == [2, 3]
        rest, cursor = await read(
            client, stream, type="message.*", message_id=str(MESSAGE), cursor=cursor
        )
        assert positions(rest) == [4]
        assert cursor is None

    @pytest.mark.parametrize(
        "bad", ["message.*.sent", "*.sent", "mess*", ".*", "true", "Message.Sent"]
    )
    async def test_a_malformed_type_pattern_is_refused(
        self, client: httpx.AsyncClient, stream: Actor, bad: str
    ) -> None:
        response = await client.get("/v1/events", headers=stream.headers, params={"type": bad})
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"

    async def test_a_time_without_offset_is_refused(
        self, client: httpx.AsyncClient, stream: Actor
    ) -> None:
        response = await client.get(
            "/v1/events", headers=stream.headers, params={"after": "2026-11-20T09:00:00"}
        )
        assert response.status_code == 422


class TestAccess:
    async def test_events_read_scope_is_required(
        self, client: httpx.AsyncClient, stream: Actor, make_actor: MakeActor
    ) -> None:
        contacts_only = await make_actor(scopes=["contacts:read"], workspace_id=stream.workspace_id)
        reader = await make_actor(scopes=["events:read"], workspace_id=stream.workspace_id)

        refused = await client.get("/v1/events", headers=contacts_only.headers)
        allowed = await client.get("/v1/events", headers=reader.headers)

        assert refused.status_code == 403
        assert refused.json()["code"] == "missing_scope"
        assert allowed.status_code == 200

    async def test_another_workspace_sees_only_its_own_stream(
        self,
        client: httpx.AsyncClient,
        stream: Actor,
        other_workspace_actor: Actor,
        db: Database,
    ) -> None:
        async with db.session() as session:
            emit(session, other_workspace_actor.workspace_id, "field.created", {"key": "x"})

        events, _ = await read(client, other_workspace_actor)

        assert [(e["position"], e["type"]) for e in events] == [(1, "field.created")]
