"""Putting jobs into given states directly, as a worker would have left them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text

from sendstream.core.db import Database
from sendstream.core.jobs import enqueue


async def make_job(
    db: Database,
    kind: str = "test.record",
    *,
    workspace_id: uuid.UUID | None = None,
    state: str = "queued",
    unique_key: str | None = None,
    payload: dict[str, Any] | None = None,
) -> int:
    async with db.session() as session:
        job_id = await enqueue(
            session, kind, payload, workspace_id=workspace_id, unique_key=unique_key
        )
        if state != "queued":
            finished = state in ("succeeded", "dead", "cancelled")
            await session.execute(
                text(
                    "UPDATE jobs SET state = CAST(:state AS text), attempts = 3, "
                    "locked_by = 'w:1:x', "
                    "last_error = CASE WHEN CAST(:state AS text) = 'dead' "
                    "THEN 'ValueError: boom' END, "
                    "lease_until = CASE WHEN CAST(:state AS text) = 'running' "
                    "THEN now() + interval '1 hour' END, "
                    "finished_at = CASE WHEN :finished THEN now() END WHERE id = :id"
                ),
                {"state": state, "finished": finished, "id": job_id},
            )
    return job_id


async def job_state(db: Database, job_id: int) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM jobs WHERE id = :id"), {"id": job_id})).one()
        return dict(row._mapping)
