"""Contact import throughput: a 1,000,000-row CSV into an empty workspace,
then the same file with 10% of the rows changed (the update path).

    .venv/bin/python bench/contacts_import.py [--rows 1000000] [--chunk-rows 20000] [--lanes 2]
        [--events summary|each]

Creates a scratch database on the PostgreSQL service (BENCH_DATABASE_URL,
default postgresql://postgres@127.0.0.1:5432/postgres; an embedded server
when the service does not answer), migrates it, and drops it at the end.
The CSV has email, first and last name, 5 custom fields (enum, number, date,
boolean, text) and 2 tags; it is written to a temporary folder first
(outside the timing). Each phase runs the import exactly as `sendstream
contacts import` does (same service code, in-process, one transaction per
chunk, one event per changed contact); the time is from start to the
import's completion, file detection included. `--events` is the import's
`events` option: `summary` (the default, as for the API and the CLI)
announces the contacts it creates in one `contact_import.completed`, `each`
also writes one `contact.created` per contact.

Goals on the 2-core machine: >= 50,000 rows/s first import, >= 25,000 rows/s
update import, peak RSS < 300 MB. The last line printed is one flat JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import make_url
from support import drop_database, fresh_database, log, server_admin_url, sqlalchemy_url

PLANS = ("free", "pro", "team")
FIELDS = (
    ("plan", "enum", json.dumps(PLANS)),
    ("score", "number", None),
    ("signup_date", "date", None),
    ("vip", "boolean", None),
    ("city", "text", None),
)


def write_csv(path: Path, rows: int, *, changed_every: int | None = None) -> int:
    """The bench file; with `changed_every`, every Nth row differs from the
    first file (name, score and a tag). Returns the rows changed."""
    rng = random.Random(7)
    changed = 0
    with path.open("w", newline="") as out:
        out.write("email,first_name,last_name,plan,score,signup_date,vip,city,tags\n")
        lines = []
        for i in range(rows):
            first = f"First{i}"
            score = f"{rng.randrange(100_000) / 10}"
            tag = f"t{i % 20}"
            if changed_every and i % changed_every == 0:
                first, score, tag = f"Changed{i}", "1.5", "changed"
                changed += 1
            lines.append(
                f"user{i}@example{i % 997}.com,{first},Last{i},{PLANS[i % 3]},{score},"
                f"20{10 + i % 15}-{1 + i % 12:02d}-{1 + i % 28:02d},"
                f"{'true' if i % 2 else 'false'},City {i % 5000},{tag};g{i % 7}\n"
            )
            if len(lines) == 10_000:
                out.writelines(lines)
                lines.clear()
        out.writelines(lines)
    return changed


async def run(
    url: str, first: Path, second: Path, chunk_rows: int, lanes: int, events: str
) -> dict[str, Any]:
    import sendstream.models.all  # noqa: F401  (every table known to the ORM)
    from sendstream.contacts.imports import import_service
    from sendstream.core import migrate
    from sendstream.core.db import create_database, install_database
    from sendstream.core.settings import Settings, override_settings
    from sendstream.models.contact_import import ContactImport

    migrate.upgrade(make_url(url).set(drivername="postgresql+psycopg"))
    settings = Settings(
        database_url=url,
        security={"master_key": "YmVuY2gtbWFzdGVyLWtleS0zMi1ieXRlcy1sb25nISE="},
        log={"level": "WARNING"},
    )
    override_settings(settings)
    db = create_database(settings)
    install_database(db)
    workspace_id = uuid.uuid4()
    async with db.session() as session:
        from sqlalchemy import text

        await session.execute(
            text("INSERT INTO workspaces (id, name, slug) VALUES (:id, 'Bench', 'bench')"),
            {"id": workspace_id},
        )
        for key, kind, options in FIELDS:
            await session.execute(
                text(
                    "INSERT INTO fields (id, workspace_id, key, label, type, options) "
                    "VALUES (gen_random_uuid(), :ws, :key, :key, :type, CAST(:options AS jsonb))"
                ),
                {"ws": workspace_id, "key": key, "type": kind, "options": options},
            )

    async def one(path: Path) -> tuple[ContactImport, float]:
        started = time.perf_counter()
        with path.open("rb") as source:
            async with db.session() as session:
                begun = await import_service.start_local(
                    session,
                    workspace_id,
                    source=source,
                    filename=path.name,
                    events="each" if events == "each" else "summary",
                )
                begun.chunk_rows = chunk_rows
            async with db.session() as session:
                done = await import_service.run_import(
                    session, begun.id, source, commit=session.commit, lanes=lanes
                )
        assert done is not None
        return done, time.perf_counter() - started

    try:
        first_done, first_seconds = await one(first)
        log(f"first import: {first_done.status} in {first_seconds:.1f}s")
        second_done, second_seconds = await one(second)
        log(f"update import: {second_done.status} in {second_seconds:.1f}s")
        async with db.engine.connect() as conn:
            from sqlalchemy import text

            events = await conn.scalar(text("SELECT count(*) FROM events"))
    finally:
        await db.dispose()
    return {
        "first": first_done,
        "first_seconds": first_seconds,
        "second": second_done,
        "second_seconds": second_seconds,
        "events": events,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=20_000)
    parser.add_argument(
        "--lanes", type=int, default=2, help="connections merging chunks (1: one at a time)"
    )
    parser.add_argument(
        "--events",
        choices=("summary", "each"),
        default="summary",
        help="how the import announces the contacts it creates (the import's `events`)",
    )
    args = parser.parse_args()
    name = f"sendstream_bench_import_{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp:
        first, second = Path(tmp) / "contacts.csv", Path(tmp) / "contacts-changed.csv"
        log(f"writing {args.rows:,} rows ...")
        write_csv(first, args.rows)
        changed = write_csv(second, args.rows, changed_every=10)
        log(f"file: {first.stat().st_size / 1e6:.0f} MB")
        admin, server = server_admin_url(Path(tmp))
        url = sqlalchemy_url(fresh_database(admin, name))
        try:
            result = asyncio.run(run(url, first, second, args.chunk_rows, args.lanes, args.events))
        finally:
            drop_database(admin, name)
    first_done, second_done = result["first"], result["second"]
    assert first_done.status == "completed", first_done.error
    assert second_done.status == "completed", second_done.error
    assert first_done.created == args.rows, first_done.created
    assert (second_done.updated, second_done.unchanged) == (changed, args.rows - changed)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    first_rate = args.rows / result["first_seconds"]
    update_rate = args.rows / result["second_seconds"]
    print(
        json.dumps(
            {
                "rows": args.rows,
                "first_import_rows_per_s": round(first_rate, 1),
                "update_import_rows_per_s": round(update_rate, 1),
                "peak_rss_mb": round(peak_mb, 1),
                "ratio_first_import_vs_goal": round(first_rate / 50_000, 3),
                "ratio_update_import_vs_goal": round(update_rate / 25_000, 3),
                "first_import_seconds": round(result["first_seconds"], 2),
                "update_import_seconds": round(result["second_seconds"], 2),
                "rows_changed": changed,
                "events_written": result["events"],
                "events": args.events,
                "chunk_rows": args.chunk_rows,
                "lanes": args.lanes,
                "server": server,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
