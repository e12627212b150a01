"""The import API: upload (202), the job that runs it, progress, the error
report, cancelling, and the larger body limit of the upload route."""

from __future__ import annotations

import csv
import gzip
import io
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from sendstream.contacts import import_tasks
from sendstream.core.db import Database
from tests.contacts.helpers import create_field
from tests.fixtures.actors import Actor, MakeActor
from tests.fixtures.job_worker import WorkerHarness, eventually, workers

# The workers run in this process: importing the task module registers the job kind.
__all__ = ["import_tasks", "workers"]

CSV = (
    "email,first_name,plan\n"
    "a@example.com,Ann,pro\n"
    "broken-address,Bob,pro\n"
    "c@example.com,Cy,platinum\n"
    "d@example.com,Di,free\n"
)


async def upload(
    client: httpx.AsyncClient,
    actor: Actor,
    content: bytes,
    filename: str = "contacts.csv",
    **form: Any,
) -> httpx.Response:
    return await client.post(
        "/v1/contacts/imports",
        headers=actor.headers,
        files={"file": (filename, content, "text/csv")},
        data=form,
    )


async def finished(client: httpx.AsyncClient, actor: Actor, import_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        response = await client.get(f"/v1/contacts/imports/{import_id}", headers=actor.headers)
        body: dict[str, Any] = response.json()
        return body if body["status"] in ("completed", "failed", "cancelled") else None

    return await eventually(check, within=60)


@pytest.fixture
async def plan_field(client: httpx.AsyncClient, admin_actor: Actor) -> None:
    await create_field(client, admin_actor, "plan", "enum", options=["free", "pro"])


class TestUpload:
    async def test_upload_is_accepted_and_a_worker_imports_it(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        plan_field: None,
        workers: WorkerHarness,
    ) -> None:
        await workers.start()

        response = await upload(client, admin_actor, CSV.encode())

        assert response.status_code == 202, response.text
        started = response.json()
        assert started["status"] == "queued"
        assert started["file"] == "CSV, utf-8, comma-separated"
        done = await finished(client, admin_actor, started["id"])
        assert done["status"] == "completed"
        assert (done["created"], done["rejected"], done["rows_done"]) == (2, 2, 4)
        assert done["progress"] == 1.0
        contacts = await client.get("/v1/contacts", headers=admin_actor.headers)
        assert {c["email"] for c in contacts.json()["data"]} == {"a@example.com", "d@example.com"}

    async def test_error_report_is_a_csv_of_row_field_message_value(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        plan_field: None,
        workers: WorkerHarness,
    ) -> None:
        await workers.start()
        started = (await upload(client, admin_actor, CSV.encode())).json()
        await finished(client, admin_actor, started["id"])

        report = await client.get(
            f"/v1/contacts/imports/{started['id']}/errors", headers=admin_actor.headers
        )

        assert report.status_code == 200
        assert report.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(report.text)))
        assert rows[0] == ["row", "field", "message", "value"]
        assert [(r[0], r[1], r[3]) for r in rows[1:]] == [
            ("2", "email", "broken-address"),
            ("3", "plan", "platinum"),
        ]

    async def test_gzip_upload_with_mapping_and_list(
        self,
        client: httpx.AsyncClient,
        db: Database,
        admin_actor: Actor,
        workers: WorkerHarness,
    ) -> None:
        await workers.start()
        made = await client.post("/v1/lists", headers=admin_actor.headers, json={"name": "News"})
        list_id = made.json()["id"]
        content = gzip.compress(b"Mail;Notes\nx@example.com;hello\ny@example.com;bye\n")

        response = await upload(
            client,
            admin_actor,
            content,
            filename="people.csv.gz",
            map=["Mail=email", "Notes=-"],
            list_id=list_id,
            consent_text="Yes please",
        )

        assert response.status_code == 202, response.text
        done = await finished(client, admin_actor, response.json()["id"])
        assert (done["created"], done["subscribed"], done["compression"]) == (2, 2, "gzip")
        assert done["delimiter"] == ";"
        async with db.engine.connect() as conn:
            texts = (
                (await conn.execute(text("SELECT DISTINCT consent_text FROM consent_records")))
                .scalars()
                .all()
            )
        assert texts == ["Yes please"]

    async def test_upload_larger_than_the_api_body_limit_is_accepted(
        self, client: httpx.AsyncClient, admin_actor: Actor, workers: WorkerHarness
    ) -> None:
        await workers.start()
        rows = "\n".join(f"someone.with.a.long.name.{i}@example.com" for i in range(40_000))
        content = f"email\n{rows}\n".encode()
        assert len(content) > 1_048_576

        response = await upload(client, admin_actor, content)

        assert response.status_code == 202, response.text
        done = await finished(client, admin_actor, response.json()["id"])
        assert done["created"] == 40_000

    async def test_other_routes_keep_the_normal_body_limit(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await client.post(
            "/v1/contacts",
            headers={**admin_actor.headers, "content-type": "application/json"},
            content=b'{"email": "' + b"x" * 1_100_000 + b'"}',
        )

        assert response.status_code == 413


class TestUploadRefused:
    @pytest.mark.parametrize(
        ("content", "message"),
        [
            (b"", "the file is empty"),
            (b"email,first_name\n", "header row but no data rows"),
            (b"email,shoe_size\na@example.com,42\n", "unknown column(s) 'shoe_size'"),
        ],
        ids=["empty", "header-only", "unknown-column"],
    )
    async def test_a_file_that_cannot_be_imported_is_a_422_and_writes_nothing(
        self,
        client: httpx.AsyncClient,
        db: Database,
        admin_actor: Actor,
        content: bytes,
        message: str,
    ) -> None:
        response = await upload(client, admin_actor, content)

        assert response.status_code == 422, response.text
        assert response.json()["code"] == "invalid_import_file"
        assert message in response.json()["detail"]
        async with db.engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM contact_imports")) == 0
            assert await conn.scalar(text("SELECT count(*) FROM jobs")) == 0

    async def test_a_nul_character_in_the_consent_text_is_a_422_and_writes_nothing(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        response = await upload(
            client, admin_actor, b"email\na@example.com\n", consent_text="I agree\x00"
        )

        assert response.status_code == 422, response.text
        assert response.json()["code"] == "invalid_text"
        assert "consent_text" in response.json()["detail"]
        async with db.engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM contact_imports")) == 0

    async def test_an_unknown_list_is_a_404(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await upload(
            client, admin_actor, b"email\na@example.com\n", list_id=str(admin_actor.api_key_id)
        )

        assert response.status_code == 404
        assert response.json()["code"] == "list_not_found"

    async def test_a_read_only_key_cannot_import(
        self, client: httpx.AsyncClient, make_actor: MakeActor, admin_actor: Actor
    ) -> None:
        reader = await make_actor(
            scopes=["contacts:read"], workspace_id=admin_actor.workspace_id, key_name="ro"
        )

        response = await upload(client, reader, b"email\na@example.com\n")

        assert response.status_code == 403


class TestFollowingImports:
    async def test_list_shows_this_workspaces_imports_newest_first(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        first = (await upload(client, admin_actor, b"email\na@example.com\n")).json()
        second = (await upload(client, admin_actor, b"email\nb@example.com\n")).json()

        page = await client.get("/v1/contacts/imports?limit=1", headers=admin_actor.headers)
        rest = await client.get(
            f"/v1/contacts/imports?cursor={page.json()['next_cursor']}",
            headers=admin_actor.headers,
        )

        assert [i["id"] for i in page.json()["data"]] == [second["id"]]
        assert [i["id"] for i in rest.json()["data"]] == [first["id"]]

    async def test_cancelling_a_queued_import_means_it_never_runs(
        self,
        client: httpx.AsyncClient,
        db: Database,
        admin_actor: Actor,
        workers: WorkerHarness,
    ) -> None:
        started = (await upload(client, admin_actor, b"email\na@example.com\n")).json()

        cancelled = await client.post(
            f"/v1/contacts/imports/{started['id']}/cancel", headers=admin_actor.headers
        )
        again = await client.post(
            f"/v1/contacts/imports/{started['id']}/cancel", headers=admin_actor.headers
        )
        await workers.start()

        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
        assert again.status_code == 409
        assert again.json()["code"] == "import_finished"

        async def job_done() -> bool:
            async with db.engine.connect() as conn:
                state = await conn.scalar(text("SELECT state FROM jobs"))
            return state == "succeeded"

        await eventually(job_done)
        async with db.engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM contacts")) == 0

    async def test_another_workspace_cannot_see_an_import(
        self, client: httpx.AsyncClient, admin_actor: Actor, other_workspace_actor: Actor
    ) -> None:
        started = (await upload(client, admin_actor, b"email\na@example.com\n")).json()

        response = await client.get(
            f"/v1/contacts/imports/{started['id']}", headers=other_workspace_actor.headers
        )

        assert response.status_code == 404
        assert response.json()["code"] == "import_not_found"


class TestIdempotentUpload:
    async def test_a_retried_upload_with_the_same_key_is_one_import(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        headers = {**admin_actor.headers, "Idempotency-Key": "upload-1"}
        files = {"file": ("people.csv", b"email\na@example.com\n", "text/csv")}

        first = await client.post("/v1/contacts/imports", headers=headers, files=files)
        again = await client.post("/v1/contacts/imports", headers=headers, files=files)
        other = await client.post(
            "/v1/contacts/imports",
            headers=headers,
            files={"file": ("people.csv", b"email\nb@example.com\n", "text/csv")},
        )

        assert first.status_code == again.status_code == 202
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["idempotent-replayed"] == "true"
        assert other.status_code == 422
        assert other.json()["code"] == "idempotency_key_reused"
        async with db.engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM contact_imports")) == 1
