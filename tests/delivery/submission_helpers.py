"""Shared steps of the submission relay tests: a relay started in the test's
event loop (real TLS with the session's self-signed certificate), SMTP
credentials made through the API, and clients connected to the relay."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import httpx
import pytest
from sqlalchemy import text

from sendstream.core.db import Database
from sendstream.core.settings import Settings, SmtpSettings
from sendstream.delivery.submission import SubmissionServer
from tests.delivery.messages_helpers import DOMAIN
from tests.fixtures.actors import Actor
from tests.fixtures.smtp_servers import TlsFiles

StartRelay = Callable[..., Awaitable[SubmissionServer]]


def relay_config(settings: Settings, tls_files: TlsFiles, **smtp: Any) -> Settings:
    values: dict[str, Any] = {
        "tls_cert_file": tls_files.cert,
        "tls_key_file": tls_files.key,
        "hostname": "relay.test",
        "submission_host": "127.0.0.1",
        "submission_port": 0,
        "submission_tls_port": 0,
        **smtp,
    }
    return settings.model_copy(update={"smtp": SmtpSettings(**values)})


@pytest.fixture(name="start_relay")
async def start_relay_fixture(
    db: Database, settings: Settings, tls_files: TlsFiles
) -> AsyncIterator[StartRelay]:
    """`await start_relay(**smtp_settings)`: a listening relay, stopped after the test."""
    started: list[SubmissionServer] = []

    async def start(*, database: Database | None = None, **smtp: Any) -> SubmissionServer:
        server = SubmissionServer(
            relay_config(settings, tls_files, **smtp), database=database or db
        )
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@pytest.fixture(name="relay")
async def relay_fixture(start_relay: StartRelay) -> SubmissionServer:
    return await start_relay()


async def create_credential(client: httpx.AsyncClient, actor: Actor, **body: Any) -> dict[str, Any]:
    response = await client.post(
        "/v1/smtp-credentials", headers=actor.headers, json={"name": "app", **body}
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def client_context() -> ssl.SSLContext:
    """Trusts nothing but checks nothing either: the certificate is self-signed."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def connect(
    server: SubmissionServer, *, tls: str = "starttls", login: dict[str, Any] | None = None
) -> aiosmtplib.SMTP:
    """A connected aiosmtplib client: STARTTLS on the 587-style port,
    implicit TLS on the 465-style one, or plain; logged in with AUTH PLAIN
    when `login` (a created credential) is given."""
    if tls == "implicit":
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=server.tls_port, use_tls=True, tls_context=client_context()
        )
    else:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1",
            port=server.port,
            start_tls=tls == "starttls",
            tls_context=client_context() if tls == "starttls" else None,
        )
    await client.connect()
    await client.ehlo()
    if login is not None:
        await client.auth_plain(login["username"], login["password"])
    return client


def message(
    *,
    sender: str = f"Acme <news@{DOMAIN}>",
    to: str | None = "Ada <ada@example.com>",
    subject: str = "Hi",
    text: str = "Hello",
    html: str | None = None,
    headers: dict[str, str] | None = None,
    **fields: str,
) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    if to is not None:
        mail["To"] = to
    for name, value in fields.items():
        mail[name.replace("_", "-")] = value
    mail["Subject"] = subject
    for name, value in (headers or {}).items():
        mail[name] = value
    mail.set_content(text)
    if html is not None:
        mail.add_alternative(html, subtype="html")
    return mail


async def submit(
    client: aiosmtplib.SMTP, mail: EmailMessage, recipients: list[str] | None = None
) -> tuple[int, str]:
    """MAIL, RCPT and DATA; the reply to DATA."""
    rcpts = recipients or [a.addr_spec for a in mail["To"].addresses]
    await client.mail("app@" + DOMAIN)
    for rcpt in rcpts:
        await client.rcpt(rcpt)
    code, reply = await client.data(mail.as_bytes())
    return code, reply


def queued_ids(reply: str) -> list[uuid.UUID]:
    assert "Queued as " in reply, reply
    return [uuid.UUID(part) for part in reply.split("Queued as ", 1)[1].split()]


async def rows(db: Database, workspace_id: uuid.UUID) -> list[dict[str, Any]]:
    async with db.engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT id, status, stream, from_email, from_name, to_email, to_name, cc, bcc, "
                "reply_to, subject, text, html, headers, tags, metadata, track_opens, "
                "track_clicks FROM messages WHERE workspace_id = :w ORDER BY to_email"
            ),
            {"w": workspace_id},
        )
        return [dict(r._mapping) for r in result]
