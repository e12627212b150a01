"""Helpers of the IMAP mailbox tests: settings that let mailboxes reach
loopback, mailboxes made through the service, a running `MailboxLoop`,
sample mail, and waiting for what the loop does."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sqlalchemy import func, select

from sendstream.bounces.imap_runner import MailboxLoop
from sendstream.bounces.imap_schemas import BounceMailboxCreate
from sendstream.bounces.imap_service import imap_mailbox_service
from sendstream.core.db import Database
from sendstream.core.settings import Settings
from sendstream.models.imap_mailbox import ImapMailbox, ImapMessage
from sendstream.models.inbound_message import InboundMessage
from tests.fixtures.dovecot import Dovecot

USER = "bounces@example.org"
PASSWORD = "s3cret pass"
# Generous: only a broken loop takes this long (no timing is asserted).
WAIT_SECONDS = 30.0


def imap_settings(settings: Settings, **bounces: Any) -> Settings:
    values = {
        "imap_allow_private_hosts": True,
        "imap_reload_seconds": 0.2,
        "imap_max_backoff_seconds": 0.5,
        "imap_command_timeout": 10.0,
        **bounces,
    }
    return settings.model_copy(
        update={"bounces": settings.bounces.model_copy(update=values)}, deep=True
    )


def dsn(n: int, *, verp: str = "b+token@bounces.example.net", size_pad: int = 0) -> bytes:
    """A Postfix-style DSN as it lands in a bounce mailbox."""
    pad = ("x" * 76 + "\r\n") * (size_pad // 78 + 1) if size_pad else ""
    return (
        "Return-Path: <>\r\n"
        f"Delivered-To: {verp}\r\n"
        f"X-Original-To: {verp}\r\n"
        "From: MAILER-DAEMON@mx.example.com (Mail Delivery System)\r\n"
        f"To: {verp}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <dsn-{n}@mx.example.com>\r\n"
        f"Date: Fri, 27 Nov 2026 10:{n % 60:02d}:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n"
        "--B\r\n"
        "Content-Type: text/plain\r\n\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n"
        f"{pad}"
        "--B\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.com\r\n\r\n"
        f"Final-Recipient: rfc822; gone{n}@example.com\r\n"
        "Action: failed\r\n"
        "Status: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
        "--B--\r\n"
    ).encode()


async def make_mailbox(
    db: Database,
    dovecot: Dovecot,
    workspace_id: uuid.UUID,
    **fields: Any,
) -> uuid.UUID:
    body: dict[str, Any] = {
        "name": "bounces",
        "host": "localhost",
        "port": dovecot.tls_port,
        "tls": "implicit",
        "ca_certificates": dovecot.ca_pem,
        "username": USER,
        "auth": "password",
        "password": PASSWORD,
        "mode": "poll",
        "poll_interval": 5,
        **fields,
    }
    async with db.session() as session:
        mailbox = await imap_mailbox_service.create_mailbox(
            session, workspace_id, BounceMailboxCreate(**body)
        )
        return mailbox.id


@contextlib.asynccontextmanager
async def running(
    db: Database, settings: Settings, mailbox_id: uuid.UUID
) -> AsyncIterator[tuple[MailboxLoop, asyncio.Task[None]]]:
    stop = asyncio.Event()
    loop = MailboxLoop(mailbox_id, database=db, settings=settings, stop=stop)
    task = asyncio.create_task(loop.run())
    try:
        yield loop, task
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def wait_for(
    check: Callable[[], Awaitable[Any]], what: str, seconds: float = WAIT_SECONDS
) -> Any:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still waiting for {what} after {seconds} s (last: {value!r})")
        await asyncio.sleep(0.1)


async def inbound(db: Database) -> list[InboundMessage]:
    async with db.session() as session:
        rows = await session.scalars(
            select(InboundMessage).order_by(InboundMessage.received_at, InboundMessage.id)
        )
        return list(rows.all())


async def mailbox_row(db: Database, mailbox_id: uuid.UUID) -> ImapMailbox:
    async with db.session() as session:
        row = await session.get(ImapMailbox, mailbox_id, populate_existing=True)
        assert row is not None
        return row


async def outcomes(db: Database, mailbox_id: uuid.UUID) -> dict[str, int]:
    async with db.session() as session:
        rows = await session.execute(
            select(ImapMessage.outcome, func.count())
            .where(ImapMessage.mailbox_id == mailbox_id)
            .group_by(ImapMessage.outcome)
        )
        return {str(k): int(v) for k, v in rows.all()}
