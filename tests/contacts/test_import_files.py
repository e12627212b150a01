"""Contact imports run in-process (the CLI's path): what files are read how,
what lands, what is rejected with which message, and what the import
writes besides contacts (events, consent records, subscriptions)."""

from __future__ import annotations

import codecs
import gzip
import io
import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from sendstream.contacts.errors import InvalidImportFile
from sendstream.contacts.imports import import_service
from sendstream.contacts.suppression import suppress
from sendstream.core.db import Database
from sendstream.models.contact_import import ContactImport
from tests.contacts.helpers import create_field, events_of
from tests.fixtures.actors import Actor


async def import_bytes(
    db: Database,
    workspace_id: uuid.UUID,
    content: bytes,
    filename: str = "contacts.csv",
    *,
    chunk_rows: int | None = None,
    **options: Any,
) -> ContactImport:
    """Start and run an import of `content` as the CLI does; the finished import."""
    async with db.session() as session:
        started = await import_service.start_local(
            session, workspace_id, source=io.BytesIO(content), filename=filename, **options
        )
        if chunk_rows is not None:
            started.chunk_rows = chunk_rows
    async with db.session() as session:
        finished = await import_service.run_import(
            session, started.id, io.BytesIO(content), commit=session.commit
        )
    assert finished is not None
    return finished


async def import_errors(db: Database, import_id: uuid.UUID) -> list[tuple[int, str | None, str]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT row, field, message FROM contact_import_errors "
                "WHERE import_id = :id ORDER BY row, id"
            ),
            {"id": import_id},
        )
        return [(int(r[0]), r[1], r[2]) for r in rows]


async def stored_contacts(db: Database, workspace_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    """The workspace's contacts by matching key."""
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT id, email_key, email, first_name, last_name, external_id, timezone, "
                "locale, attributes, tags FROM contacts WHERE workspace_id = :ws"
            ),
            {"ws": workspace_id},
        )
        return {r.email_key: dict(r._mapping) for r in rows}


@pytest.fixture
async def fields(client: httpx.AsyncClient, admin_actor: Actor) -> None:
    await create_field(client, admin_actor, "plan", "enum", options=["free", "pro"])
    await create_field(client, admin_actor, "score", "number")
    await create_field(client, admin_actor, "birthday", "date")
    await create_field(client, admin_actor, "vip", "boolean")
    await create_field(client, admin_actor, "city", "text")
    await create_field(client, admin_actor, "langs", "text_list")


CSV = (
    "email,first_name,last_name,plan,score,birthday,vip,city,langs,tags\n"
    "Ada@Example.com,Ada,Lovelace,pro,42,1815-12-10,yes,London,en;fr,math;vip\n"
    "grace@example.com,Grace,Hopper,free,7.5,1906-12-09,no,,,navy\n"
)


class TestFormats:
    async def test_csv_rows_land_with_typed_attributes_and_tags(
        self, db: Database, admin_actor: Actor, fields: None
    ) -> None:
        done = await import_bytes(db, admin_actor.workspace_id, CSV.encode())

        assert (done.status, done.created, done.rejected) == ("completed", 2, 0)
        assert (done.encoding, done.delimiter) == ("utf-8", ",")
        found = await stored_contacts(db, admin_actor.workspace_id)
        ada = found["ada@example.com"]
        assert ada["email"] == "Ada@Example.com"
        assert ada["attributes"] == {
            "plan": "pro",
            "score": 42,
            "birthday": "1815-12-10",
            "vip": True,
            "city": "London",
            "langs": ["en", "fr"],
        }
        assert ada["tags"] == ["math", "vip"]
        assert found["grace@example.com"]["attributes"] == {
            "plan": "free",
            "score": 7.5,
            "birthday": "1906-12-09",
            "vip": False,
        }

    @pytest.mark.parametrize("delimiter", [";", "\t", "|"], ids=["semicolon", "tab", "pipe"])
    async def test_other_delimiters_are_sniffed(
        self, db: Database, admin_actor: Actor, delimiter: str
    ) -> None:
        d = delimiter
        content = f"email{d}first_name\na@example.com{d}Smith, Ann\nb@example.com{d}Bo\n"

        done = await import_bytes(db, admin_actor.workspace_id, content.encode())

        assert (done.status, done.created, done.delimiter) == ("completed", 2, delimiter)
        found = await stored_contacts(db, admin_actor.workspace_id)
        assert found["a@example.com"]["first_name"] == "Smith, Ann"

    async def test_windows_1252_file_is_read_as_such_and_said_so(
        self, db: Database, admin_actor: Actor
    ) -> None:
        content = "email,first_name\nzoe@example.com,Zoë Ça\n".encode("cp1252")

        done = await import_bytes(db, admin_actor.workspace_id, content)

        assert (done.status, done.encoding) == ("completed", "windows-1252")
        found = await stored_contacts(db, admin_actor.workspace_id)
        assert found["zoe@example.com"]["first_name"] == "Zoë Ça"

    @pytest.mark.parametrize(
        ("encoded", "encoding"),
        [
            (codecs.BOM_UTF8 + "email,first_name\nzoe@example.com,Zoë\n".encode(), "utf-8-sig"),
            ("email,first_name\nzoe@example.com,Zoë\n".encode("utf-16"), "utf-16"),
        ],
    )
    async def test_byte_order_marks_choose_the_encoding(
        self, db: Database, admin_actor: Actor, encoded: bytes, encoding: str
    ) -> None:
        done = await import_bytes(db, admin_actor.workspace_id, encoded)

        assert (done.status, done.encoding, done.created) == ("completed", encoding, 1)
        found = await stored_contacts(db, admin_actor.workspace_id)
        assert found["zoe@example.com"]["first_name"] == "Zoë"

    async def test_gzip_is_detected_by_its_magic_bytes_whatever_the_name(
        self, db: Database, admin_actor: Actor, fields: None
    ) -> None:
        done = await import_bytes(
            db, admin_actor.workspace_id, gzip.compress(CSV.encode()), filename="export.csv"
        )

        assert (done.status, done.compression, done.created) == ("completed", "gzip", 2)

    async def test_json_lines_accept_flat_fields_and_an_attributes_object(
        self, db: Database, admin_actor: Actor, fields: None
    ) -> None:
        lines = [
            {"email": "a@example.com", "first_name": "A", "plan": "pro", "tags": ["x", "y"]},
            {"email": "b@example.com", "attributes": {"score": 3, "langs": ["de"]}},
        ]
        content = "\n".join(json.dumps(line) for line in lines).encode()

        done = await import_bytes(db, admin_actor.workspace_id, content, filename="c.jsonl")

        assert (done.status, done.format, done.created) == ("completed", "jsonl", 2)
        found = await stored_contacts(db, admin_actor.workspace_id)
        assert found["a@example.com"]["attributes"] == {"plan": "pro"}
        assert found["a@example.com"]["tags"] == ["x", "y"]
        assert found["b@example.com"]["attributes"] == {"score": 3, "langs": ["de"]}

    async def test_mapping_renames_and_ignores_columns(
        self, db: Database, admin_actor: Actor, fields: None
    ) -> None:
        content = b"Mail,Prenom,Notes\nm@example.com,Marie,whatever\n"

        done = await import_bytes(
            db,
            admin_actor.workspace_id,
            content,
            mapping={"Mail": "email", "Prenom": "first_name", "Notes": "-"},
        )

        assert (done.status, done.created) == ("completed", 1)
        found = await stored_contacts(db, admin_actor.workspace_id)
        assert found["m@example.com"]["first_name"] == "Marie"


class TestWholeFileProblems:
    async def test_unknown_columns_are_listed_before_any_row_is_written(
        self, db: Database, admin_actor: Actor
    ) -> None:
        content = b"email,shoe_size,colour\na@example.com,42,red\n"

        with pytest.raises(InvalidImportFile) as caught:
            await import_bytes(db, admin_actor.workspace_id, content)

        assert "'shoe_size', 'colour'" in caught.value.message
        assert await stored_contacts(db, admin_actor.workspace_id) == {}

    async def test_an_empty_file_is_refused(self, db: Database, admin_actor: Actor) -> None:
        with pytest.raises(InvalidImportFile, match="the file is empty"):
            await import_bytes(db, admin_actor.workspace_id, b"")

    async def test_a_header_only_file_is_refused(self, db: Database, admin_actor: Actor) -> None:
        with pytest.raises(InvalidImportFile, match="header row but no data rows"):
            await import_bytes(db, admin_actor.workspace_id, b"email,first_name\n")

    async def test_a_mapping_to_an_unknown_field_is_refused(
        self, db: Database, admin_actor: Actor
    ) -> None:
        with pytest.raises(InvalidImportFile, match="Mail=mail"):
            await import_bytes(
                db, admin_actor.workspace_id, b"Mail\na@example.com\n", mapping={"Mail": "mail"}
            )

    async def test_a_broken_quote_deep_in_the_file_names_its_row_and_keeps_the_rows_before(
        self, db: Database, admin_actor: Actor
    ) -> None:
        rows = [f"u{i}@example.com,Name {i}" for i in range(1, 400_001)]
        rows[399_999] = 'u400000@example.com,"Broken'
        rows.append('u400001@example.com,"quoted" trailing')
        content = ("email,first_name\n" + "\n".join(rows) + "\n").encode()

        done = await import_bytes(db, admin_actor.workspace_id, content)

        assert done.status == "failed"
        assert (done.error or "").startswith("row 400000 ")
        assert done.created == 399_999
        errors = await import_errors(db, done.id)
        assert errors[-1][0] == 400_000
        async with db.engine.connect() as conn:
            landed = await conn.scalar(
                text("SELECT count(*) FROM contacts WHERE workspace_id = :ws"),
                {"ws": admin_actor.workspace_id},
            )
        assert landed == 399_999


class TestRowProblems:
    async def test_each_bad_row_is_reported_with_row_and_field_and_the_good_rows_land(
        self, db: Database, admin_actor: Actor, fields: None
    ) -> None:
        huge = "x" * (10 * 1024 * 1024)
        content = (
            "email,plan,score,birthday,vip,city\n"
            "ok1@example.com,pro,1,2000-01-01,yes,Paris\n"  # 1
            "not-an-address,pro,1,2000-01-01,yes,Paris\n"  # 2
            "b@example.com,gold,1,2000-01-01,yes,Paris\n"  # 3
            "c@example.com,pro,many,2000-01-01,yes,Paris\n"  # 4
            "d@example.com,pro,1,31/02/1990,yes,Paris\n"  # 5
            "e@example.com,pro,1,2000-01-01,perhaps,Paris\n"  # 6
            f"f@example.com,pro,1,2000-01-01,yes,{huge}\n"  # 7
            "OK1@example.com,free,2,2000-01-02,no,Rome\n"  # 8
            "ok2@example.com,free,2,2000-01-02,no,Rome\n"  # 9
        ).encode()

        done = await import_bytes(db, admin_actor.workspace_id, content)

        assert (done.status, done.created, done.rejected) == ("completed", 2, 7)
        errors = await import_errors(db, done.id)
        assert [(row, field) for row, field, _ in errors] == [
            (2, "email"),
            (3, "plan"),
            (4, "score"),
            (5, "birthday"),
            (6, "vip"),
            (7, "city"),
            (8, "email"),
        ]
        messages = {row: message for row, _, message in errors}
        assert "not one of the allowed values (free, pro)" in messages[3]
        assert "not a number" in messages[4]
        assert "31/02/1990" in messages[5]
        assert "longer than 10000 characters" in messages[7]
        assert messages[8] == "duplicate of row 1"
        assert set(await stored_contacts(db, admin_actor.workspace_id)) == {
            "ok1@example.com",
            "ok2@example.com",
        }

    async def test_an_erased_address_is_rejected(self, db: Database, admin_actor: Actor) -> None:
        async with db.session() as session:
            await suppress(session, admin_actor.workspace_id, "gone@example.com", "erased")

        done = await import_bytes(
            db, admin_actor.workspace_id, b"email\nGone@example.com\nstays@example.com\n"
        )

        assert (done.created, done.rejected) == (1, 1)
        errors = await import_errors(db, done.id)
        assert errors[0][:2] == (1, "email")
        assert "erased" in errors[0][2]
        assert set(await stored_contacts(db, admin_actor.workspace_id)) == {"stays@example.com"}


class TestCellsTheFastPathsHandOn:
    # Clean cells take short cuts (tags, dates, enum and boolean values,
    # COPY formatting); these are the cells that must not.
    async def test_messy_tag_cells_are_cleaned_or_refused_as_the_general_rule_says(
        self, db: Database, admin_actor: Actor
    ) -> None:
        long_tag = "t" * 101
        content = (
            "email,tags\n"
            "a@example.com, vip ;b;vip;;\n"  # 1
            "b@example.com,x;y\n"  # 2
            'c@example.com,"x,y"\n'  # 3
            f"d@example.com,ok;{long_tag}\n"  # 4
            "e@example.com,big spender;vip\n"  # 5
        ).encode()

        done = await import_bytes(db, admin_actor.workspace_id, content)

        assert (done.created, done.rejected) == (3, 2)
        found = await stored_contacts(db, admin_actor.workspace_id)
        assert found["a@example.com"]["tags"] == ["vip", "b"]
        assert found["b@example.com"]["tags"] == ["x", "y"]
        assert found["e@example.com"]["tags"] == ["big spender", "vip"]
        errors = await import_errors(db, done.id)
        assert [(row, field) for row, field, _ in errors] == [(3, "tags"), (4, "tags")]

    async def test_repeated_and_padded_values_parse_like_the_first_time(
        self, db: Database, admin_actor: Actor, fields: None
    ) -> None:
        content = (
            b"email,plan,vip,birthday\n"
            b"a@example.com, pro ,YES,2000-01-01\n"  # 1
            b"b@example.com,gold,yes, 2000-01-02 \n"  # 2
            b"c@example.com,free,maybe,2000-01-03\n"  # 3
            b"d@example.com, pro ,YES,2000-01-31\n"  # 4
            b"e@example.com,free,no,2000-13-01\n"  # 5
        )

        done = await import_bytes(db, admin_actor.workspace_id, content)

        assert (done.created, done.rejected) == (2, 3)
        found = await stored_contacts(db, admin_actor.workspace_id)
        assert found["a@example.com"]["attributes"] == {
            "plan": "pro",
            "vip": True,
            "birthday": "2000-01-01",
        }
        assert found["d@example.com"]["attributes"]["plan"] == "pro"
        errors = await import_errors(db, done.id)
        assert [(row, field) for row, field, _ in errors] == [
            (2, "plan"),
            (3, "vip"),
            (5, "birthday"),
        ]

    async def test_a_backslash_next_to_an_empty_cell_lands_as_written(
        self, db: Database, admin_actor: Actor
    ) -> None:
        content = b"email,first_name,last_name\na@example.com,A\\B\\n,\n"

        await import_bytes(db, admin_actor.workspace_id, content)

        found = await stored_contacts(db, admin_actor.workspace_id)
        assert found["a@example.com"]["first_name"] == "A\\B\\n"
        assert found["a@example.com"]["last_name"] is None


class TestModesAndMerging:
    async def test_reimporting_the_same_file_changes_nothing_and_emits_only_its_summary(
        self, db: Database, admin_actor: Actor, fields: None
    ) -> None:
        await import_bytes(db, admin_actor.workspace_id, CSV.encode())
        before = await events_of(db)

        again = await import_bytes(db, admin_actor.workspace_id, CSV.encode())

        assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
        after = await events_of(db)
        assert after[: len(before)] == before
        assert [e["type"] for e in after[len(before) :]] == ["contact_import.completed"]
        assert after[-1]["data"]["unchanged"] == 2

    async def test_update_merges_attributes_adds_tags_and_keeps_blank_cells(
        self, db: Database, admin_actor: Actor, fields: None
    ) -> None:
        await import_bytes(db, admin_actor.workspace_id, CSV.encode())
        change = b"email,first_name,last_name,plan,tags\nada@example.com,Augusta,,free,poet\n"

        done = await import_bytes(db, admin_actor.workspace_id, change)

        assert (done.updated, done.unchanged) == (1, 0)
        ada = (await stored_contacts(db, admin_actor.workspace_id))["ada@example.com"]
        assert (ada["first_name"], ada["last_name"]) == ("Augusta", "Lovelace")
        assert ada["attributes"]["plan"] == "free"
        assert ada["attributes"]["city"] == "London"
        assert ada["tags"] == ["math", "vip", "poet"]
        updated = await events_of(db, "contact.updated")
        assert len(updated) == 1
        data = updated[0]["data"]
        assert data["source"] == "import"
        assert data["email"] == "Ada@Example.com"
        assert data["changes"] == {
            "first_name": {"old": "Ada", "new": "Augusta"},
            "attributes.plan": {"old": "pro", "new": "free"},
            "tags": {"old": ["math", "vip"], "new": ["math", "vip", "poet"]},
        }

    async def test_created_contacts_get_field_defaults_and_one_summary_event(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        await create_field(client, admin_actor, "plan", "enum", options=["free", "pro"])
        await create_field(client, admin_actor, "tier", "text", default="bronze")

        done = await import_bytes(
            db, admin_actor.workspace_id, b"email,plan\nn@example.com,pro\nm@example.com,\n"
        )

        assert done.created == 2
        found = await stored_contacts(db, admin_actor.workspace_id)
        assert found["n@example.com"]["attributes"] == {"plan": "pro", "tier": "bronze"}
        # Created contacts are announced together, not one by one.
        assert await events_of(db, "contact.created") == []
        [completed] = await events_of(db, "contact_import.completed")
        assert completed["subject_id"] == str(done.id)
        assert completed["data"]["id"] == str(done.id)
        assert completed["data"]["events"] == "summary"
        assert (completed["data"]["created"], completed["data"]["rows"]) == (2, 2)

    async def test_events_each_announces_every_created_contact_with_its_import(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        await create_field(client, admin_actor, "plan", "enum", options=["free", "pro"])

        done = await import_bytes(
            db, admin_actor.workspace_id, b"email,plan\nn@example.com,pro\n", events="each"
        )

        [created] = await events_of(db, "contact.created")
        contact_id = (await stored_contacts(db, admin_actor.workspace_id))["n@example.com"]["id"]
        assert created["subject_id"] == str(contact_id)
        assert created["data"] == {
            "id": str(contact_id),
            "email": "n@example.com",
            "source": "import",
            "import_id": str(done.id),
        }
        assert [e["type"] for e in await events_of(db)][-1] == "contact_import.completed"

    async def test_create_only_skips_existing_contacts(
        self, db: Database, admin_actor: Actor, fields: None
    ) -> None:
        await import_bytes(db, admin_actor.workspace_id, CSV.encode())
        content = b"email,first_name\nada@example.com,Changed\nnew@example.com,New\n"

        done = await import_bytes(db, admin_actor.workspace_id, content, mode="create_only")

        assert (done.created, done.updated, done.skipped) == (1, 0, 1)
        found = await stored_contacts(db, admin_actor.workspace_id)
        assert found["ada@example.com"]["first_name"] == "Ada"

    async def test_update_only_skips_unknown_addresses(
        self, db: Database, admin_actor: Actor, fields: None
    ) -> None:
        await import_bytes(db, admin_actor.workspace_id, CSV.encode())
        content = (
            b"email,first_name\nada@example.com,Changed\n"
            b"grace@example.com,Grace\nnew@example.com,New\n"
        )

        done = await import_bytes(db, admin_actor.workspace_id, content, mode="update_only")

        assert (done.created, done.updated, done.unchanged, done.skipped) == (0, 1, 1, 1)
        found = await stored_contacts(db, admin_actor.workspace_id)
        assert "new@example.com" not in found
        assert found["ada@example.com"]["first_name"] == "Changed"

    async def test_a_list_import_subscribes_records_consent_and_emits_events(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        made = await client.post(
            "/v1/lists", headers=admin_actor.headers, json={"name": "Newsletter"}
        )
        assert made.status_code == 201, made.text
        list_id = made.json()["id"]
        existing = await client.post(
            "/v1/contacts", headers=admin_actor.headers, json={"email": "a@example.com"}
        )
        assert existing.status_code == 201, existing.text

        done = await import_bytes(
            db,
            admin_actor.workspace_id,
            b"email\na@example.com\nb@example.com\n",
            list_ref="Newsletter",
            consent_text="Yes, send me the newsletter",
        )

        assert done.subscribed == 2
        async with db.engine.connect() as conn:
            states = (
                (
                    await conn.execute(
                        text("SELECT status FROM subscriptions WHERE list_id = :l"), {"l": list_id}
                    )
                )
                .scalars()
                .all()
            )
            consent = (
                await conn.execute(
                    text(
                        "SELECT source, status, consent_text, actor FROM consent_records "
                        "WHERE list_id = :l"
                    ),
                    {"l": list_id},
                )
            ).all()
        assert states == ["subscribed", "subscribed"]
        assert [tuple(c) for c in consent] == [
            ("import", "subscribed", "Yes, send me the newsletter", "cli")
        ] * 2
        # The contact that existed is announced; the one the import created
        # is counted in contact_import.completed.
        [subscribed] = await events_of(db, "contact.subscribed")
        assert subscribed["data"]["email"] == "a@example.com"
        assert subscribed["data"]["list_id"] == list_id
        assert subscribed["data"]["source"] == "import"
        assert subscribed["data"]["import_id"] == str(done.id)
        [completed] = await events_of(db, "contact_import.completed")
        assert completed["data"]["list_id"] == list_id
        assert (completed["data"]["created"], completed["data"]["subscribed"]) == (1, 2)

    async def test_a_list_import_with_events_each_announces_every_subscription(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        made = await client.post(
            "/v1/lists", headers=admin_actor.headers, json={"name": "Newsletter"}
        )
        assert made.status_code == 201, made.text

        await import_bytes(
            db,
            admin_actor.workspace_id,
            b"email\na@example.com\nb@example.com\n",
            list_ref="Newsletter",
            events="each",
        )

        subscribed = await events_of(db, "contact.subscribed")
        assert {e["data"]["email"] for e in subscribed} == {"a@example.com", "b@example.com"}
        created = await events_of(db, "contact.created")
        assert {e["data"]["email"] for e in created} == {"a@example.com", "b@example.com"}


class TestEventPositions:
    async def test_import_events_take_gapless_positions_after_earlier_events(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        await client.post("/v1/contacts", headers=admin_actor.headers, json={"email": "x@e.com"})
        rows = "\n".join(f"p{i}@example.com" for i in range(25))

        await import_bytes(
            db,
            admin_actor.workspace_id,
            f"email\n{rows}\n".encode(),
            chunk_rows=10,
            events="each",
        )

        async with db.engine.connect() as conn:
            positions = (
                (
                    await conn.execute(
                        text(
                            "SELECT position FROM events WHERE workspace_id = :ws ORDER BY position"
                        ),
                        {"ws": admin_actor.workspace_id},
                    )
                )
                .scalars()
                .all()
            )
            last = await conn.scalar(
                text("SELECT last_position FROM event_counters WHERE workspace_id = :ws"),
                {"ws": admin_actor.workspace_id},
            )
        assert positions == list(range(1, len(positions) + 1))
        # The API's contact, 25 imported, the import's completion.
        assert last == len(positions) == 27
