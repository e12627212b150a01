"""Batch-upsert API throughput: contacts/s through `POST /v1/contacts/batch`.

    .venv/bin/python bench/contacts_batch_api.py [--contacts 200000] [--clients 4] [--servers 2]

Starts `sendstream server` processes on a scratch database, then N concurrent
clients each send 1,000-contact requests (round-robin over the servers) until
every contact is in: first as new contacts (create path), then again with one
field changed on every contact (update path). Every request must answer 200
with no rejected item, or the run fails.

Besides the rates it reports the CPU time the server processes and the
database's backends spent per 1,000-contact request in each phase (read from
/proc, Linux only): on a shared machine those move much less than the rates.

The last line printed is one flat JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from support import (
    ROOT,
    cpu_seconds,
    drop_database,
    fresh_database,
    log,
    server_admin_url,
    sqlalchemy_url,
    stop,
)

BATCH = 1000
GOAL_CONTACTS_PER_S = 10_000
DATABASE = "ss_bench_contacts_api"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sendstream(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "sendstream.cli", *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return out.stdout


def start_servers(
    env: dict[str, str], count: int
) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    procs, urls = [], []
    for _ in range(count):
        port = free_port()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "sendstream.cli", "server", "--port", str(port)],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 60
    for url in urls:
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server {url} did not start")
            time.sleep(0.1)
    return procs, urls


def people(start: int, plan: str) -> list[dict[str, Any]]:
    return [
        {
            "email": f"person{i}@example{i % 97}.com",
            "first_name": f"First{i}",
            "last_name": f"Last{i}",
            "tags": ["bench", f"cohort{i % 10}"],
            "attributes": {"plan": plan, "seats": i % 50, "vip": i % 7 == 0},
        }
        for i in range(start, start + BATCH)
    ]


async def phase(urls: list[str], key: str, total: int, clients: int, plan: str, want: str) -> float:
    starts = list(range(0, total, BATCH))
    queue: asyncio.Queue[int] = asyncio.Queue()
    for start in starts:
        queue.put_nowait(start)
    headers = {"Authorization": f"Bearer {key}"}

    async def client(n: int) -> None:
        async with httpx.AsyncClient(base_url=urls[n % len(urls)], timeout=120) as http:
            while not queue.empty():
                start = queue.get_nowait()
                body = {"contacts": people(start, plan)}
                response = await http.post("/v1/contacts/batch", json=body, headers=headers)
                if response.status_code == 429:
                    await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                    queue.put_nowait(start)
                    continue
                response.raise_for_status()
                summary = response.json()
                if summary[want] != BATCH:
                    raise RuntimeError(f"expected {BATCH} {want}: {json.dumps(summary)[:500]}")

    began = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--servers", type=int, default=2)
    args = parser.parse_args()
    total = args.contacts - args.contacts % BATCH

    with tempfile.TemporaryDirectory(prefix="ss-bench-") as tmp:
        admin, server = server_admin_url(Path(tmp))
        url = fresh_database(admin, DATABASE)
        env = {
            **os.environ,
            "SENDSTREAM_DATABASE_URL": sqlalchemy_url(url),
            "SENDSTREAM_ENVIRONMENT": "production",
            "SENDSTREAM_SECURITY__MASTER_KEY": "YmVuY2gtbWFzdGVyLWtleS0zMi1ieXRlcy1sb25nISE=",
            "SENDSTREAM_LOG__LEVEL": "WARNING",
            # The bench measures the write path, not the per-key rate limit.
            "SENDSTREAM_API__RATE_LIMIT_PER_SECOND": "10000",
            "SENDSTREAM_API__RATE_LIMIT_BURST": "10000",
            "SENDSTREAM_API__MAX_BODY_BYTES": str(8 * 1024 * 1024),
        }
        procs: list[subprocess.Popen[bytes]] = []
        try:
            sendstream(env, "db", "upgrade")
            created = json.loads(
                sendstream(env, "workspaces", "create", "Bench", "--with-key", "--json")
            )
            key = created["api_key"]["key"]
            http = httpx.Client(base_url="", headers={"Authorization": f"Bearer {key}"})
            procs, urls = start_servers(env, args.servers)
            for field in (
                {"key": "plan", "type": "enum", "options": ["free", "pro", "team"]},
                {"key": "seats", "type": "number"},
                {"key": "vip", "type": "boolean"},
            ):
                answer = http.post(f"{urls[0]}/v1/fields", json=field)
                if answer.status_code != 201:
                    raise RuntimeError(f"declaring {field}: {answer.text}")
            log(f"server: {server}; {total} contacts, {args.clients} clients x {args.servers}")
            pids = {p.pid for p in procs}
            cpu: dict[str, float] = {}

            def measured(name: str, plan: str, want: str) -> float:
                servers_before = cpu_seconds(pids)
                database_before = cpu_seconds(set(), DATABASE)
                seconds = asyncio.run(phase(urls, key, total, args.clients, plan, want))
                batches = total / BATCH
                servers_cpu = cpu_seconds(pids) - servers_before
                database_cpu = cpu_seconds(set(), DATABASE) - database_before
                cpu[f"{name}_server_cpu_ms_per_request"] = round(servers_cpu / batches * 1000, 1)
                cpu[f"{name}_postgres_cpu_ms_per_request"] = round(database_cpu / batches * 1000, 1)
                log(
                    f"{name}: {total / seconds:.0f} contacts/s; CPU per request: servers "
                    f"{servers_cpu / batches * 1000:.0f} ms, PostgreSQL "
                    f"{database_cpu / batches * 1000:.0f} ms"
                )
                return seconds

            create_s = measured("create", "free", "created")
            update_s = measured("update", "pro", "updated")
        finally:
            stop(procs)
            drop_database(admin, DATABASE)

    create_rate, update_rate = total / create_s, total / update_s
    result = {
        "contacts": total,
        "batch_size": BATCH,
        "clients": args.clients,
        "servers": args.servers,
        "create_contacts_per_s": round(create_rate, 1),
        "update_contacts_per_s": round(update_rate, 1),
        "goal_contacts_per_s": GOAL_CONTACTS_PER_S,
        "ratio_create_vs_goal": round(create_rate / GOAL_CONTACTS_PER_S, 3),
        "ratio_update_vs_goal": round(update_rate / GOAL_CONTACTS_PER_S, 3),
        **cpu,
        "server": server,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
