"""Send throughput: queued messages rendered, built, DKIM-signed (RSA-2048)
and delivered by `sendstream worker` processes to Postfix's `smtp-sink`,
against the ceiling (`smtp-source` pushing pre-built messages to the same
sink) and a naive baseline (stdlib `EmailMessage` + dkimpy + smtplib, one at
a time), in the same run.

    .venv/bin/python bench/send_throughput.py [--messages 100000] [--workers 2]
        [--stream transactional|marketing] [--baseline-messages 2000]
        [--latency-messages 300]

1. A scratch database (the PostgreSQL service, else an embedded server), a
   workspace with a verified sending domain (RSA-2048 DKIM key) and a
   template of about 10 KB once rendered (HTML and text, 30 rows of
   per-recipient data, a non-ASCII name and subject).
2. N messages are queued through the send API's service (500 recipients per
   call, each with its own data; queue-time checks and renders included:
   `enqueue_msgs_per_s`) scheduled far ahead, so nothing is sent yet.
3. `--workers` worker processes start (`sendstream worker`, uvloop) with the
   SMTP transport pointed at `smtp-sink`; when both listen, one UPDATE makes
   every message due (and NOTIFY wakes them). Timed by the database's clock
   from that commit until the last outcome is committed: `msgs_per_s` (the
   progress poll, twice a second, does not move the figure).
   `worker_cpu_us_per_msg`, `postgres_cpu_us_per_msg` (the backends serving
   the workers) and `sink_cpu_us_per_msg` say where the CPU went. Peak RSS of each
   worker process is read from /proc at the end.
4. Latency: with the workers idle, `--latency-messages` single messages are
   queued one per transaction at about 50/s; `p50_ms`/`p99_ms` are
   `sent_at - created_at` (the queueing transaction's start to the relay's
   250, outcome recorded).
5. Ceiling: `smtp-source -d` sends N copies of one signed message of the same
   size over as many connections as the workers may open.
6. Baseline: `--baseline-messages` messages rendered with plain Jinja2,
   built with `EmailMessage`, signed with dkimpy (RSA-2048,
   relaxed/relaxed), sent with smtplib over one connection, one at a time.

About 60 s at --messages 20000 on the 2-core machine. The last line printed
is one flat JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import smtplib
import socket
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address as StdAddress
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import dkim as dkimpy  # type: ignore[import-untyped]
import jinja2
import psycopg
from cryptography.hazmat.primitives import serialization
from sqlalchemy import make_url, text
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
from sendstream.core.settings import Settings, override_settings
from sendstream.delivery import compose
from sendstream.delivery.dkim import SIGNED_HEADERS, DkimKey
from sendstream.delivery.domain_service import domain_service
from sendstream.delivery.message_schemas import MessageCreate, RecipientInput
from sendstream.delivery.message_service import message_service
from sendstream.templates.render import CompiledTemplate
from sendstream.templates.schemas import TemplateCreate
from sendstream.templates.service import template_service
from sendstream.workspaces.service import workspace_service

DOMAIN = "bench.example"
SENDER = f"Bench Shop <news@{DOMAIN}>"
GOAL = 1500.0
QUEUE_CHUNK = 500
SUBJECT = "{{ name.split()[0] }}, Ihre Angebote der Woche — bis zu 30 % günstiger"
HTML = """<html><head><style>td { padding: 8px 12px; }</style></head><body>
<p>Hallo {{ name }},</p>
<p>unsere Auswahl für Sie:</p>
<table>
{% for row in items %}<tr><td style="font-family:Arial,sans-serif;color:#333">
<b>{{ row.title }}</b> — ab {{ row.price }} €<br>
<a href="https://shop.example.com/p/{{ row.item }}?utm_source=newsletter&amp;r={{ n }}">\
Jetzt ansehen</a>
</td></tr>
{% endfor %}</table>
<p>Viele Grüße<br>Ihr Team</p></body></html>
"""
TEXT = """Hallo {{ name }},

unsere Auswahl für Sie:

{% for row in items %}* {{ row.title }} — ab {{ row.price }} €: \
https://shop.example.com/p/{{ row.item }}?r={{ n }}
{% endfor %}
Viele Grüße
Ihr Team
"""


def personal(n: int) -> dict[str, Any]:
    return {
        "n": n,
        "name": f"José Müller-Łukasiewicz {n}",
        "items": [
            {"title": f"Artikel {n % 97}-{i}", "price": f"{(n + i) % 90 + 9},99", "item": n * 7 + i}
            for i in range(30)
        ],
    }


# --- setup and queueing (in this process, through the service layer)


async def setup(db: Database, stream: str) -> tuple[uuid.UUID, list[DkimKey], CompiledTemplate]:
    async with db.session() as session:
        workspace = await workspace_service.create_workspace(session, "Bench", slug="bench")
        domain = await domain_service.create_domain(session, workspace.id, name=DOMAIN)
    async with db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE sending_domains SET status = 'verified' WHERE id = :id"),
            {"id": domain.id},
        )
    body = TemplateCreate(
        key="newsletter", name="Newsletter", subject=SUBJECT, html=HTML, text=TEXT, strict=True
    )
    async with db.session() as session:
        await template_service.create_template(session, workspace.id, body, None)
        keys = await domain_service.signing_keys(session, workspace.id, DOMAIN)
        renderer = await template_service.get_renderer(session, workspace.id, "newsletter")
    return workspace.id, keys, renderer


async def queue(
    db: Database, workspace_id: uuid.UUID, first: int, count: int, stream: str, hold: bool
) -> list[uuid.UUID]:
    send_at = datetime.now(UTC) + timedelta(days=7) if hold else None
    body = MessageCreate.model_validate(
        {
            "from": SENDER,
            "template": "newsletter",
            "stream": stream,
            "send_at": send_at,
            "to": [
                RecipientInput(email=f"kunde{n}@example.org", data=personal(n))
                for n in range(first, first + count)
            ],
        }
    )
    async with db.session() as session:
        queued = await message_service.send_message(session, workspace_id, body)
    return [m.id for m in queued.messages]


# --- processes


def start_sink(port: int) -> subprocess.Popen[bytes]:
    cmd = ["/usr/sbin/smtp-sink"]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]
    cmd += [f"127.0.0.1:{port}", "1000"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def worker_env(args: argparse.Namespace, url: str, key: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDSTREAM_")}
    env.update(
        SENDSTREAM_DATABASE_URL=url,
        SENDSTREAM_ENVIRONMENT="test",
        SENDSTREAM_SMTP_URL=f"smtp://127.0.0.1:{port}",
        SENDSTREAM_SECURITY__MASTER_KEY=key,
        SENDSTREAM_LOG__LEVEL="WARNING",
        SENDSTREAM_DELIVERY__WORKER_CONCURRENCY=str(args.concurrency),
        SENDSTREAM_DELIVERY__WORKER_BATCH_SIZE=str(args.batch),
        SENDSTREAM_DELIVERY__SMTP_MAX_CONNECTIONS=str(args.connections),
        SENDSTREAM_DELIVERY__DOMAIN_CONCURRENCY=str(args.concurrency),
        SENDSTREAM_TRACKING__BASE_URL="https://track.bench.example",
    )
    return env


def listening(conninfo: str) -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN sendstream_messages'"
        ).fetchone()
    return int(row[0]) if row else 0


def backends(conn: psycopg.Connection[Any]) -> list[int]:
    """The server processes serving this database (the workers' connections)."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid()"
    ).fetchall()
    return [int(r[0]) for r in rows]


def counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    rows = conn.execute("SELECT status, count(*) FROM messages GROUP BY status").fetchall()
    return {str(s): int(n) for s, n in rows}


# --- the measured phases


def run_send(
    conninfo: str, total: int, workers: list[subprocess.Popen[bytes]], sink: int
) -> dict[str, Any]:
    """Times the send and says where its CPU went: the worker processes, the
    PostgreSQL backends serving them (the server is on this machine), the sink."""
    samples: list[float] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        servers = backends(conn)
        groups = {"worker": [p.pid for p in workers], "postgres": servers, "sink": [sink]}
        cpu_before = {name: cpu_seconds(pids) for name, pids in groups.items()}
        conn.execute("UPDATE messages SET next_attempt_at = now()")
        conn.execute("NOTIFY sendstream_messages")
        # Timed by the database's clock: from just after that commit to the
        # commit of the last outcome, so how often this loop looks (a count
        # over the whole table, which takes CPU from the run) does not matter.
        row = conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        started_at = row[0]
        started = time.perf_counter()
        last_log = started
        # Progress from the event counter (one row): every outcome writes an
        # event. A count over messages (100,000 rows and their dead versions)
        # twice a second took CPU from the run. The count confirms the end.
        events = "SELECT coalesce(sum(last_position), 0) FROM event_counters"
        row = conn.execute(events).fetchone()
        base = int(row[0]) if row else 0
        while True:
            row = conn.execute(events).fetchone()
            done = (int(row[0]) if row else 0) - base
            if done >= total:
                row = conn.execute(
                    "SELECT count(*) FROM messages WHERE status IN ('sent', 'failed')"
                ).fetchone()
                done = int(row[0]) if row else 0
            samples.append(sum(rss_mb(p.pid, "VmRSS") for p in workers))
            if done >= total:
                break
            if any(p.poll() is not None for p in workers):
                raise RuntimeError("a worker exited during the run")
            if time.perf_counter() - last_log > 5:
                last_log = time.perf_counter()
                log(f"  {done}/{total}")
            time.sleep(0.5)
        row = conn.execute(
            "SELECT max(updated_at) FROM messages WHERE status IN ('sent', 'failed')"
        ).fetchone()
        assert row is not None
        elapsed = (row[0] - started_at).total_seconds()
        # Pooled connections the workers opened after the start count too
        # (from their first moment, which is within the run).
        late = [pid for pid in backends(conn) if pid not in servers]
        cpu = {name: cpu_seconds(pids) - cpu_before[name] for name, pids in groups.items()}
        cpu["postgres"] += cpu_seconds(late)
        final = counts(conn)
        failures = conn.execute(
            "SELECT left(last_response, 200), count(*) FROM messages WHERE status = 'failed'"
            " GROUP BY 1 ORDER BY 2 DESC LIMIT 5"
        ).fetchall()
        for reason, n in failures:
            log(f"  failed x{n}: {reason}")
    cpu_us = {name: round(seconds / total * 1e6, 1) for name, seconds in cpu.items()}
    return {"seconds": elapsed, "counts": final, "rss_samples": samples, "cpu_us": cpu_us}


async def run_latency(
    db: Database, conninfo: str, workspace_id: uuid.UUID, count: int, stream: str, first: int
) -> tuple[float, float]:
    ids: list[uuid.UUID] = []
    for i in range(count):
        ids += await queue(db, workspace_id, first + i, 1, stream, hold=False)
        await asyncio.sleep(0.02)
    with psycopg.connect(conninfo) as conn:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM messages WHERE id = ANY(%s) AND status = 'sent'", (ids,)
            ).fetchone()
            if row and row[0] == count:
                break
            await asyncio.sleep(0.1)
        row = conn.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms),"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) FROM ("
            "  SELECT extract(epoch FROM sent_at - created_at) * 1000 AS ms"
            "  FROM messages WHERE id = ANY(%s) AND status = 'sent') AS t",
            (ids,),
        ).fetchone()
    assert row is not None
    return float(row[0]), float(row[1])


def one_signed_message(
    workspace_id: uuid.UUID, keys: list[DkimKey], renderer: CompiledTemplate, settings: Settings
) -> bytes:
    m = compose.Outgoing(
        id=uuid.uuid4(),
        workspace_id=workspace_id,
        stream="transactional",
        from_email=f"news@{DOMAIN}",
        from_name="Bench Shop",
        reply_to=None,
        to_email="kunde1@example.org",
        to_name=None,
        message_id_header=f"<{uuid.uuid4().hex}@{DOMAIN}>",
        template_version_id=renderer.version_id,
        data=personal(1),
    )
    content = compose.render(m, renderer, settings)
    return compose.sign(compose.build(m, content, settings), keys)


def run_ceiling(message: bytes, total: int, sessions: int, port: int, tmp: Path) -> float:
    path = tmp / "message.eml"
    # smtp-source appends CRLF to each line it reads.
    path.write_bytes(message.replace(b"\r\n", b"\n"))
    started = time.perf_counter()
    subprocess.run(
        [
            "/usr/sbin/smtp-source",
            "-d",
            "-s",
            str(sessions),
            "-m",
            str(total),
            "-F",
            str(path),
            "-f",
            f"bounces@{DOMAIN}",
            "-t",
            "kunde1@example.org",
            f"127.0.0.1:{port}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return total / (time.perf_counter() - started)


def run_baseline(key: DkimKey, count: int, port: int) -> float:
    """The naive way: plain Jinja2, EmailMessage, dkimpy, smtplib; one at a time."""
    env = jinja2.Environment(autoescape=True)
    html_t, text_t, subject_t = (
        env.from_string(HTML),
        jinja2.Environment().from_string(TEXT),  # noqa: S701
        jinja2.Environment().from_string(SUBJECT),  # noqa: S701
    )
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    headers = [h.encode() for h in SIGNED_HEADERS]
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for n in range(count):
            data = personal(n)
            msg = EmailMessage()
            msg["From"] = StdAddress("Bench Shop", "news", DOMAIN)
            msg["To"] = f"kunde{n}@example.org"
            msg["Subject"] = subject_t.render(**data)
            msg["Date"] = format_datetime(datetime.now(UTC))
            msg["Message-ID"] = make_msgid(domain=DOMAIN)
            msg.set_content(text_t.render(**data))
            msg.add_alternative(html_t.render(**data), subtype="html")
            raw = msg.as_bytes(policy=SMTP)
            signature = dkimpy.sign(
                raw,
                key.selector.encode(),
                DOMAIN.encode(),
                pem,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=headers,
            )
            smtp.sendmail(f"bounces@{DOMAIN}", [f"kunde{n}@example.org"], signature + raw)
    return count / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-send-"))
    admin, server = server_admin_url(tmp)
    name = f"bench_send_{os.getpid()}"
    conninfo = fresh_database(admin, name)
    url = sqlalchemy_url(conninfo)
    key = base64.b64encode(os.urandom(32)).decode()
    settings = Settings(
        environment="test",
        database_url=url,
        security={"master_key": key},
        tracking={"base_url": "https://track.bench.example"},
    )
    override_settings(settings)
    migrate.upgrade(make_url(url))
    db = create_database(settings)
    install_database(db)
    sink_port = _free_port()
    sink = start_sink(sink_port)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        wait_port(sink_port, "smtp-sink")
        workspace_id, keys, renderer = await setup(db, args.stream)
        log(f"queueing {args.messages} messages ({server})")
        started = time.perf_counter()
        for first in range(0, args.messages, QUEUE_CHUNK):
            count = min(QUEUE_CHUNK, args.messages - first)
            await queue(db, workspace_id, first, count, args.stream, hold=True)
        enqueue_rate = args.messages / (time.perf_counter() - started)
        log(f"  queued at {enqueue_rate:.0f}/s; starting {args.workers} workers")

        env = worker_env(args, url, key, sink_port)
        workers = start_workers(args.workers, env, tmp)
        deadline = time.monotonic() + 60
        while listening(conninfo) < args.workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in workers):
                raise RuntimeError(f"workers did not start; see {tmp}")
            await asyncio.sleep(0.1)
        log("  sending")
        send = run_send(conninfo, args.messages, workers, sink.pid)
        rate = args.messages / send["seconds"]
        log(f"  {rate:.0f} msg/s; measuring latency")
        p50, p99 = await run_latency(
            db, conninfo, workspace_id, args.latency_messages, args.stream, args.messages
        )
        peak = [rss_mb(p.pid) for p in workers]
        stop(workers)
        workers = []

        message = one_signed_message(workspace_id, keys, renderer, settings)
        log(f"  ceiling: smtp-source, {args.messages} x {len(message)} bytes")
        ceiling = run_ceiling(
            message, args.messages, args.workers * args.connections, sink_port, tmp
        )
        log(f"  baseline: {args.baseline_messages} messages")
        baseline = run_baseline(keys[0], args.baseline_messages, sink_port)
    finally:
        stop(workers)
        sink.terminate()
        sink.wait()
        await db.dispose()
        install_database(None)
        drop_database(admin, name)
    sent = send["counts"].get("sent", 0)
    return {
        "messages": args.messages,
        "workers": args.workers,
        "stream": args.stream,
        "msgs_per_s": round(rate, 1),
        "ceiling_msgs_per_s": round(ceiling, 1),
        "baseline_msgs_per_s": round(baseline, 1),
        "ratio_vs_ceiling": round(rate / ceiling, 3),
        "ratio_vs_baseline": round(rate / baseline, 2),
        "ratio_vs_goal": round(rate / GOAL, 3),
        "p50_ms": round(p50, 1),
        "p99_ms": round(p99, 1),
        "peak_rss_mb": round(max(peak), 1),
        "peak_rss_mb_per_worker": [round(p, 1) for p in peak],
        "send_seconds": round(send["seconds"], 2),
        "sent": sent,
        "failed": send["counts"].get("failed", 0),
        "enqueue_msgs_per_s": round(enqueue_rate, 1),
        # CPU time per message sent, by process group, over the send phase.
        "worker_cpu_us_per_msg": send["cpu_us"]["worker"],
        "postgres_cpu_us_per_msg": send["cpu_us"]["postgres"],
        "sink_cpu_us_per_msg": send["cpu_us"]["sink"],
        "message_bytes": len(message),
        "worker_concurrency": args.concurrency,
        "smtp_connections_per_worker": args.connections,
        "server": server,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stream", choices=["transactional", "marketing"], default="transactional")
    parser.add_argument("--concurrency", type=int, default=100, help="messages held per worker")
    parser.add_argument("--batch", type=int, default=100, help="messages claimed per round trip")
    parser.add_argument("--connections", type=int, default=10, help="SMTP connections per worker")
    parser.add_argument("--baseline-messages", type=int, default=2000)
    parser.add_argument("--latency-messages", type=int, default=300)
    result = asyncio.run(main(parser.parse_args()))
    print(json.dumps(result))
