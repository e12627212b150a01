"""Webhook throughput: outbox events fanned out to 5 endpoints and sent by
`sendstream worker` processes to a fast local receiver, against the
receiver's ceiling (the same receiver hit by a C load generator) in the
same run.

    .venv/bin/python bench/webhooks_throughput.py [--events 100000] [--workers 2]
        [--endpoints 5] [--latency-events 300]

1. A scratch database (the PostgreSQL service, else an embedded server), a
   workspace allowed to reach loopback, and `--endpoints` endpoints (HMAC
   `v1` signing, max_concurrency `--endpoint-concurrency`, 20) on a receiver in its own process: raw
   asyncio + uvloop, HTTP/1.1 keep-alive, answers 200 "ok" to every POST.
2. N events are written to the outbox in one statement (as a bulk import
   would), before any worker runs.
3. `--workers` worker processes start (`sendstream worker`, delivery loop
   off). Timed from their start until every delivery is `succeeded`:
   `deliveries_per_s` (fan-out included). Peak RSS of each worker from /proc.
4. Latency: with the workers idle, `--latency-events` events are emitted one
   per transaction at about 100/s (500 deliveries/s); `p50_ms`/`p99_ms`
   are an attempt's end minus its event's `occurred_at` (fan-out, claim,
   signing, the request and the outcome's commit).
5. Ceiling: the receiver hit by `wrk` (Debian package `wrk`; 2 threads, 100
   keep-alive connections, POSTs of the same body size for 10 s):
   `ceiling_requests_per_s`, what the receiver itself can answer. Without
   wrk on PATH, a tight loop of one httpx.AsyncClient in one process, whose
   own CPU is then the limit (`ceiling_tool` says which).

The last line printed is one flat JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import make_url
from support import (
    cpu_seconds,
    drop_database,
    fresh_database,
    log,
    rss_mb,
    server_admin_url,
    sqlalchemy_url,
    start_workers,
    stop,
    wait_port,
)

from sendstream.core import migrate
from sendstream.core.db import Database, create_database, install_database
from sendstream.core.outbox import emit, write_events_from_select
from sendstream.core.settings import Settings, override_settings
from sendstream.webhooks.endpoint_service import endpoint_service
from sendstream.webhooks.schemas import WebhookCreate
from sendstream.workspaces.service import workspace_service

GOAL = 3000.0
MASTER_KEY = "YmVuY2gtbWFzdGVyLWtleS0zMi1ieXRlcy1sb25nLSE="
RECEIVER = r"""
import asyncio, sys
import uvloop

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class Receiver(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            length = 0
            for line in self.buffer[:head_end].lower().split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line[15:])
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            self.buffer = self.buffer[end:]
            self.transport.write(OK)


async def main(port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Receiver, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()

uvloop.run(main(int(sys.argv[1])))
"""

EVENT_SELECT = """
SELECT 'contact.updated' AS type, 'contact' AS subject_type, g::text AS subject_id,
       json_build_object('contact_id', g::text, 'email', 'bench' || g || '@example.com',
                         'changes', json_build_object('first_name', 'Ada')) AS data,
       g AS n
FROM generate_series(1, :count) AS g
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_receiver(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])


def bench_settings(url: str) -> Settings:
    return Settings(
        environment="test",
        database_url=url,
        security={"master_key": MASTER_KEY},
        webhooks={"allow_http": True},
    )


async def setup(
    db: Database, receiver_port: int, endpoints: int, args_concurrency: int
) -> uuid.UUID:
    async with db.session() as session:
        workspace = await workspace_service.create_workspace(session, "Bench", slug="bench")
        await endpoint_service.set_private_addresses_allowed(session, workspace.id, True)
        for i in range(endpoints):
            await endpoint_service.create_endpoint(
                session,
                workspace.id,
                WebhookCreate(
                    url=f"http://127.0.0.1:{receiver_port}/hook/{i}",
                    event_types=["contact.*"],
                    max_concurrency=args_concurrency,
                ),
            )
    return workspace.id


async def write_events(db: Database, workspace_id: uuid.UUID, count: int) -> None:
    async with db.session() as session:
        await write_events_from_select(
            session, workspace_id, EVENT_SELECT, {"count": count}, count=count
        )


def worker_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDSTREAM_")}
    env.update(
        SENDSTREAM_DATABASE_URL=url,
        SENDSTREAM_ENVIRONMENT="test",
        SENDSTREAM_SECURITY__MASTER_KEY=MASTER_KEY,
        SENDSTREAM_LOG__LEVEL="WARNING",
        SENDSTREAM_DELIVERY__DELIVERY_LOOP="false",
        SENDSTREAM_WEBHOOKS__ALLOW_HTTP="true",
    )
    return env


def succeeded(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FROM webhook_deliveries"
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_throughput(
    conninfo: str, total: int, workers: list[subprocess.Popen[bytes]], started: float
) -> dict[str, Any]:
    """Until every delivery succeeded; the workers' and their database
    backends' CPU is read at the end, while their connections are open."""
    samples: list[float] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        last_log = started
        while True:
            done, created = succeeded(conn)
            samples.append(sum(rss_mb(p.pid, "VmRSS") for p in workers))
            if done >= total:
                break
            if any(p.poll() is not None for p in workers):
                raise RuntimeError("a worker exited during the run")
            if time.perf_counter() - last_log > 5:
                last_log = time.perf_counter()
                log(f"  {done}/{total} succeeded, {created} created")
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        database = str(psycopg.conninfo.conninfo_to_dict(conninfo)["dbname"])
        worker_cpu = cpu_seconds({p.pid for p in workers})
        database_cpu = cpu_seconds(set(), database)
    return {
        "seconds": elapsed,
        "rss_samples": samples,
        "worker_cpu": worker_cpu,
        "database_cpu": database_cpu,
        "load": load_average(),
    }


async def run_latency(
    db: Database, conninfo: str, workspace_id: uuid.UUID, count: int, endpoints: int
) -> tuple[float, float]:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM webhook_attempts").fetchone()
        after = int(row[0]) if row else 0
    for i in range(count):
        async with db.session() as session:
            emit(session, workspace_id, "contact.updated", {"contact_id": f"lat-{i}"})
        await asyncio.sleep(0.01)
    wanted = count * endpoints
    with psycopg.connect(conninfo) as conn:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM webhook_attempts WHERE id > %s", (after,)
            ).fetchone()
            if row and row[0] >= wanted:
                break
            await asyncio.sleep(0.1)
        row = conn.execute(
            """
            SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms),
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)
            FROM (
                SELECT extract(epoch FROM a.attempted_at - e.occurred_at) * 1000 AS ms
                FROM webhook_attempts a
                JOIN webhook_deliveries d ON d.id = a.delivery_id
                JOIN events e ON e.workspace_id = d.workspace_id
                             AND e.position = d.event_positions[1]
                WHERE a.id > %s
            ) t
            """,
            (after,),
        ).fetchone()
    assert row is not None
    return float(row[0] or 0), float(row[1] or 0)


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.rep("x", %d)
done = function(summary, latency, requests)
  io.write(string.format("ceiling-errors %%d %%d\\n",
    summary.errors.status, summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout))
end
"""


def run_wrk(port: int, concurrency: int, body: bytes, tmp: Path) -> float:
    script = tmp / "post.lua"
    script.write_text(WRK_SCRIPT % len(body))
    url = f"http://127.0.0.1:{port}/hook/ceiling"
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(concurrency), "-d", "10s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = errors = None
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            rate = float(line.split()[1])
        if line.startswith("ceiling-errors"):
            errors = [int(n) for n in line.split()[1:]]
    if rate is None or errors != [0, 0]:
        raise RuntimeError(f"wrk failed or saw errors:\n{out}")
    return rate


async def run_ceiling(port: int, requests: int, concurrency: int, body: bytes) -> float:
    async with httpx.AsyncClient(
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        timeout=30.0,
    ) as client:
        url = f"http://127.0.0.1:{port}/hook/ceiling"
        remaining = requests

        async def one_client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                response = await client.post(
                    url, content=body, headers={"content-type": "application/json"}
                )
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        return requests / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="sendstream-bench-webhooks-"))
    admin, server = server_admin_url(tmp)
    name = f"sendstream_bench_webhooks_{os.getpid()}"
    conninfo = fresh_database(admin, name)
    url = sqlalchemy_url(conninfo)
    settings = bench_settings(url)
    override_settings(settings)
    migrate.upgrade(make_url(url))
    db = create_database(settings)
    install_database(db)
    port = free_port()
    receiver = start_receiver(port)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        wait_port(port, "the receiver")
        workspace_id = await setup(db, port, args.endpoints, args.endpoint_concurrency)
        log(f"writing {args.events} events")
        await write_events(db, workspace_id, args.events)
        total = args.events * args.endpoints
        log(f"{args.workers} workers sending {total} deliveries")
        load_at_start = load_average()
        started = time.perf_counter()
        workers = start_workers(args.workers, worker_env(url), tmp)
        run = run_throughput(conninfo, total, workers, started)
        rate = total / run["seconds"]
        log(f"  {rate:.0f} deliveries/s; latency: {args.latency_events} events")
        p50, p99 = await run_latency(
            db, conninfo, workspace_id, args.latency_events, args.endpoints
        )
        peak = [rss_mb(p.pid) for p in workers]
        stop(workers)
        workers = []
        with psycopg.connect(conninfo) as conn:
            row = conn.execute(
                "SELECT octet_length(payload::text) FROM webhook_deliveries LIMIT 1"
            ).fetchone()
        body = b"x" * (int(row[0]) if row else 300)
        ceiling_tool = "wrk" if shutil.which("wrk") else "httpx"
        log(f"ceiling ({ceiling_tool})")
        if ceiling_tool == "wrk":
            ceiling = run_wrk(port, 100, body, tmp)
        else:
            ceiling = await run_ceiling(port, 30_000, 100, body)
    finally:
        stop(workers)
        receiver.terminate()
        receiver.wait()
        await db.dispose()
        install_database(None)
        override_settings(None)
        drop_database(admin, name)
    return {
        "events": args.events,
        "endpoints": args.endpoints,
        "workers": args.workers,
        "deliveries": total,
        "deliveries_per_s": round(rate, 1),
        "ceiling_requests_per_s": round(ceiling, 1),
        "ceiling_tool": ceiling_tool,
        "ratio_vs_ceiling": round(rate / ceiling, 3),
        "ratio_vs_goal": round(rate / GOAL, 3),
        "p50_ms": round(p50, 1),
        "p99_ms": round(p99, 1),
        "peak_rss_mb": round(max(peak), 1),
        "peak_rss_mb_per_worker": [round(p, 1) for p in peak],
        "run_seconds": round(run["seconds"], 2),
        # CPU per delivery of the worker processes (fan-out included) and of
        # PostgreSQL's backends for this database: on a shared machine these,
        # not the rate, are what compare between runs.
        "worker_cpu_us_per_delivery": round(run["worker_cpu"] / total * 1e6, 1),
        "postgres_cpu_us_per_delivery": round(run["database_cpu"] / total * 1e6, 1),
        "load_average_at_end": run["load"],
        "load_average_at_start": load_at_start,
        "body_bytes": len(body),
        "server": server,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--endpoints", type=int, default=5)
    parser.add_argument("--latency-events", type=int, default=300)
    parser.add_argument(
        "--endpoint-concurrency", type=int, default=20, help="max_concurrency of each endpoint"
    )
    result = asyncio.run(main(parser.parse_args()))
    print(json.dumps(result))
