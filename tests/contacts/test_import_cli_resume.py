"""A command-line import outlives its process: a real `sendstream contacts
import` is killed with SIGKILL half-way; the import shows as `stalled` once
it has made no progress for `imports.stalled_after_minutes`, refuses to
resume over another file or with other options, and `--resume` finishes it
with every row landing exactly once."""

from __future__ import annotations

import hashlib
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result
from sqlalchemy import text
from sqlalchemy.engine import URL

from sendstream.core.db import Database
from sendstream.core.settings import ImportSettings, Settings, override_settings
from tests.fixtures.actors import Actor
from tests.fixtures.cli import Invoke, stdout_json
from tests.fixtures.job_worker import eventually
from tests.fixtures.processes import clean_env, start_cli, stop

ROWS = 300_000
# The CLI's chunk size (imports.DEFAULT_CHUNK_ROWS): progress moves by this much.
CHUNK = 20_000
ROOT = Path(__file__).resolve().parents[2]


def write_people(path: Path, rows: int, *, first_name: str = "Person") -> None:
    with path.open("w") as out:
        out.write("email,first_name\n")
        out.writelines(f"person{i}@example.com,{first_name} {i}\n" for i in range(rows))


def said(result: Result) -> str:
    """What the command printed on stderr, as one line (rich wraps it)."""
    return " ".join(result.stderr.split())


async def state(db: Database) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT id, status, rows_done, created, job_id FROM contact_imports")
            )
        ).one()
        return dict(row._mapping)


async def age(db: Database, import_id: uuid.UUID, minutes: float) -> None:
    """Make the import's last progress `minutes` old."""
    async with db.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE contact_imports SET updated_at = now() - make_interval(secs => :s) "
                "WHERE id = :id"
            ),
            {"s": minutes * 60, "id": import_id},
        )


async def stalled(client: httpx.AsyncClient, actor: Actor, import_id: uuid.UUID) -> bool:
    response = await client.get(f"/v1/contacts/imports/{import_id}", headers=actor.headers)
    assert response.status_code == 200, response.text
    return bool(response.json()["stalled"])


@pytest.fixture
def restore_settings(settings: Settings) -> Iterator[None]:
    yield
    override_settings(settings)


class TestKilledCliImport:
    @pytest.mark.slow
    @pytest.mark.usefixtures("restore_settings")
    async def test_sigkill_mid_import_is_stalled_then_resumed_exactly_once(
        self,
        client: httpx.AsyncClient,
        cli: Invoke,
        db: Database,
        database_url: URL,
        settings: Settings,
        admin_actor: Actor,
        tmp_path: Path,
    ) -> None:
        path = tmp_path / "people.csv"
        write_people(path, ROWS)
        env = clean_env(
            SENDSTREAM_DATABASE_URL=database_url.render_as_string(hide_password=False),
            SENDSTREAM_LOG__LEVEL="WARNING",
            SENDSTREAM_SECURITY__MASTER_KEY="dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmctISE=",
        )
        args = ["contacts", "import", str(path), "--workspace", admin_actor.workspace_slug]
        log = tmp_path / "import.log"
        proc = start_cli([*args, "--events", "each", "--json"], env, ROOT, log)
        try:

            async def some_chunks_done() -> bool:
                async with db.engine.connect() as conn:
                    done = await conn.scalar(text("SELECT max(rows_done) FROM contact_imports"))
                return (done or 0) >= 2 * CHUNK

            await eventually(some_chunks_done, within=120, interval=0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            stop(proc)
        killed = await state(db)
        assert killed["status"] == "running", (killed, log.read_text()[-2000:])
        assert 2 * CHUNK <= killed["rows_done"] < ROWS
        assert killed["job_id"] is None
        import_id = killed["id"]
        assert f"--resume {import_id}" in log.read_text()

        # Fresh progress is not a stall; two minutes (the default) without is.
        assert not await stalled(client, admin_actor, import_id)
        await age(db, import_id, 3)
        assert await stalled(client, admin_actor, import_id)
        override_settings(
            settings.model_copy(update={"imports": ImportSettings(stalled_after_minutes=5)})
        )
        assert not await stalled(client, admin_actor, import_id)
        override_settings(settings)

        # Another file (same size, other content) and other options are refused.
        other = tmp_path / "other.csv"
        write_people(other, ROWS, first_name="Persom")
        assert other.stat().st_size == path.stat().st_size
        changed = await cli("contacts", "import", str(other), "--resume", str(import_id))
        assert changed.exit_code == 1
        assert "import_file_changed" in said(changed)
        differ = await cli(
            "contacts", "import", str(path), "--resume", str(import_id), "--mode", "create_only"
        )
        assert differ.exit_code == 1
        assert "resume_options_differ" in said(differ)
        assert "--mode" in said(differ)
        assert (await state(db))["rows_done"] == killed["rows_done"]

        # The same command with --resume (same options) finishes it.
        out = stdout_json(
            await cli(*args, "--events", "each", "--resume", str(import_id), "--json")
        )

        assert (out["id"], out["status"]) == (str(import_id), "completed")
        final = await state(db)
        assert (final["rows_done"], final["created"]) == (ROWS, ROWS)
        assert not await stalled(client, admin_actor, import_id)
        async with db.engine.connect() as conn:
            contacts = await conn.scalar(text("SELECT count(*) FROM contacts"))
            created, distinct, span = (
                await conn.execute(
                    text(
                        "SELECT count(*), count(DISTINCT subject_id), "
                        "max(position) - min(position) + 1 FROM events "
                        "WHERE type = 'contact.created'"
                    )
                )
            ).one()
        assert contacts == ROWS
        assert (created, distinct, span) == (ROWS, ROWS, ROWS)

        again = await cli("contacts", "import", str(path), "--resume", str(import_id))
        assert again.exit_code == 1
        assert "import_not_resumable" in said(again)
        assert "completed" in said(again)


class TestNotResumable:
    async def test_an_uploaded_import_is_never_stalled_nor_resumed_from_the_cli(
        self,
        client: httpx.AsyncClient,
        cli: Invoke,
        db: Database,
        admin_actor: Actor,
        tmp_path: Path,
    ) -> None:
        path = tmp_path / "people.csv"
        write_people(path, 10)
        response = await client.post(
            "/v1/contacts/imports",
            headers=admin_actor.headers,
            files={"file": ("people.csv", path.read_bytes(), "text/csv")},
        )
        assert response.status_code == 202, response.text
        import_id = uuid.UUID(response.json()["id"])
        assert response.json()["stalled"] is False
        await age(db, import_id, 60)

        assert not await stalled(client, admin_actor, import_id)
        result = await cli("contacts", "import", str(path), "--resume", str(import_id))
        assert result.exit_code == 1
        assert "import_not_resumable" in said(result)
        assert "uploaded through the API" in said(result)

    async def test_an_unknown_or_other_workspaces_import_is_not_found(
        self, cli: Invoke, admin_actor: Actor, tmp_path: Path
    ) -> None:
        path = tmp_path / "people.csv"
        write_people(path, 1)
        result = await cli("contacts", "import", str(path), "--resume", str(uuid.uuid4()))
        assert result.exit_code == 1
        assert "import_not_found" in said(result)

    async def test_a_cli_import_records_its_file_size_and_head_hash(
        self, cli: Invoke, db: Database, admin_actor: Actor, tmp_path: Path
    ) -> None:
        path = tmp_path / "people.csv"
        write_people(path, 3)
        out = stdout_json(await cli("contacts", "import", str(path), "--json"))
        assert out["status"] == "completed"
        async with db.engine.connect() as conn:
            size, head = (
                await conn.execute(text("SELECT bytes_total, head_sha256 FROM contact_imports"))
            ).one()
        assert size == path.stat().st_size
        assert head == hashlib.sha256(path.read_bytes()[: 1024 * 1024]).hexdigest()
