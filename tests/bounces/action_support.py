"""Shared steps of the MX and bounce-action tests: a contact on a list with
a message it was sent, verdicts, RFC 3464 reports built by hand, and reads
of what acting on them left in the database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from email.utils import formatdate
from typing import Any

import httpx
from sqlalchemy import text

from sendstream.bounces.service import bounce_service
from sendstream.bounces.verdict import Kind, Reason, RecipientVerdict
from sendstream.contacts.suppression import address_hash
from sendstream.core.db import Database
from sendstream.delivery.verp import verp_address
from tests.contacts.helpers import create_contact
from tests.contacts.test_lists import create_list
from tests.fixtures.actors import Actor
from tests.tracking.helpers import SentMessage, sent_message


@dataclass(frozen=True)
class Mailed:
    """A contact subscribed to a list, and a marketing message it was sent."""

    actor: Actor
    contact_id: str
    list_id: str
    message: SentMessage
    email: str

    @property
    def verp(self) -> str:
        return verp_address(self.actor.workspace_id, self.message.id)


async def mailed(
    client: httpx.AsyncClient, db: Database, actor: Actor, email: str = "ada@example.com"
) -> Mailed:
    made = await create_list(client, actor, name=f"News {uuid.uuid4().hex[:6]}")
    contact = await create_contact(client, actor, email=email, lists=[made["id"]])
    message = await sent_message(
        db, actor.workspace_id, to=email, contact_id=contact["id"], list_id=made["id"]
    )
    return Mailed(actor, contact["id"], made["id"], message, email)


def verdict(
    kind: Kind = "bounce",
    reason: Reason = Reason.user_unknown,
    *,
    recipient: str | None = "ada@example.com",
    hard: bool | None = None,
    status: str | None = None,
    diagnostic: str | None = None,
) -> RecipientVerdict:
    if kind == "bounce" and hard is None:
        hard = reason in (Reason.user_unknown, Reason.host_unknown, Reason.suspended)
    if status is None and kind == "bounce":
        status = "5.1.1" if hard else "4.2.2"
    return RecipientVerdict(
        recipient=recipient,
        kind=kind,
        reason=reason,
        hard=hard if kind == "bounce" else None,
        status=status,
        diagnostic=diagnostic or (f"{status} {reason}" if status else None),
        remote_mta="mx.example.com",
    )


async def apply(
    db: Database,
    mail: Mailed,
    v: RecipientVerdict,
    *,
    source: str = "ses",
    occurred_at: datetime | None = None,
    message_id: uuid.UUID | str | None = "own",
    workspace_id: uuid.UUID | None = None,
) -> None:
    """`bounce_service.apply` in its own committed transaction, as an ESP
    webhook request would run it."""
    target = mail.message.id if message_id == "own" else message_id
    assert not isinstance(target, str)
    async with db.session() as session:
        await bounce_service.apply(
            session,
            workspace_id or mail.actor.workspace_id,
            v,
            message_id=target,
            source=source,
            occurred_at=occurred_at,
        )


async def scalar(db: Database, sql: str, **params: Any) -> Any:
    async with db.engine.connect() as conn:
        return await conn.scalar(text(sql), params)


async def rows(db: Database, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with db.engine.connect() as conn:
        result = await conn.execute(text(sql), params)
        return [dict(r._mapping) for r in result]


async def execute(db: Database, sql: str, **params: Any) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(text(sql), params)


async def suppression(db: Database, workspace_id: uuid.UUID, email_key: str) -> dict[str, Any]:
    found = await rows(
        db,
        "SELECT reason, source FROM suppressions WHERE workspace_id = :w AND address_hash = :h",
        w=workspace_id,
        h=address_hash(email_key),
    )
    return found[0] if found else {}


async def states(db: Database, mail: Mailed) -> tuple[str, str, str]:
    """(message status, contact status, list subscription status)."""
    message = await scalar(db, "SELECT status FROM messages WHERE id = :id", id=mail.message.id)
    contact = await scalar(db, "SELECT status FROM contacts WHERE id = :id", id=mail.contact_id)
    listed = await scalar(
        db,
        "SELECT status FROM subscriptions WHERE contact_id = :c AND list_id = :l",
        c=mail.contact_id,
        l=mail.list_id,
    )
    return str(message), str(contact), str(listed)


async def totals(db: Database) -> dict[str, int]:
    """Rows of everything acting on a bounce may add to."""
    out: dict[str, int] = {}
    for table in ("events", "suppressions", "consent_records", "bounce_records"):
        out[table] = int(await scalar(db, f'SELECT count(*) FROM "{table}"') or 0)  # noqa: S608
    return out


async def event_types(db: Database, subject_id: str | uuid.UUID) -> list[str]:
    found = await rows(
        db,
        "SELECT type FROM events WHERE subject_id = :s ORDER BY position",
        s=str(subject_id),
    )
    return [r["type"] for r in found]


# --- reports as mail servers write them


def dsn(
    to: str,
    recipients: list[tuple[str, str, str, str]],
    *,
    original_message_id: str | None = None,
    reporting_mta: str = "mx.example.com",
) -> bytes:
    """An RFC 3464 multipart/report, as Postfix writes one. `recipients`:
    (address, action, status, diagnostic) per recipient; the returned
    message's headers are included when `original_message_id` is given."""
    boundary = f"=_report_{uuid.uuid4().hex}"
    fields = [f"Reporting-MTA: dns; {reporting_mta}", f"Arrival-Date: {formatdate()}", ""]
    for address, action, status, diagnostic in recipients:
        fields += [
            f"Original-Recipient: rfc822; {address}",
            f"Final-Recipient: rfc822; {address}",
            f"Action: {action}",
            f"Status: {status}",
            f"Remote-MTA: dns; {reporting_mta}",
            f"Diagnostic-Code: smtp; {diagnostic}",
            "",
        ]
    lines = [
        "Return-Path: <>",
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: {to}",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {formatdate()}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "This is the mail system at host " + reporting_mta + ".",
        "I'm sorry to have to inform you that your message could not be delivered.",
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        *fields,
    ]
    if original_message_id is not None:
        lines += [
            f"--{boundary}",
            "Content-Type: text/rfc822-headers",
            "",
            f"Return-Path: <{to}>",
            "From: news@sender.example",
            f"To: {recipients[0][0] if recipients else 'someone@example.com'}",
            "Subject: Weekly news",
            f"Message-ID: {original_message_id}",
            "",
        ]
    lines += [f"--{boundary}--", ""]
    return "\r\n".join(lines).encode()


def hard_dsn(to: str, recipient: str, **kw: Any) -> bytes:
    return dsn(
        to,
        [(recipient, "failed", "5.1.1", f"550 5.1.1 <{recipient}>: Recipient address rejected")],
        **kw,
    )
