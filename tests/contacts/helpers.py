"""Small shared steps of the contacts tests."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text

from sendstream.core.db import Database
from tests.fixtures.actors import Actor


async def create_field(
    client: httpx.AsyncClient, actor: Actor, key: str, type_: str, **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/fields", headers=actor.headers, json={"key": key, "type": type_, **extra}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def create_contact(client: httpx.AsyncClient, actor: Actor, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/contacts", headers=actor.headers, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def events_of(db: Database, *types: str) -> list[dict[str, Any]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT type, subject_id, data FROM events ORDER BY workspace_id, position")
        )
        return [
            {"type": r.type, "subject_id": r.subject_id, "data": r.data}
            for r in rows
            if not types or r.type in types
        ]


async def count(db: Database, table: str) -> int:
    async with db.engine.connect() as conn:
        return int(await conn.scalar(text(f'SELECT count(*) FROM "{table}"')) or 0)  # noqa: S608
