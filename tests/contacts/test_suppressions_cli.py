"""`sendstream suppressions list | add | remove | export` against the test database."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from sqlalchemy import text

from sendstream.contacts.suppression import suppress
from sendstream.core.db import Database
from tests.contacts.helpers import count
from tests.fixtures.actors import Actor
from tests.fixtures.cli import Invoke, stdout_json


class TestSuppressionsCommands:
    async def test_add_list_remove_with_an_audit_entry_for_each_change(
        self, cli: Invoke, db: Database, admin_actor: Actor
    ) -> None:
        added = stdout_json(
            await cli(
                "suppressions",
                "add",
                "Ann@example.com",
                "@spam.example",
                "--reason",
                "complained",
                "--note",
                "from the old provider",
                "--json",
            )
        )
        assert [(a["address"], a["domain"], a["source"], a["created"]) for a in added] == [
            ("Ann@example.com", None, "cli", True),
            (None, "spam.example", "cli", True),
        ]

        listed = stdout_json(await cli("suppressions", "list", "--reason", "complained", "--json"))
        assert {r["address"] or r["domain"] for r in listed} == {"Ann@example.com", "spam.example"}
        table = await cli("suppressions", "list", "--search", "spam")
        assert table.exit_code == 0, table.output
        assert "@spam.example" in table.stdout
        assert "Ann@example.com" not in table.stdout

        removed = await cli("suppressions", "remove", "ann@example.com", "spam.example")
        assert removed.exit_code == 0, removed.output
        assert await count(db, "suppressions") == 0
        async with db.engine.connect() as conn:
            audit = (
                await conn.execute(
                    text(
                        "SELECT actor_type, action, target FROM audit_log "
                        "WHERE workspace_id = :ws ORDER BY id"
                    ),
                    {"ws": admin_actor.workspace_id},
                )
            ).all()
        assert [tuple(a) for a in audit] == [
            ("cli", "cli: suppressions add", "Ann@example.com"),
            ("cli", "cli: suppressions add", "@spam.example"),
            ("cli", "cli: suppressions remove", "ann@example.com"),
            ("cli", "cli: suppressions remove", "@spam.example"),
        ]

    async def test_bad_entries_and_erased_addresses_are_one_clear_line(
        self, cli: Invoke, db: Database, admin_actor: Actor
    ) -> None:
        bad = await cli("suppressions", "add", "ok@example.com", "not a domain")
        assert bad.exit_code == 1
        assert "invalid_domain_name" in bad.stderr
        assert await count(db, "suppressions") == 0

        async with db.session() as session:
            await suppress(session, admin_actor.workspace_id, "gone@example.com", "erased")
        refused = await cli("suppressions", "remove", "gone@example.com")
        assert refused.exit_code == 1
        assert "erased_address" in refused.stderr
        assert await count(db, "suppressions") == 1

    async def test_export_writes_csv_to_a_file(
        self, cli: Invoke, admin_actor: Actor, tmp_path: Path
    ) -> None:
        await cli("suppressions", "add", "ann@example.com", "--reason", "bounced")
        out = tmp_path / "suppressions.csv"

        result = await cli("suppressions", "export", "--output", str(out))

        assert result.exit_code == 0, result.output
        rows = list(csv.DictReader(io.StringIO(out.read_text())))
        assert [(r["address"], r["reason"], r["source"]) for r in rows] == [
            ("ann@example.com", "bounced", "cli")
        ]
