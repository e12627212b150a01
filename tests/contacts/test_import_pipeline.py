"""An import merges chunks on two connections at once and still commits
them one by one in file order: events keep gapless positions in chunk
order, a failing chunk takes the chunk merged ahead of it down with it, and
the import resumes from the failed chunk without repeating or skipping a
row."""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from sendstream.contacts.imports import import_service
from sendstream.contacts.suppression import suppress
from sendstream.core.db import Database
from sendstream.core.outbox import write_events_from_select
from sendstream.models.contact_import import ContactImport
from tests.contacts.helpers import create_contact
from tests.fixtures.actors import Actor

CHUNK = 10


def people(count: int, *, external: dict[int, str] | None = None) -> bytes:
    """`count` rows `p<i>@example.com`; `external` gives some rows an external id."""
    external = external or {}
    lines = [f"p{i}@example.com,{external.get(i, '')}" for i in range(count)]
    return ("email,external_id\n" + "\n".join(lines) + "\n").encode()


async def start(db: Database, workspace_id: uuid.UUID, content: bytes) -> uuid.UUID:
    """An import announcing each contact it creates, so the order of its
    events shows the order its chunks committed in."""
    async with db.session() as session:
        started = await import_service.start_local(
            session, workspace_id, source=io.BytesIO(content), filename="people.csv", events="each"
        )
        started.chunk_rows = CHUNK
        return started.id


async def run(
    db: Database, import_id: uuid.UUID, content: bytes, *, lanes: int = 2
) -> ContactImport | None:
    async with db.session() as session:
        return await import_service.run_import(
            session, import_id, io.BytesIO(content), commit=session.commit, lanes=lanes
        )


async def created_rows_in_position_order(db: Database, workspace_id: uuid.UUID) -> list[int]:
    """The file row (0-based) of each `contact.created` event of an import, by position."""
    async with db.engine.connect() as conn:
        emails = (
            await conn.execute(
                text(
                    "SELECT data->>'email' FROM events WHERE workspace_id = :ws "
                    "AND type = 'contact.created' AND data->>'source' = 'import' ORDER BY position"
                ),
                {"ws": workspace_id},
            )
        ).scalars()
        return [int(email.split("@")[0][1:]) for email in emails]


async def positions(db: Database, workspace_id: uuid.UUID) -> list[int]:
    async with db.engine.connect() as conn:
        found = await conn.execute(
            text("SELECT position FROM events WHERE workspace_id = :ws ORDER BY position"),
            {"ws": workspace_id},
        )
        return list(found.scalars())


async def contact_emails(db: Database, workspace_id: uuid.UUID) -> set[str]:
    async with db.engine.connect() as conn:
        found = await conn.execute(
            text("SELECT email FROM contacts WHERE workspace_id = :ws"), {"ws": workspace_id}
        )
        return set(found.scalars())


class TestChunksCommitInFileOrder:
    async def test_every_chunk_s_events_come_after_the_events_of_the_chunk_before_it(
        self, db: Database, admin_actor: Actor
    ) -> None:
        content = people(95)
        import_id = await start(db, admin_actor.workspace_id, content)

        done = await run(db, import_id, content)

        assert done is not None
        assert (done.status, done.rows_done, done.created) == ("completed", 95, 95)
        rows = await created_rows_in_position_order(db, admin_actor.workspace_id)
        chunks = [row // CHUNK for row in rows]
        assert sorted(rows) == list(range(95))
        assert chunks == sorted(chunks)
        # 95 contacts, then contact_import.completed.
        assert await positions(db, admin_actor.workspace_id) == list(range(1, 97))

    async def test_one_connection_imports_the_same_as_two(
        self, db: Database, admin_actor: Actor
    ) -> None:
        content = people(35)
        import_id = await start(db, admin_actor.workspace_id, content)

        done = await run(db, import_id, content, lanes=1)

        assert done is not None
        assert (done.status, done.rows_done, done.created) == ("completed", 35, 35)
        rows = await created_rows_in_position_order(db, admin_actor.workspace_id)
        assert [row // CHUNK for row in rows] == sorted(row // CHUNK for row in rows)
        assert await positions(db, admin_actor.workspace_id) == list(range(1, 37))


@contextlib.asynccontextmanager
async def failing_insert_of(db: Database, email: str) -> AsyncIterator[None]:
    """While open, the database refuses to insert a contact with `email`: a
    real error in the middle of a chunk's merge."""
    async with db.engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE FUNCTION test_refuse_contact() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
            )
        )
        await conn.execute(
            text(
                "CREATE TRIGGER test_refuse_contact BEFORE INSERT ON contacts FOR EACH ROW "
                f"WHEN (NEW.email = '{email}') EXECUTE FUNCTION test_refuse_contact()"
            )
        )
    try:
        yield
    finally:
        async with db.engine.begin() as conn:
            await conn.execute(text("DROP TRIGGER test_refuse_contact ON contacts"))
            await conn.execute(text("DROP FUNCTION test_refuse_contact()"))


class TestAFailingChunk:
    # The database refuses row 25: its chunk (rows 21-30) fails.
    async def test_stops_the_run_with_the_chunks_before_it_committed_and_none_after(
        self, db: Database, admin_actor: Actor
    ) -> None:
        content = people(60)
        import_id = await start(db, admin_actor.workspace_id, content)

        async with failing_insert_of(db, "p25@example.com"):
            with pytest.raises(DBAPIError, match="refused by the test"):
                await run(db, import_id, content)

        async with db.engine.connect() as conn:
            rows_done, created = (
                await conn.execute(
                    text("SELECT rows_done, created FROM contact_imports WHERE id = :id"),
                    {"id": import_id},
                )
            ).one()
        assert (rows_done, created) == (20, 20)
        emails = await contact_emails(db, admin_actor.workspace_id)
        # The chunk after the failed one was merged at the same time, on
        # the other connection, and rolled back.
        assert emails == {f"p{i}@example.com" for i in range(20)}
        assert await positions(db, admin_actor.workspace_id) == list(range(1, 21))

    async def test_the_import_resumes_at_the_failed_chunk_and_lands_every_row_once(
        self, db: Database, admin_actor: Actor
    ) -> None:
        content = people(60)
        import_id = await start(db, admin_actor.workspace_id, content)
        async with failing_insert_of(db, "p25@example.com"):
            with pytest.raises(DBAPIError):
                await run(db, import_id, content)

        done = await run(db, import_id, content)

        assert done is not None
        assert (done.status, done.rows_done, done.created) == ("completed", 60, 60)
        rows = await created_rows_in_position_order(db, admin_actor.workspace_id)
        assert sorted(rows) == list(range(60))
        assert await contact_emails(db, admin_actor.workspace_id) == {
            f"p{i}@example.com" for i in range(60)
        }
        # 60 imported, then contact_import.completed.
        assert await positions(db, admin_actor.workspace_id) == list(range(1, 62))


class TestExternalIdConflicts:
    async def test_a_row_taking_another_contact_s_external_id_is_rejected_and_the_rest_lands(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        owner = await create_contact(
            client, admin_actor, email="owner@example.com", external_id="X-1"
        )
        content = people(30, external={5: "X-1", 25: "X-1", 26: "Y-2"})
        import_id = await start(db, admin_actor.workspace_id, content)

        done = await run(db, import_id, content)

        assert done is not None
        assert (done.status, done.created, done.rejected) == ("completed", 28, 2)
        async with db.engine.connect() as conn:
            errors = (
                await conn.execute(
                    text(
                        "SELECT row, field, message, value FROM contact_import_errors "
                        "WHERE import_id = :id ORDER BY row"
                    ),
                    {"id": import_id},
                )
            ).all()
            holder = await conn.scalar(
                text("SELECT id FROM contacts WHERE external_id = 'X-1'"),
            )
        # Row 6 (p5) takes the owner's id; row 26 (p25) repeats it (caught
        # in the file, before the database).
        assert [tuple(e) for e in errors] == [
            (6, "external_id", "already belongs to another contact", "X-1"),
            (26, "external_id", "duplicate of row 6", "X-1"),
        ]
        assert str(holder) == owner["id"]
        assert "p26@example.com" in await contact_emails(db, admin_actor.workspace_id)

    async def test_the_contact_that_holds_the_external_id_can_update_itself(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        await create_contact(client, admin_actor, email="p3@example.com", external_id="X-1")
        content = people(5, external={3: "X-1"})
        import_id = await start(db, admin_actor.workspace_id, content)

        done = await run(db, import_id, content)

        assert done is not None
        assert (done.created, done.unchanged, done.rejected) == (4, 1, 0)


class TestErasedAddressesInALaterChunk:
    async def test_are_rejected_by_row_while_the_rest_of_their_chunk_lands(
        self, db: Database, admin_actor: Actor
    ) -> None:
        async with db.session() as session:
            await suppress(session, admin_actor.workspace_id, "p33@example.com", "erased")
            await suppress(session, admin_actor.workspace_id, "p47@example.com", "erased")
        content = people(50)
        import_id = await start(db, admin_actor.workspace_id, content)

        done = await run(db, import_id, content)

        assert done is not None
        assert (done.status, done.created, done.rejected) == ("completed", 48, 2)
        async with db.engine.connect() as conn:
            errors = (
                await conn.execute(
                    text(
                        "SELECT row, field FROM contact_import_errors WHERE import_id = :id "
                        "ORDER BY row"
                    ),
                    {"id": import_id},
                )
            ).all()
        assert [tuple(e) for e in errors] == [(34, "email"), (48, "email")]
        assert await contact_emails(db, admin_actor.workspace_id) == {
            f"p{i}@example.com" for i in range(50) if i not in (33, 47)
        }
        assert await positions(db, admin_actor.workspace_id) == list(range(1, 50))


NUMBERED = (
    "SELECT n, 'test.numbered' AS type, 'test' AS subject_type, n::text AS subject_id, "
    "'{}'::jsonb AS data FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS n"
)


class TestEventsWrittenFromNumberedRows:
    # The import's way into the outbox (`write_events_from_select(count=)`).
    async def test_take_the_next_gapless_positions_in_their_numbered_order(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        await create_contact(client, admin_actor, email="first@example.com")
        async with db.session() as session:
            written = await write_events_from_select(
                session,
                admin_actor.workspace_id,
                NUMBERED,
                {"first": 1, "last": 5},
                count=5,
            )

        assert written == {"test.numbered": 5}
        async with db.engine.connect() as conn:
            found = (
                await conn.execute(
                    text(
                        "SELECT position, subject_id FROM events WHERE workspace_id = :ws "
                        "AND type = 'test.numbered' ORDER BY position"
                    ),
                    {"ws": admin_actor.workspace_id},
                )
            ).all()
        assert [tuple(r) for r in found] == [(p, str(p - 1)) for p in range(2, 7)]
        assert await positions(db, admin_actor.workspace_id) == list(range(1, 7))

    async def test_fewer_rows_than_the_count_are_refused(
        self, db: Database, admin_actor: Actor
    ) -> None:
        async with db.sessionmaker() as session:
            with pytest.raises(ValueError, match="yielded 4 rows, not the 5"):
                await write_events_from_select(
                    session, admin_actor.workspace_id, NUMBERED, {"first": 1, "last": 4}, count=5
                )

    async def test_a_number_outside_the_count_is_refused(
        self, db: Database, admin_actor: Actor
    ) -> None:
        async with db.sessionmaker() as session:
            with pytest.raises(IntegrityError, match="position"):
                await write_events_from_select(
                    session, admin_actor.workspace_id, NUMBERED, {"first": 2, "last": 6}, count=5
                )
