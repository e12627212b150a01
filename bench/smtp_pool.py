"""The SMTP transport alone: pooled, pipelined delivery of pre-built messages
to Postfix's `smtp-sink` on loopback, against the same sink fed by Postfix's
`smtp-source` (the ceiling) and by aiosmtplib used plainly (the baseline).

    .venv/bin/python bench/smtp_pool.py [--messages 20000] [--size 10240]
                                        [--connections 10] [--in-flight 100]
                                        [--baseline-messages 4000]

1. Sendstream: `SmtpTransport.send` for each message (about `--size` bytes,
   recipients spread over 100 domains), `--in-flight` sends at once over at
   most `--connections` connections. Reports messages/s and the client
   process's CPU time per message (the sink runs in its own process).
2. Ceiling: `smtp-source -d` sending the same number of messages of the same
   size over the same number of connections.
3. Baseline: aiosmtplib's `SMTP.sendmail` on `--connections` persistent
   connections (no pipelining; the way a caller uses the library directly),
   and `aiosmtplib.send` with a new connection per message on a tenth of the
   baseline count (what a one-message-at-a-time sender does).

Needs Debian's postfix (`/usr/sbin/smtp-sink`, `/usr/sbin/smtp-source`). About
10-30 s with the defaults on the 2-core machine. Single client process on one
event loop; the sink shares the machine, so on 2 cores the wall-clock rates
move with whatever else runs, while the client CPU per message is the steady
figure. `peak_rss_mb` includes the pre-built messages (about 200 MB for
20,000). The last line printed is one flat JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable

import aiosmtplib
from support import log

from sendstream.core.settings import DeliverySettings
from sendstream.delivery.smtp import SmtpTransport
from sendstream.delivery.smtp_relays import parse_smtp_urls
from sendstream.delivery.transport import Envelope

SINK = "/usr/sbin/smtp-sink"
SOURCE = "/usr/sbin/smtp-source"
WORKSPACE = uuid.UUID("00000000-0000-4000-8000-00000000b0b0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_sink(port: int) -> subprocess.Popen[bytes]:
    # smtp-sink refuses to run as root without a user to drop to.
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    proc = subprocess.Popen(
        [SINK, *user, f"127.0.0.1:{port}", "1024"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{SINK} did not start")


def message(n: int, size: int) -> Envelope:
    head = (
        f"From: News <news@sender.example>\r\nTo: <user{n}@example{n % 100}.org>\r\n"
        f"Subject: Issue {n}\r\nMessage-ID: <{n}@sender.example>\r\n\r\n"
    ).encode()
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod t.\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return Envelope(
        mail_from=f"bounces+{n}@bounces.sender.example",
        recipients=(f"user{n}@example{n % 100}.org",),
        data=head + body,
        workspace_id=WORKSPACE,
        message_id=uuid.uuid4(),
    )


async def drive(
    envelopes: list[Envelope], in_flight: int, send: Callable[[Envelope], Awaitable[bool]]
) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, messages sent) for `send` over every envelope."""
    queue = iter(envelopes)
    sent = 0

    async def worker() -> None:
        nonlocal sent
        for env in queue:
            if await send(env):
                sent += 1

    cpu = time.process_time()
    wall = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return time.perf_counter() - wall, time.process_time() - cpu, sent


async def run_sendstream(
    port: int, envelopes: list[Envelope], connections: int, in_flight: int
) -> tuple[float, float, int]:
    settings = DeliverySettings(smtp_helo_name="bench.test", domain_concurrency=in_flight)
    relays = parse_smtp_urls(f"smtp://127.0.0.1:{port}?max_connections={connections}", settings)
    transport = SmtpTransport(relays, settings)

    async def send(env: Envelope) -> bool:
        result = await transport.send(env)
        return result.results[0].outcome == "sent"

    await drive(envelopes[:200], in_flight, send)  # warm up: connections open
    try:
        return await drive(envelopes, in_flight, send)
    finally:
        await transport.aclose()


async def run_aiosmtplib_pooled(
    port: int, envelopes: list[Envelope], connections: int
) -> tuple[float, float, int]:
    clients = [
        aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname="bench.test")
        for _ in range(connections)
    ]
    for client in clients:
        await client.connect(start_tls=False)
    free: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
    for client in clients:
        free.put_nowait(client)

    async def send(env: Envelope) -> bool:
        client = await free.get()
        try:
            errors, _ = await client.sendmail(env.mail_from, list(env.recipients), env.data)
            return not errors
        finally:
            free.put_nowait(client)

    try:
        return await drive(envelopes, connections, send)
    finally:
        for client in clients:
            await client.quit()


async def run_aiosmtplib_per_message(
    port: int, envelopes: list[Envelope], connections: int
) -> tuple[float, float, int]:
    async def send(env: Envelope) -> bool:
        errors, _ = await aiosmtplib.send(
            env.data,
            sender=env.mail_from,
            recipients=list(env.recipients),
            hostname="127.0.0.1",
            port=port,
            start_tls=False,
            local_hostname="bench.test",
        )
        return not errors

    return await drive(envelopes, connections, send)


def run_smtp_source(port: int, count: int, size: int, connections: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            SOURCE,
            "-d",
            "-s",
            str(connections),
            "-m",
            str(count),
            "-l",
            str(size),
            "-M",
            "bench.test",
            "-f",
            "bounces@bounces.sender.example",
            "-t",
            "user@example.org",
            f"127.0.0.1:{port}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=10_240)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--baseline-messages", type=int, default=4_000)
    args = parser.parse_args()

    port = free_port()
    sink = start_sink(port)
    try:
        envelopes = [message(n, args.size) for n in range(args.messages)]
        log(f"sendstream: {args.messages} messages of {len(envelopes[0].data)} bytes")
        ours_wall, ours_cpu, ours_sent = asyncio.run(
            run_sendstream(port, envelopes, args.connections, args.in_flight)
        )
        log("smtp-source ceiling")
        ceiling_wall = run_smtp_source(port, args.messages, args.size, args.connections)
        baseline = envelopes[: args.baseline_messages]
        log(f"aiosmtplib sendmail: {len(baseline)} messages")
        lib_wall, lib_cpu, lib_sent = asyncio.run(
            run_aiosmtplib_pooled(port, baseline, args.connections)
        )
        single = envelopes[: max(1, args.baseline_messages // 10)]
        log(f"aiosmtplib.send, a connection per message: {len(single)} messages")
        one_wall, _, one_sent = asyncio.run(
            run_aiosmtplib_per_message(port, single, args.connections)
        )
    finally:
        sink.terminate()
        sink.wait(10)

    if ours_sent != args.messages or lib_sent != len(baseline) or one_sent != len(single):
        raise SystemExit("some messages were not accepted by the sink")
    ours_rate = args.messages / ours_wall
    ceiling_rate = args.messages / ceiling_wall
    lib_rate = len(baseline) / lib_wall
    result = {
        "messages": args.messages,
        "message_bytes": len(envelopes[0].data),
        "connections": args.connections,
        "in_flight": args.in_flight,
        "sendstream_msgs_per_s": round(ours_rate),
        "sendstream_client_cpu_us_per_msg": round(ours_cpu / args.messages * 1e6, 1),
        "smtp_source_msgs_per_s": round(ceiling_rate),
        "ratio_to_smtp_source": round(ours_rate / ceiling_rate, 2),
        "aiosmtplib_sendmail_msgs_per_s": round(lib_rate),
        "aiosmtplib_sendmail_cpu_us_per_msg": round(lib_cpu / len(baseline) * 1e6, 1),
        "aiosmtplib_send_per_message_msgs_per_s": round(len(single) / one_wall),
        "ratio_sendstream_vs_aiosmtplib_sendmail": round(ours_rate / lib_rate, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
