"""A delivery worker killed mid-send: a real `sendstream worker` process is
killed with SIGKILL while it sends a few thousand messages to a counting
SMTP server; a second worker takes the messages over when their leases run
out. Every message arrives, each is recorded `sent` once, and the messages
sent twice are at most the ones the killed worker held at that moment (its
`worker_concurrency`)."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy import text
from sqlalchemy.engine import URL

from sendstream.core.db import Database
from sendstream.core.settings import Settings
from tests.delivery.messages_helpers import SENDER, verified_domain
from tests.fixtures.actors import Actor
from tests.fixtures.job_worker import eventually
from tests.fixtures.processes import clean_env, free_port, start_cli, stop

pytestmark = pytest.mark.slow

MESSAGES = 3000
CONCURRENCY = 100
ROOT = Path(__file__).resolve().parents[2]


class CountingSmtp:
    """Accepts everything, after a short pause (so transactions are in
    flight when the worker dies), and counts copies per return path: the
    VERP address is unique per message."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.copies: Counter[str] = Counter()

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        await asyncio.sleep(0.005)
        with self.lock:
            self.copies[str(envelope.mail_from)] += 1
        return "250 2.0.0 OK"

    def counts(self) -> tuple[int, int]:
        """(distinct messages, copies received)."""
        with self.lock:
            return len(self.copies), sum(self.copies.values())


@pytest.fixture
def counting_smtp() -> Iterator[tuple[CountingSmtp, int]]:
    handler = CountingSmtp()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def worker_env(url: URL, settings: Settings, smtp_port: int) -> dict[str, str]:
    assert settings.security.master_key is not None
    return clean_env(
        SENDSTREAM_DATABASE_URL=url.render_as_string(hide_password=False),
        SENDSTREAM_ENVIRONMENT="test",
        SENDSTREAM_SMTP_URL=f"smtp://127.0.0.1:{smtp_port}",
        SENDSTREAM_LOG__LEVEL="INFO",
        SENDSTREAM_DELIVERY__LEASE_SECONDS="2",
        SENDSTREAM_DELIVERY__WORKER_CONCURRENCY=str(CONCURRENCY),
        SENDSTREAM_DELIVERY__SMTP_MAX_CONNECTIONS="20",
        SENDSTREAM_SECURITY__MASTER_KEY=settings.security.master_key.get_secret_value(),
    )


async def sent(db: Database) -> int:
    async with db.engine.connect() as conn:
        return int(
            await conn.scalar(text("SELECT count(*) FROM messages WHERE status = 'sent'")) or 0
        )


class TestKilledDeliveryWorker:
    async def test_sigkill_mid_send_every_message_arrives_and_few_twice(
        self,
        client: httpx.AsyncClient,
        db: Database,
        database_url: URL,
        settings: Settings,
        admin_actor: Actor,
        counting_smtp: tuple[CountingSmtp, int],
        tmp_path: Path,
    ) -> None:
        server, port = counting_smtp
        await verified_domain(db, admin_actor.workspace_id)
        for start in range(0, MESSAGES, 500):
            items = [
                {"from": SENDER, "to": f"p{n}@example.com", "subject": f"#{n}", "text": "Hi"}
                for n in range(start, start + 500)
            ]
            response = await client.post(
                "/v1/messages/batch", headers=admin_actor.headers, json={"messages": items}
            )
            assert response.json()["queued"] == 500, response.text
        env = worker_env(database_url, settings, port)

        first = start_cli(["worker"], env, ROOT, tmp_path / "first.log")
        try:

            async def some_sent() -> bool:
                return server.counts()[0] >= MESSAGES // 3

            await eventually(some_sent, within=120)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            stop(first)
        at_kill = await sent(db)
        assert at_kill < MESSAGES, "the kill came too late to test anything"

        second = start_cli(["worker"], env, ROOT, tmp_path / "second.log")
        try:

            async def all_sent() -> bool:
                return await sent(db) == MESSAGES

            await eventually(all_sent, within=180)
        finally:
            assert stop(second) == 0, (tmp_path / "second.log").read_text()[-3000:]

        distinct, copies = server.counts()
        twice = copies - distinct
        print(f"\nkilled with {at_kill} recorded sent; {twice} of {MESSAGES} sent twice")
        assert distinct == MESSAGES
        assert twice <= CONCURRENCY
        assert max(server.copies.values()) <= 2
        async with db.engine.connect() as conn:
            events, subjects = (
                await conn.execute(
                    text(
                        "SELECT count(*), count(DISTINCT subject_id) FROM events "
                        "WHERE type = 'message.sent'"
                    )
                )
            ).one()
            retried = await conn.scalar(text("SELECT count(*) FROM messages WHERE attempts > 1"))
        # One `message.sent` per message, whoever sent it.
        assert (events, subjects) == (MESSAGES, MESSAGES)
        # Only messages the killed worker held were tried again.
        assert twice <= (retried or 0) <= CONCURRENCY
