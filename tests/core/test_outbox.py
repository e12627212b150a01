"""The event outbox: events commit with the change that caused them, get
gapless per-workspace positions in commit order, and durable consumers read,
ack, filter and replay them independently."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import select, text

from sendstream.core import outbox
from sendstream.core.db import Database
from sendstream.core.errors import InvalidInput, NotFound
from sendstream.core.outbox import EventRecord
from sendstream.models.event import Event
from sendstream.models.workspace import Workspace


async def new_workspace(db: Database, name: str = "ws") -> uuid.UUID:
    workspace_id = uuid.uuid4()
    async with db.session() as session:
        await session.execute(
            text("INSERT INTO workspaces (id, name, slug) VALUES (:id, :name, :slug)"),
            {"id": workspace_id, "name": name, "slug": f"{name}-{workspace_id.hex[:8]}"},
        )
    return workspace_id


async def emit_committed(db: Database, workspace_id: uuid.UUID, *types: str) -> None:
    async with db.session() as session:
        for event_type in types:
            outbox.emit(session, workspace_id, event_type, {"type": event_type})


async def stored(db: Database, workspace_id: uuid.UUID) -> list[tuple[int, str]]:
    async with db.session() as session:
        rows = await session.execute(
            select(Event.position, Event.type)
            .where(Event.workspace_id == workspace_id)
            .order_by(Event.position)
        )
        return [(p, t) for p, t in rows.all()]


async def read(db: Database, consumer: str, **kwargs: object) -> list[EventRecord]:
    async with db.session() as session:
        return await outbox.read(session, consumer, **kwargs)  # type: ignore[arg-type]


async def register(db: Database, name: str, **kwargs: object) -> None:
    async with db.session() as session:
        await outbox.register_consumer(session, name, **kwargs)  # type: ignore[arg-type]


async def ack(db: Database, consumer: str, workspace_id: uuid.UUID, position: int) -> None:
    async with db.session() as session:
        await outbox.ack(session, consumer, workspace_id, position)


class TestEmit:
    async def test_committed_events_get_positions_one_to_n_in_emit_order(
        self, db: Database
    ) -> None:
        ws = await new_workspace(db)
        await emit_committed(db, ws, "a.one", "a.two")
        await emit_committed(db, ws, "a.three")
        assert await stored(db, ws) == [(1, "a.one"), (2, "a.two"), (3, "a.three")]

    async def test_event_emitted_in_a_rolled_back_transaction_never_appears(
        self, db: Database
    ) -> None:
        ws = await new_workspace(db)

        async def failing_unit_of_work() -> None:
            async with db.session() as session:
                outbox.emit(session, ws, "contact.created", {"id": 1})
                await session.execute(text("SELECT 1"))
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await failing_unit_of_work()
        await emit_committed(db, ws, "contact.updated")
        # The rollback also undid the counter: the next event is position 1.
        assert await stored(db, ws) == [(1, "contact.updated")]

    async def test_rollback_empties_the_buffer_of_a_reused_session(self, db: Database) -> None:
        ws = await new_workspace(db)
        async with db.sessionmaker() as session:
            await session.execute(text("SELECT 1"))
            outbox.emit(session, ws, "dropped", {})
            await session.rollback()
            assert outbox.pending_events(session) == 0
            await session.execute(text("SELECT 1"))
            outbox.emit(session, ws, "kept", {})
            await session.commit()
        assert await stored(db, ws) == [(1, "kept")]

    async def test_positions_are_counted_per_workspace(self, db: Database) -> None:
        first, second = await new_workspace(db, "a"), await new_workspace(db, "b")
        async with db.session() as session:
            outbox.emit(session, first, "x", {})
            outbox.emit(session, second, "y", {})
            outbox.emit(session, first, "z", {})
        assert await stored(db, first) == [(1, "x"), (2, "z")]
        assert await stored(db, second) == [(1, "y")]

    async def test_data_is_frozen_as_json_when_emitted(self, db: Database) -> None:
        ws = await new_workspace(db)
        contact_id = uuid.uuid4()
        data: dict[str, object] = {"contact_id": contact_id, "tags": ["a"]}
        occurred = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        async with db.session() as session:
            outbox.emit(
                session,
                ws,
                "contact.created",
                data,
                subject_type="contact",
                subject_id=contact_id,
                occurred_at=occurred,
            )
            data["tags"] = ["changed"]
        await register(db, "reader")
        [record] = await read(db, "reader")
        assert record.data == {"contact_id": str(contact_id), "tags": ["a"]}
        assert record.subject_type == "contact"
        assert record.subject_id == str(contact_id)
        assert record.occurred_at == occurred

    async def test_data_that_is_not_json_is_refused_at_the_call(self, db: Database) -> None:
        ws = await new_workspace(db)
        async with db.sessionmaker() as session:
            with pytest.raises(TypeError, match="not JSON"):
                outbox.emit(session, ws, "bad", {"value": object()})
            assert outbox.pending_events(session) == 0

    async def test_commit_wakes_a_listener_with_the_workspace_id(self, db: Database) -> None:
        ws = await new_workspace(db)
        async with await psycopg.AsyncConnection.connect(db.libpq_url, autocommit=True) as conn:
            await outbox.listen(conn)
            await emit_committed(db, ws, "contact.created")
            assert await outbox.wait_for_events(conn, timeout=10) == {ws}

    async def test_a_rollback_wakes_no_listener(self, db: Database) -> None:
        ws = await new_workspace(db)
        async with await psycopg.AsyncConnection.connect(db.libpq_url, autocommit=True) as conn:
            await outbox.listen(conn)
            async with db.sessionmaker() as session:
                outbox.emit(session, ws, "contact.created", {})
                await session.execute(text("SELECT 1"))
                await session.rollback()
            assert await outbox.wait_for_events(conn, timeout=0.2) == set()


class TestConcurrentWriters:
    async def test_positions_are_gapless_and_never_appear_behind_a_reader(
        self, db: Database
    ) -> None:
        workspaces = [await new_workspace(db, "a"), await new_workspace(db, "b")]
        rng = random.Random(7)
        done = asyncio.Event()
        violations: list[str] = []

        async def writer(n: int) -> None:
            async with db.session() as session:
                await session.execute(text("SELECT 1"))
                ws = workspaces[n % 2]
                for i in range(1 + n % 3):
                    outbox.emit(session, ws, "w", {"writer": n, "i": i})
                # Commit in an order unrelated to start or emit order.
                await asyncio.sleep(rng.random() / 50)

        async def reader() -> None:
            # A raw connection, so the reader never waits for a pool slot.
            async with await psycopg.AsyncConnection.connect(db.libpq_url, autocommit=True) as conn:
                seen_max = {ws: 0 for ws in workspaces}
                while True:
                    finished = done.is_set()
                    for ws in workspaces:
                        cur = await conn.execute(
                            "SELECT position FROM events WHERE workspace_id = %s ORDER BY 1",
                            (ws,),
                        )
                        positions = [row[0] for row in await cur.fetchall()]
                        if positions != list(range(1, len(positions) + 1)):
                            violations.append(f"gap in {positions}")
                        if len(positions) < seen_max[ws]:
                            violations.append("positions went backwards")
                        seen_max[ws] = len(positions)
                    if finished:
                        return
                    await asyncio.sleep(0)

        reading = asyncio.create_task(reader())
        await asyncio.gather(*(writer(n) for n in range(20)))
        done.set()
        await reading
        assert violations == []

        for index, ws in enumerate(workspaces):
            rows = await stored(db, ws)
            writers = [n for n in range(20) if n % 2 == index]
            assert [p for p, _ in rows] == list(range(1, sum(1 + n % 3 for n in writers) + 1))
        # Each transaction's events are consecutive: nothing interleaves a commit.
        async with db.session() as session:
            rows = (await session.execute(select(Event.data, Event.position))).all()
        by_writer: dict[int, list[int]] = {}
        for data, position in rows:
            by_writer.setdefault(data["writer"], []).append(position)
        for writer_id, positions in by_writer.items():
            assert max(positions) - min(positions) + 1 == len(positions), writer_id


class TestConsumers:
    async def test_read_returns_unacked_events_by_workspace_then_position(
        self, db: Database
    ) -> None:
        first, second = sorted([await new_workspace(db, "a"), await new_workspace(db, "b")])
        await emit_committed(db, second, "s.1", "s.2")
        await emit_committed(db, first, "f.1")
        await register(db, "reader")
        records = await read(db, "reader")
        assert [(r.workspace_id, r.position, r.type) for r in records] == [
            (first, 1, "f.1"),
            (second, 1, "s.1"),
            (second, 2, "s.2"),
        ]
        await ack(db, "reader", second, 1)
        assert [r.type for r in await read(db, "reader")] == ["f.1", "s.2"]

    async def test_two_consumers_progress_independently(self, db: Database) -> None:
        ws = await new_workspace(db)
        await emit_committed(db, ws, "a", "b", "c")
        await register(db, "slow")
        await register(db, "fast")
        for record in await read(db, "fast"):
            await ack(db, "fast", ws, record.position)
        assert await read(db, "fast") == []
        assert [r.type for r in await read(db, "slow")] == ["a", "b", "c"]
        await emit_committed(db, ws, "d")
        assert [r.type for r in await read(db, "fast")] == ["d"]

    async def test_limit_caps_one_read_across_workspaces(self, db: Database) -> None:
        first, second = sorted([await new_workspace(db, "a"), await new_workspace(db, "b")])
        await emit_committed(db, first, "1", "2")
        await emit_committed(db, second, "3", "4")
        await register(db, "reader")
        assert [r.type for r in await read(db, "reader", limit=3)] == ["1", "2", "3"]

    async def test_read_can_be_narrowed_to_one_workspace(self, db: Database) -> None:
        first, second = await new_workspace(db, "a"), await new_workspace(db, "b")
        await emit_committed(db, first, "mine")
        await emit_committed(db, second, "theirs")
        await register(db, "reader")
        records = await read(db, "reader", workspace_id=second)
        assert [(r.workspace_id, r.type) for r in records] == [(second, "theirs")]

    async def test_skip_passes_over_the_workspaces_the_consumer_does_not_serve(
        self, db: Database
    ) -> None:
        served, other = await new_workspace(db, "a"), await new_workspace(db, "b")
        await emit_committed(db, served, "s.1")
        await emit_committed(db, other, "o.1", "o.2")
        await register(db, "few")
        only_served = select(Workspace.id).where(Workspace.id == served)

        async def skip_then_read() -> list[tuple[uuid.UUID, str]]:
            async with db.session() as session:
                await outbox.skip_uninterested(session, "few", only_served)
                found = await outbox.read(session, "few")
            return [(r.workspace_id, r.type) for r in found]

        assert await skip_then_read() == [(served, "s.1")]
        await emit_committed(db, other, "o.3")
        await emit_committed(db, served, "s.2")
        assert await skip_then_read() == [(served, "s.1"), (served, "s.2")]
        async with db.session() as session:
            lag = await outbox.lag(session, "few")
        assert lag.get(other, 0) == 0
        # Another consumer still sees everything.
        await register(db, "all")
        assert [r.type for r in await read(db, "all", workspace_id=other)] == ["o.1", "o.2", "o.3"]

    async def test_skip_for_an_unregistered_consumer_changes_nothing(self, db: Database) -> None:
        ws = await new_workspace(db)
        await emit_committed(db, ws, "a")
        async with db.session() as session:
            await outbox.skip_uninterested(session, "nobody", select(Workspace.id).where(False))
        with pytest.raises(NotFound):
            await read(db, "nobody")

    async def test_seek_back_replays_events(self, db: Database) -> None:
        ws = await new_workspace(db)
        await emit_committed(db, ws, "a", "b", "c")
        await register(db, "reader")
        await ack(db, "reader", ws, 3)
        assert await read(db, "reader") == []
        async with db.session() as session:
            await outbox.seek(session, "reader", ws, 1)
        assert [r.type for r in await read(db, "reader")] == ["b", "c"]

    async def test_ack_never_moves_a_position_back(self, db: Database) -> None:
        ws = await new_workspace(db)
        await emit_committed(db, ws, "a", "b", "c")
        await register(db, "reader")
        await ack(db, "reader", ws, 3)
        await ack(db, "reader", ws, 1)
        assert await read(db, "reader") == []
        async with db.session() as session:
            assert await outbox.lag(session, "reader") == {ws: 0}

    async def test_ack_past_the_last_position_is_refused(self, db: Database) -> None:
        ws = await new_workspace(db)
        await emit_committed(db, ws, "a")
        await register(db, "reader")
        with pytest.raises(InvalidInput) as caught:
            await ack(db, "reader", ws, 2)
        assert caught.value.code == "invalid_event_position"

    async def test_type_filter_matches_exact_types_and_prefixes(self, db: Database) -> None:
        ws = await new_workspace(db)
        await emit_committed(
            db, ws, "contact.created", "message.sent", "contactx.created", "order.placed"
        )
        await register(db, "filtered", types=["contact.*", "order.placed"])
        records = await read(db, "filtered")
        assert [r.type for r in records] == ["contact.created", "order.placed"]

    async def test_prefix_filter_treats_like_wildcards_literally(self, db: Database) -> None:
        ws = await new_workspace(db)
        await emit_committed(db, ws, "a_b.x", "acb.x")
        await register(db, "filtered", types=["a_b.*"])
        assert [r.type for r in await read(db, "filtered")] == ["a_b.x"]

    async def test_filtered_consumer_moves_past_events_it_does_not_want(self, db: Database) -> None:
        ws = await new_workspace(db)
        await emit_committed(db, ws, "message.sent", "message.sent")
        await register(db, "contacts", types=["contact.*"])
        assert await read(db, "contacts") == []
        async with db.session() as session:
            assert await outbox.lag(session, "contacts") == {ws: 0}
        await emit_committed(db, ws, "contact.created")
        assert [(r.position, r.type) for r in await read(db, "contacts")] == [
            (3, "contact.created")
        ]

    async def test_a_malformed_type_filter_is_refused(self, db: Database) -> None:
        with pytest.raises(InvalidInput) as caught:
            await register(db, "bad", types=["contact*"])
        assert caught.value.code == "invalid_event_type_filter"

    async def test_consumer_starting_at_end_skips_history(self, db: Database) -> None:
        old, fresh = await new_workspace(db, "old"), await new_workspace(db, "new")
        await emit_committed(db, old, "history")
        await register(db, "tail", start="end")
        await emit_committed(db, old, "news")
        await emit_committed(db, fresh, "first")
        assert sorted(r.type for r in await read(db, "tail")) == ["first", "news"]

    async def test_registering_again_keeps_positions_and_updates_types(self, db: Database) -> None:
        ws = await new_workspace(db)
        await emit_committed(db, ws, "a.1", "b.1")
        await register(db, "reader")
        await ack(db, "reader", ws, 1)
        await register(db, "reader", types=["a.*"], start="end")
        await emit_committed(db, ws, "a.2")
        assert [r.type for r in await read(db, "reader")] == ["a.2"]

    async def test_lag_counts_unacked_events_per_workspace(self, db: Database) -> None:
        first, second = await new_workspace(db, "a"), await new_workspace(db, "b")
        await emit_committed(db, first, "1", "2", "3")
        await emit_committed(db, second, "1")
        await register(db, "reader")
        await ack(db, "reader", first, 2)
        async with db.session() as session:
            assert await outbox.lag(session, "reader") == {first: 1, second: 1}

    async def test_unknown_consumer_is_not_found(self, db: Database) -> None:
        with pytest.raises(NotFound) as caught:
            await read(db, "nobody")
        assert caught.value.code == "event_consumer_not_found"


class TestEventsFromSelectOnAConnection:
    """`write_events_from_select_on` (the delivery loop's raw-connection
    variant) hands out positions from the same counter as the session
    writers, wakes listeners at commit, and leaves nothing after a rollback."""

    SELECT = """
    SELECT 'message.sent' AS type, 'message' AS subject_type, t.id AS subject_id,
           json_build_object('n', t.n, 'pct', '100%') AS data
    FROM unnest(CAST(:ids AS text[])) WITH ORDINALITY AS t(id, n)
    """

    async def test_positions_follow_the_session_writers_and_listeners_wake(
        self, db: Database
    ) -> None:
        ws = await new_workspace(db)
        await emit_committed(db, ws, "contact.created")
        async with (
            await psycopg.AsyncConnection.connect(db.libpq_url, autocommit=True) as conn,
            await psycopg.AsyncConnection.connect(db.libpq_url, autocommit=True) as listener,
        ):
            await outbox.listen(listener)
            async with conn.transaction():
                written = await outbox.write_events_from_select_on(
                    conn, ws, self.SELECT, {"ids": ["a", "b", "c"]}
                )
            assert written == {"message.sent": 3}
            assert await outbox.wait_for_events(listener, timeout=10) == {ws}
        await emit_committed(db, ws, "contact.updated")
        assert await stored(db, ws) == [
            (1, "contact.created"),
            (2, "message.sent"),
            (3, "message.sent"),
            (4, "message.sent"),
            (5, "contact.updated"),
        ]

    async def test_a_rolled_back_write_leaves_no_event_and_no_gap(self, db: Database) -> None:
        ws = await new_workspace(db)
        async with await psycopg.AsyncConnection.connect(db.libpq_url, autocommit=True) as conn:
            await conn.execute("BEGIN")
            await outbox.write_events_from_select_on(conn, ws, self.SELECT, {"ids": ["a"]})
            await conn.execute("ROLLBACK")
        await emit_committed(db, ws, "contact.created")
        assert await stored(db, ws) == [(1, "contact.created")]
