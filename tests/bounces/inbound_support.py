"""Inbound routing tests: domains and routes made through the API, mail sent
to the MX with aiosmtplib, and what `inbound.process` left in the database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiosmtplib
import httpx
import pytest

from sendstream.core.db import Database
from sendstream.core.settings import Settings
from tests.bounces.action_support import rows
from tests.fixtures.actors import Actor
from tests.fixtures.job_worker import eventually


@pytest.fixture
def unverified_ok(settings: Settings) -> Iterator[Settings]:
    """Inbound domains take mail before their MX is verified."""
    saved = settings.bounces.inbound_allow_unverified
    settings.bounces.inbound_allow_unverified = True
    try:
        yield settings
    finally:
        settings.bounces.inbound_allow_unverified = saved


async def add_domain(client: httpx.AsyncClient, actor: Actor, name: str) -> dict[str, Any]:
    response = await client.post("/v1/inbound-domains", headers=actor.headers, json={"name": name})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def add_route(
    client: httpx.AsyncClient, actor: Actor, domain_id: str, pattern: str, **fields: Any
) -> dict[str, Any]:
    body = {"domain_id": domain_id, "name": fields.pop("name", pattern), "pattern": pattern}
    response = await client.post(
        "/v1/inbound-routes", headers=actor.headers, json={**body, **fields}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def rcpt_code(port: int, address: str) -> int:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as smtp:
        await smtp.ehlo()
        await smtp.mail("someone@sender.example")
        try:
            response = await smtp.rcpt(address)
        except aiosmtplib.SMTPRecipientRefused as refused:
            return refused.code
        return response.code


async def send(
    port: int, raw: bytes, rcpt: list[str], *, sender: str = "ada@sender.example"
) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as smtp:
        errors, _ = await smtp.sendmail(sender, rcpt, raw)
        assert not errors, errors


async def received(db: Database, count: int = 1) -> list[dict[str, Any]]:
    """The inbound emails, once `count` exist, oldest first."""

    async def enough() -> bool:
        return len(await rows(db, "SELECT id FROM inbound_emails")) >= count

    await eventually(enough, within=60.0)
    return await rows(db, "SELECT * FROM inbound_emails ORDER BY id")


async def settled(db: Database, count: int = 1) -> list[dict[str, Any]]:
    """The routed raw rows, once `count` are no longer `received`."""

    async def done() -> bool:
        found = await rows(
            db, "SELECT id FROM inbound_messages WHERE source = 'inbound' AND status <> 'received'"
        )
        return len(found) >= count

    await eventually(done, within=60.0)
    return await rows(db, "SELECT * FROM inbound_messages WHERE source = 'inbound' ORDER BY id")


def mail(
    *,
    to: str,
    subject: str = "Hello",
    body: str = "Hi there",
    extra_headers: str = "",
    from_: str = "Ada <ada@sender.example>",
) -> bytes:
    return (
        f"From: {from_}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <m1@sender.example>\r\n{extra_headers}"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()
