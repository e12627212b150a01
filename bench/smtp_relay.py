"""SMTP submission relay: Postfix's `smtp-source` submitting messages to the
relay (`delivery.submission.SubmissionServer`), each one parsed, checked and
queued through the send API's pipeline and committed before its 250, against
the ceiling: the same `smtp-source` run into Postfix's `smtp-sink`.

    .venv/bin/python bench/smtp_relay.py [--messages 50000] [--sessions 200] [--processes 1]

1. A scratch database (the PostgreSQL service, else an embedded server), a
   workspace with a verified sending domain and an SMTP credential.
2. The relay runs in its own process (uvloop), with loopback as a trusted
   network logged in as that credential (`smtp.submission_trusted_networks`:
   smtp-source cannot AUTH) and plaintext allowed on loopback.
3. `smtp-source -d -N` submits `--messages` messages of about 1.5 KB (text
   and HTML parts, X-Sendstream-Tags/-Metadata, a distinct recipient each)
   over `--sessions` parallel connections; `msgs_per_s` is messages over the
   wall time of that run (each 250 comes after the commit). The queued rows
   are counted afterwards; `relay_cpu_us_per_msg` and
   `postgres_cpu_us_per_msg` say where the CPU went.
4. Ceiling: the same smtp-source run into smtp-sink. Floors of the protocol
   layer: the same run into a server answering 250 without doing anything,
   in one process: the relay's own protocol (delivery/smtp_server.py,
   `protocol_noop_*`) and aiosmtpd, which the relay used before
   (`aiosmtpd_noop_*`). `--relay-only` skips the ceiling and the floors.

The last line printed is one flat JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import make_url, text
from support import (
    ROOT,
    cpu_seconds,
    drop_database,
    fresh_database,
    log,
    rss_mb,
    server_admin_url,
    sqlalchemy_url,
    stop,
    wait_port,
)

DOMAIN = "bench.example"
GOAL = 1000.0
USERNAME = "bench-relay"
MESSAGE = f"""From: Bench Shop <orders@{DOMAIN}>
To: Customer <customer@example.org>
Subject: Your order has shipped
X-Sendstream-Tags: order, shipping
X-Sendstream-Metadata: {{"order": 4711}}
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b1"

--b1
Content-Type: text/plain; charset=utf-8

Hello,

your order 4711 has shipped and is on its way. Track it at
https://shop.example.com/orders/4711/tracking

Thank you for shopping with us.
--b1
Content-Type: text/html; charset=utf-8

<html><body><p>Hello,</p>
<p>your order <b>4711</b> has shipped and is on its way.
<a href="https://shop.example.com/orders/4711/tracking">Track it</a>.</p>
<p>Thank you for shopping with us.</p></body></html>
--b1--
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def postgres_pids(conninfo: str) -> list[int]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'sendstream'"
        ).fetchall()
    return [r[0] for r in rows]


def smtp_source(port: int, total: int, sessions: int, path: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            "/usr/sbin/smtp-source",
            "-d",
            "-N",
            "-s",
            str(sessions),
            "-m",
            str(total),
            "-F",
            str(path),
            "-f",
            f"app@{DOMAIN}",
            "-t",
            "customer@example.org",
            f"127.0.0.1:{port}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def wait_relay(relay: subprocess.Popen[bytes], port: int, tmp: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if relay.poll() is not None:
            raise RuntimeError(f"the relay exited; see {tmp / 'relay.log'}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the relay did not listen on {port}; see {tmp / 'relay.log'}")


def start_sink(port: int) -> subprocess.Popen[bytes]:
    cmd = ["/usr/sbin/smtp-sink"]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]
    cmd += [f"127.0.0.1:{port}", "1000"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def setup(url: str, key: str) -> None:
    from sendstream.core import migrate
    from sendstream.core.db import create_database, install_database
    from sendstream.core.settings import Settings, override_settings
    from sendstream.delivery.domain_service import domain_service
    from sendstream.delivery.smtp_credential_schemas import SmtpCredentialCreate
    from sendstream.delivery.smtp_credential_service import smtp_credential_service
    from sendstream.workspaces.service import workspace_service

    settings = Settings(environment="test", database_url=url, security={"master_key": key})
    override_settings(settings)
    migrate.upgrade(make_url(url))
    db = create_database(settings)
    install_database(db)
    try:
        async with db.session() as session:
            workspace = await workspace_service.create_workspace(session, "Bench", slug="bench")
            domain = await domain_service.create_domain(session, workspace.id, name=DOMAIN)
            await smtp_credential_service.create_credential(
                session,
                workspace.id,
                SmtpCredentialCreate(name="bench", username=USERNAME),
            )
        async with db.engine.begin() as conn:
            await conn.execute(
                text("UPDATE sending_domains SET status = 'verified' WHERE id = :id"),
                {"id": domain.id},
            )
    finally:
        await db.dispose()
        install_database(None)


def relay_env(url: str, key: str, port: int, args: argparse.Namespace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDSTREAM_")}
    env.update(
        SENDSTREAM_DATABASE_URL=url,
        SENDSTREAM_ENVIRONMENT="test",
        SENDSTREAM_SECURITY__MASTER_KEY=key,
        SENDSTREAM_LOG__LEVEL="WARNING",
        SENDSTREAM_SMTP__SUBMISSION_PORT=str(port),
        SENDSTREAM_SMTP__SUBMISSION_ALLOW_PLAINTEXT_LOOPBACK="true",
        SENDSTREAM_SMTP__SUBMISSION_TRUSTED_NETWORKS='["127.0.0.0/8"]',
        SENDSTREAM_SMTP__SUBMISSION_TRUSTED_USERNAME=USERNAME,
        SENDSTREAM_SMTP__HOSTNAME="relay.bench",
        SENDSTREAM_SMTP__SUBMISSION_REUSE_PORT="true",
        SENDSTREAM_SMTP__SUBMISSION_BATCH_SIZE=str(args.batch),
        SENDSTREAM_SMTP__SUBMISSION_WRITE_CONCURRENCY=str(args.writers),
        SENDSTREAM_DATABASE__POOL_SIZE="4",
    )
    return env


def serve_noop(port: int) -> None:
    """The protocol floor: aiosmtpd answering 250 to every message, doing
    nothing else (no parsing, no database), in one uvloop process."""
    from aiosmtpd.smtp import SMTP, Envelope, Session

    class Accept:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            return "250 2.0.0 Ok"

    async def run() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(
            lambda: SMTP(Accept(), hostname="floor.bench", loop=loop), "127.0.0.1", port
        )
        stopping = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        await stopping.wait()

    import uvloop

    uvloop.run(run())


def serve_lean_noop(port: int) -> None:
    """The floor of the relay's own protocol (delivery/smtp_server.py): it
    answers 250 to every message and does nothing else, in one uvloop process."""
    from sendstream.delivery.smtp_server import SmtpConfig, SmtpServerProtocol

    async def run() -> None:
        loop = asyncio.get_running_loop()
        config = SmtpConfig(
            hostname="floor.bench", ident="floor", data_size_limit=31_457_280, timeout=300
        )
        await loop.create_server(lambda: SmtpServerProtocol(config), "127.0.0.1", port)
        stopping = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        await stopping.wait()

    import uvloop

    uvloop.run(run())


def run_floor(
    args: argparse.Namespace, path: Path, tmp: Path, server: str = "--serve-noop"
) -> tuple[float, float]:
    """(msgs/s, CPU µs a message) of `serve_noop` (or `serve_lean_noop`)
    under the same smtp-source run."""
    port = _free_port()
    with (tmp / "floor.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, __file__, server, str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_relay(proc, port, tmp)
        before = cpu_seconds([proc.pid])
        seconds = smtp_source(port, args.messages, args.sessions, path)
        cpu = cpu_seconds([proc.pid]) - before
    finally:
        stop([proc])
    return args.messages / seconds, cpu / args.messages * 1e6


def serve() -> None:
    """The relay process: listen until SIGTERM."""
    from sendstream.core.logging import configure_logging
    from sendstream.core.settings import get_settings
    from sendstream.delivery.submission import SubmissionServer
    from sendstream.runner import _settle_heap

    async def run() -> None:
        settings = get_settings()
        configure_logging()
        server = SubmissionServer(settings)
        await server.start()
        # What `sendstream smtp` does once it listens (runner._smtp): the
        # heap so far out of the collector's sight, collections less often.
        _settle_heap()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        await stopping.wait()
        await server.stop()

    profile = os.environ.get("BENCH_RELAY_PROFILE")
    if profile:
        import cProfile

        cProfile.runctx("asyncio.run(run())", globals(), locals(), profile)
        return
    try:
        import uvloop

        uvloop.run(run())
    except ImportError:
        asyncio.run(run())


def main(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    admin, server = server_admin_url(tmp)
    name = f"bench_relay_{os.getpid()}"
    conninfo = fresh_database(admin, name)
    url = sqlalchemy_url(conninfo)
    key = base64.b64encode(os.urandom(32)).decode()
    path = tmp / "message.eml"
    path.write_text(MESSAGE)
    port, sink_port = _free_port(), _free_port()
    relays: list[subprocess.Popen[bytes]] = []
    sink = start_sink(sink_port)
    try:
        asyncio.run(setup(url, key))
        for n in range(args.processes):
            with (tmp / f"relay{n}.log").open("wb") as out:
                relays.append(
                    subprocess.Popen(
                        [sys.executable, __file__, "--serve"],
                        env=relay_env(url, key, port, args),
                        cwd=ROOT,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        for relay in relays:
            wait_relay(relay, port, tmp)
        # Every process listening (SO_REUSEPORT): one connection each is not
        # enough to tell, so give the last one a moment to bind.
        time.sleep(1.0)
        wait_port(sink_port, "smtp-sink")
        log(f"submitting {args.messages} messages over {args.sessions} sessions ({server})")
        pids = [r.pid for r in relays]
        cpu_before = cpu_seconds(pids)
        pg_before = {p: cpu_seconds([p]) for p in postgres_pids(conninfo)}
        seconds = smtp_source(port, args.messages, args.sessions, path)
        relay_cpu = cpu_seconds(pids) - cpu_before
        pg_cpu = sum(cpu_seconds([p]) - pg_before.get(p, 0.0) for p in postgres_pids(conninfo))
        rate = args.messages / seconds
        log(f"  {rate:.0f} msg/s accepted")
        peak = max(rss_mb(p) for p in pids)
        with psycopg.connect(conninfo) as conn:
            row = conn.execute("SELECT count(*) FROM messages WHERE status = 'queued'").fetchone()
            queued = int(row[0]) if row else 0
            row = conn.execute(
                "SELECT count(*) FROM events WHERE type = 'message.queued'"
            ).fetchone()
            events = int(row[0]) if row else 0
            # One group transaction, one now(): rows per distinct
            # next_attempt_at is the average group size.
            row = conn.execute("SELECT count(DISTINCT next_attempt_at) FROM messages").fetchone()
            groups = int(row[0]) if row and row[0] else 1
        ceiling = floor = floor_cpu = lean = lean_cpu = 0.0
        if not args.relay_only:
            log(f"  ceiling: smtp-source into smtp-sink, {args.messages} messages")
            ceiling = args.messages / smtp_source(sink_port, args.messages, args.sessions, path)
            log("  floor: the same run into aiosmtpd answering 250, nothing else")
            floor, floor_cpu = run_floor(args, path, tmp)
            log("  floor: the same run into the relay's own protocol answering 250")
            lean, lean_cpu = run_floor(args, path, tmp, "--serve-lean-noop")
    finally:
        stop(relays)
        sink.terminate()
        sink.wait()
        drop_database(admin, name)
    return {
        "messages": args.messages,
        "msgs_per_s": round(rate, 1),
        "queued": queued,
        "queued_events": events,
        "avg_group_size": round(queued / groups, 1),
        "peak_rss_mb": round(peak, 1),
        "relay_cpu_us_per_msg": round(relay_cpu / args.messages * 1e6, 1),
        "postgres_cpu_us_per_msg": round(pg_cpu / args.messages * 1e6, 1),
        "sessions": args.sessions,
        "relay_processes": args.processes,
        "message_bytes": len(MESSAGE.replace("\n", "\r\n")),
        "seconds": round(seconds, 2),
        "ratio_vs_goal": round(rate / GOAL, 3),
        "server": server,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "aiosmtpd_noop_msgs_per_s": round(floor, 1),
        "aiosmtpd_noop_cpu_us_per_msg": round(floor_cpu, 1),
        "protocol_noop_msgs_per_s": round(lean, 1),
        "protocol_noop_cpu_us_per_msg": round(lean_cpu, 1),
        "ceiling_msgs_per_s": round(ceiling, 1),
        "ratio_ceiling": round(rate / ceiling, 3) if ceiling else None,
    }


if __name__ == "__main__":
    if "--serve" in sys.argv:
        serve()
        sys.exit(0)
    if "--serve-noop" in sys.argv:
        serve_noop(int(sys.argv[-1]))
        sys.exit(0)
    if "--serve-lean-noop" in sys.argv:
        serve_lean_noop(int(sys.argv[-1]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--sessions", type=int, default=200, help="parallel SMTP sessions")
    parser.add_argument("--processes", type=int, default=1, help="relay processes (SO_REUSEPORT)")
    parser.add_argument("--writers", type=int, default=1, help="group transactions per process")
    parser.add_argument("--batch", type=int, default=200, help="messages per group at most")
    parser.add_argument(
        "--relay-only", action="store_true", help="skip the smtp-sink and aiosmtpd baselines"
    )
    result = main(parser.parse_args())
    print(json.dumps(result))
