"""`sendstream contacts import / import-errors / export` against the test database."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import httpx

from sendstream.core.db import Database
from tests.fixtures.actors import Actor, MakeActor
from tests.fixtures.cli import Invoke, stdout_json


class TestImportCommand:
    async def test_imports_a_file_and_prints_counts_as_json(
        self, cli: Invoke, client: httpx.AsyncClient, admin_actor: Actor, tmp_path: Path
    ) -> None:
        path = tmp_path / "people.csv"
        path.write_text("Mail,Name,Junk\na@example.com,Ann,x\nbad,Bo,y\nc@example.com,Cy,z\n")

        out = stdout_json(
            await cli(
                "contacts",
                "import",
                str(path),
                "--workspace",
                admin_actor.workspace_slug,
                "--map",
                "Mail=email",
                "--map",
                "Name=first_name",
                "--map",
                "Junk=-",
                "--json",
            )
        )

        assert (out["status"], out["created"], out["rejected"]) == ("completed", 2, 1)
        assert out["file"] == "CSV, utf-8, comma-separated"
        contacts = await client.get("/v1/contacts", headers=admin_actor.headers)
        assert {c["first_name"] for c in contacts.json()["data"]} == {"Ann", "Cy"}

    async def test_the_only_workspace_needs_no_flag_and_a_list_is_found_by_name(
        self, cli: Invoke, client: httpx.AsyncClient, admin_actor: Actor, tmp_path: Path
    ) -> None:
        await client.post("/v1/lists", headers=admin_actor.headers, json={"name": "News"})
        path = tmp_path / "people.csv.gz"
        path.write_bytes(gzip.compress(b"email\na@example.com\n"))

        out = stdout_json(await cli("contacts", "import", str(path), "--list", "News", "--json"))

        assert (out["created"], out["subscribed"]) == (1, 1)

    async def test_progress_and_summary_are_printed_without_json(
        self, cli: Invoke, admin_actor: Actor, tmp_path: Path
    ) -> None:
        path = tmp_path / "people.csv"
        path.write_text("email\na@example.com\n")

        result = await cli("contacts", "import", str(path))

        assert result.exit_code == 0, result.output
        assert "completed: 1 rows" in result.stdout
        assert "1 created" in result.stdout

    async def test_unknown_columns_are_one_clear_line(
        self, cli: Invoke, db: Database, admin_actor: Actor, tmp_path: Path
    ) -> None:
        path = tmp_path / "people.csv"
        path.write_text("email,shoe_size\na@example.com,42\n")

        result = await cli("contacts", "import", str(path))

        assert result.exit_code == 1
        assert "invalid_import_file" in result.stderr
        assert "unknown column(s) 'shoe_size'" in result.stderr
        assert "Traceback" not in result.output

    async def test_several_workspaces_need_the_flag(
        self, cli: Invoke, make_actor: MakeActor, admin_actor: Actor, tmp_path: Path
    ) -> None:
        await make_actor(name="second")
        path = tmp_path / "people.csv"
        path.write_text("email\na@example.com\n")

        result = await cli("contacts", "import", str(path))

        assert result.exit_code == 1
        assert "--workspace" in result.stderr

    async def test_error_report_lists_rejected_rows(
        self, cli: Invoke, admin_actor: Actor, tmp_path: Path
    ) -> None:
        path = tmp_path / "people.csv"
        path.write_text("email\na@example.com\nnot-an-address\na@example.com\n")
        out = stdout_json(await cli("contacts", "import", str(path), "--json"))

        report = await cli("contacts", "import-errors", out["id"])

        assert report.exit_code == 0, report.output
        lines = list(csv.reader(io.StringIO(report.stdout)))
        assert lines[0] == ["row", "field", "message", "value"]
        assert [(r[0], r[1]) for r in lines[1:]] == [("2", "email"), ("3", "email")]
        assert lines[2][2] == "duplicate of row 1"


class TestExportCommand:
    async def test_exports_csv_to_a_file_and_jsonl_to_stdout(
        self, cli: Invoke, admin_actor: Actor, tmp_path: Path
    ) -> None:
        path = tmp_path / "people.csv"
        path.write_text("email,first_name,tags\na@example.com,Ann,x;y\nb@example.com,Bo,\n")
        stdout_json(await cli("contacts", "import", str(path), "--json"))
        target = tmp_path / "out.csv"

        to_file = await cli("contacts", "export", "--output", str(target))
        to_stdout = await cli("contacts", "export", "--format", "jsonl", "--tag", "x")

        assert to_file.exit_code == 0, to_file.output
        exported = list(csv.DictReader(io.StringIO(target.read_text())))
        assert {(r["email"], r["first_name"], r["tags"]) for r in exported} == {
            ("a@example.com", "Ann", "x;y"),
            ("b@example.com", "Bo", ""),
        }
        assert to_stdout.exit_code == 0, to_stdout.output
        lines = [json.loads(line) for line in to_stdout.stdout.splitlines()]
        assert [line["email"] for line in lines] == ["a@example.com"]

    async def test_an_unknown_list_is_one_clear_line(self, cli: Invoke, admin_actor: Actor) -> None:
        result = await cli("contacts", "export", "--list", "nope")

        assert result.exit_code == 1
        assert "list_not_found" in result.stderr
