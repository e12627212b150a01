"""An import survives its worker: a real `sendstream worker` process is
killed with SIGKILL half-way through an uploaded import; a second worker
picks the job up when its lease runs out and finishes it, and every row
lands exactly once (one contact, one `contact.created` event each)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from sendstream.core.db import Database
from tests.fixtures.actors import Actor
from tests.fixtures.job_worker import eventually
from tests.fixtures.processes import clean_env, start_cli, stop

pytestmark = pytest.mark.slow

ROWS = 200_000
CHUNK = 10_000
ROOT = Path(__file__).resolve().parents[2]


def worker_env(url: URL) -> dict[str, str]:
    return clean_env(
        SENDSTREAM_DATABASE_URL=url.render_as_string(hide_password=False),
        SENDSTREAM_LOG__LEVEL="INFO",
        SENDSTREAM_JOBS__LEASE_SECONDS="2",
        SENDSTREAM_JOBS__BACKOFF_BASE_SECONDS="0.05",
        SENDSTREAM_JOBS__BACKOFF_MAX_SECONDS="0.5",
        SENDSTREAM_SECURITY__MASTER_KEY="dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmctISE=",
    )


async def state(db: Database) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(text("SELECT status, rows_done, created FROM contact_imports"))
        ).one()
        return dict(row._mapping)


class TestKilledImportWorker:
    async def test_sigkill_mid_import_resumes_and_imports_every_row_exactly_once(
        self,
        client: httpx.AsyncClient,
        db: Database,
        database_url: URL,
        admin_actor: Actor,
        tmp_path: Path,
    ) -> None:
        rows = "\n".join(f"person{i}@example.com,Person {i}" for i in range(ROWS))
        response = await client.post(
            "/v1/contacts/imports",
            headers=admin_actor.headers,
            files={"file": ("people.csv", f"email,first_name\n{rows}\n".encode(), "text/csv")},
            data={"events": "each"},
        )
        assert response.status_code == 202, response.text
        async with db.engine.begin() as conn:
            # Small chunks, so the kill lands between many commits.
            await conn.execute(text("UPDATE contact_imports SET chunk_rows = :n"), {"n": CHUNK})
        env = worker_env(database_url)

        first = start_cli(["worker"], env, ROOT, tmp_path / "first.log")
        try:

            async def some_chunks_done() -> bool:
                return (await state(db))["rows_done"] >= 3 * CHUNK

            await eventually(some_chunks_done, within=120)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            stop(first)
        killed = await state(db)
        assert killed["status"] == "running", killed
        assert CHUNK <= killed["rows_done"] < ROWS

        second = start_cli(["worker"], env, ROOT, tmp_path / "second.log")
        try:

            async def completed() -> bool:
                return (await state(db))["status"] == "completed"

            await eventually(completed, within=180)
        finally:
            assert stop(second) == 0, (tmp_path / "second.log").read_text()[-3000:]

        final = await state(db)
        assert (final["rows_done"], final["created"]) == (ROWS, ROWS)
        async with db.engine.connect() as conn:
            contacts = await conn.scalar(text("SELECT count(*) FROM contacts"))
            created, distinct = (
                await conn.execute(
                    text(
                        "SELECT count(*), count(DISTINCT subject_id) FROM events "
                        "WHERE type = 'contact.created'"
                    )
                )
            ).one()
            span = await conn.scalar(
                text(
                    "SELECT max(position) - min(position) + 1 FROM events "
                    "WHERE type = 'contact.created'"
                )
            )
        assert contacts == ROWS
        assert (created, distinct) == (ROWS, ROWS)
        assert span == ROWS  # gapless positions
        assert "jobs.leases_expired" in (tmp_path / "second.log").read_text()
