"""Custom-field filters on 1,000,000 contacts: the GIN index against a scan.

    .venv/bin/python bench/contacts_filter.py [--contacts 1000000]

Fills a scratch database with N contacts in one workspace (set-based, in SQL:
this measures reads, not the import), each with five custom field values, then
times `GET /v1/contacts?where=...`'s query (containment on the JSONB
`attributes`, first page of 50) for a rare value and a common one, with the
`jsonb_path_ops` GIN index and with index scans turned off (what a
non-indexed store would do). Median of 15 runs each.

The last line printed is one flat JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from support import drop_database, fresh_database, log, server_admin_url, sqlalchemy_url

NAME = "ss_bench_contacts_filter"
QUERY = (
    "SELECT id, email FROM contacts WHERE workspace_id = %s AND attributes @> %s::jsonb "
    "ORDER BY id LIMIT 50"
)


def fill(url: str, workspace_id: uuid.UUID, contacts: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO workspaces (id, name, slug) VALUES (%s, 'Bench', 'bench')", (workspace_id,)
        )
        conn.execute(
            """
            INSERT INTO contacts (id, workspace_id, email, email_key, attributes, tags)
            SELECT gen_random_uuid(), %s, 'p' || i || '@example.com', 'p' || i || '@example.com',
                   jsonb_build_object(
                       'plan', (ARRAY['free', 'pro', 'team'])[1 + i %% 3],
                       'seats', i %% 500,
                       'vip', i %% 1000 = 0,
                       'country', (ARRAY['fr', 'de', 'us', 'gb', 'jp'])[1 + i %% 5],
                       'account', 'acct-' || i),
                   ARRAY['bench']
            FROM generate_series(1, %s) AS i
            """,
            (workspace_id, contacts),
        )
        conn.execute("ANALYZE contacts")


def median_ms(url: str, workspace_id: uuid.UUID, where: dict[str, object], indexed: bool) -> float:
    times = []
    with psycopg.connect(url, autocommit=True) as conn:
        if not indexed:
            conn.execute("SET enable_bitmapscan = off")
            conn.execute("SET enable_indexscan = off")
        payload = json.dumps(where)
        conn.execute(QUERY, (workspace_id, payload)).fetchall()  # warm the cache
        for _ in range(15):
            began = time.perf_counter()
            conn.execute(QUERY, (workspace_id, payload)).fetchall()
            times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    args = parser.parse_args()
    from sqlalchemy import make_url

    from sendstream.core import migrate

    workspace_id = uuid.uuid4()
    with tempfile.TemporaryDirectory(prefix="ss-bench-") as tmp:
        admin, server = server_admin_url(Path(tmp))
        url = fresh_database(admin, NAME)
        try:
            migrate.upgrade(make_url(sqlalchemy_url(url)))
            began = time.perf_counter()
            fill(url, workspace_id, args.contacts)
            log(f"{args.contacts} contacts in {time.perf_counter() - began:.1f}s ({server})")
            rare = {"account": "acct-777777"}
            common = {"plan": "pro", "country": "de"}
            result = {
                "contacts": args.contacts,
                "rare_value_gin_p50_ms": round(median_ms(url, workspace_id, rare, True), 2),
                "rare_value_scan_p50_ms": round(median_ms(url, workspace_id, rare, False), 2),
                "common_value_gin_p50_ms": round(median_ms(url, workspace_id, common, True), 2),
                "common_value_scan_p50_ms": round(median_ms(url, workspace_id, common, False), 2),
            }
        finally:
            drop_database(admin, NAME)
    result["ratio_rare_scan_vs_gin"] = round(
        result["rare_value_scan_p50_ms"] / result["rare_value_gin_p50_ms"], 1
    )
    result.update(server=server, cpus=os.cpu_count(), python=platform.python_version())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
