"""The checks of a send request that need no database: addresses, headers,
attachments, content, scheduling. `prepare(body)` returns a `Draft` or
raises the request's first fault as a `SendstreamError` with its own code.

Header-bound text goes through the MIME builder's own checks
(`mime_headers`), so what passes here is what `mime.build` accepts later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import getaddresses
from typing import Any

from sendstream.contacts.addresses import InvalidAddress, normalize_address
from sendstream.core.settings import DeliverySettings
from sendstream.delivery import mime_headers
from sendstream.delivery.errors import (
    AttachmentTooLarge,
    HeaderInjectionRefused,
    InvalidMessage,
    InvalidRecipientAddress,
    ReservedHeader,
)
from sendstream.delivery.message_schemas import (
    AddressInput,
    AttachmentInput,
    MessageCreate,
    RecipientInput,
)

# Fields Sendstream writes itself (the MIME builder's, the unsubscribe and
# feedback fields of marketing mail, every Content-* and X-Sendstream-*):
# given as extra headers they would forge or contradict the message.
# In-Reply-To and References may be given (replies in a thread).
RESERVED_HEADERS = mime_headers.RESERVED_HEADERS | {
    "list-unsubscribe",
    "list-unsubscribe-post",
    "feedback-id",
}
# `messages.reply_to` holds `Name <address>` in this many characters.
STORED_ADDRESS_LIMIT = 320
# A display name that is not a run of atoms is quoted where it is stored.
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+")
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*")
_INJECTION = re.compile(r"[\r\n\x00]")


@dataclass(frozen=True, slots=True)
class Party:
    email: str
    # The contacts matching key (suppression, lookups).
    key: str
    name: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"email": self.email, "name": self.name}


@dataclass(frozen=True, slots=True)
class Recipient:
    party: Party
    # The message's data with this recipient's own merged over it.
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AttachmentDraft:
    filename: str
    content_type: str
    content_id: str | None
    sha256: str
    data: bytes


@dataclass(slots=True)
class Draft:
    """One `MessageCreate`, checked: one message row per recipient."""

    body: MessageCreate
    sender: Party | None
    recipients: list[Recipient]
    cc: list[Party]
    bcc: list[Party]
    reply_to: Party | None
    headers: list[tuple[str, str]]
    attachments: list[AttachmentDraft] = field(default_factory=list)
    # Bytes of content its rows store (inline content and data, per row).
    stored_bytes: int = 0

    @property
    def addressees(self) -> list[tuple[str, Party]]:
        """(field, party) of each `to` recipient (one message each)."""
        many = isinstance(self.body.to, list)
        return [(f"to[{i}]" if many else "to", r.party) for i, r in enumerate(self.recipients)]

    @property
    def everyone(self) -> list[tuple[str, Party]]:
        """(field, party) of every envelope recipient, for suppression checks."""
        found = self.addressees
        found += [(f"cc[{i}]", p) for i, p in enumerate(self.cc)]
        found += [(f"bcc[{i}]", p) for i, p in enumerate(self.bcc)]
        return found


def prepare(body: MessageCreate, settings: DeliverySettings, now: datetime | None = None) -> Draft:
    _check_content(body)
    _check_schedule(body, settings, now or datetime.now(UTC))
    limit = settings.max_data_bytes
    shared = _check_data("data", body.data, limit)
    _check_data("metadata", body.metadata, limit)
    inline = sum(len(t.encode()) for t in (body.subject, body.html, body.text) if t is not None)
    recipients: list[Recipient] = []
    stored = 0
    many = isinstance(body.to, list)
    for index, item in enumerate(_listed(body.to)):
        where = f"to[{index}]" if many else "to"
        own = item.data if isinstance(item, RecipientInput) else None
        if own:
            data = {**body.data, **own}
            size = _check_data(f"{where}.data", data, limit)
        else:
            data, size = body.data, shared
        stored += inline + size
        recipients.append(Recipient(party(where, item), data))
    return Draft(
        body=body,
        sender=party("from", body.from_) if body.from_ is not None else None,
        recipients=recipients,
        cc=[party(f"cc[{i}]", a) for i, a in enumerate(body.cc)],
        bcc=[party(f"bcc[{i}]", a) for i, a in enumerate(body.bcc)],
        reply_to=_reply_to(body.reply_to) if body.reply_to is not None else None,
        headers=[_header(name, value) for name, value in body.headers.items()],
        attachments=_attachments(body.attachments, settings),
        stored_bytes=stored,
    )


def _listed(to: Any) -> list[Any]:
    return to if isinstance(to, list) else [to]


def party(where: str, value: str | AddressInput) -> Party:
    """An address as given (`ada@x`, `Ada <ada@x>` or {email, name}), checked
    the way the MIME builder will write it."""
    if isinstance(value, str):
        if _INJECTION.search(value):
            raise HeaderInjectionRefused(where)
        found = getaddresses([value])
        name, email = found[0] if len(found) == 1 else ("", "")
        if not email:
            raise InvalidRecipientAddress(
                where, value, "it is not one `address` or `Name <address>`"
            )
    else:
        name, email = value.name or "", value.email
    if _INJECTION.search(name) or _INJECTION.search(email):
        raise HeaderInjectionRefused(where)
    try:
        normalized = normalize_address(email)
        mime_headers.addr_spec(where, normalized.email)
    except InvalidAddress as exc:
        raise InvalidRecipientAddress(where, email, str(exc)) from None
    except mime_headers.MimeError as exc:
        raise InvalidRecipientAddress(where, email, str(exc).split(": ", 1)[-1]) from None
    return Party(normalized.email, normalized.key, name.strip() or None)


def stored_address(who: Party) -> str:
    """How `messages.reply_to` keeps a party: the bare address, or
    `Name <address>` with the name quoted when it is not plain atoms. The
    name stays Unicode here; the MIME builder encodes it (RFC 2047) when it
    writes the header. `email.utils.parseaddr` reads it back."""
    if not who.name:
        return who.email
    name = who.name
    if _ATOMS.fullmatch(name) is None:
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{who.email}>"


def _reply_to(value: str | AddressInput) -> Party:
    found = party("reply_to", value)
    if len(stored_address(found)) > STORED_ADDRESS_LIMIT:
        raise InvalidRecipientAddress(
            "reply_to",
            found.email,
            f"the display name and address together are over {STORED_ADDRESS_LIMIT} characters",
        )
    return found


def _check_content(body: MessageCreate) -> None:
    inline = body.subject is not None or body.html is not None or body.text is not None
    if body.template is not None and inline:
        raise InvalidMessage(
            "give either `template` (with `data`) or inline `subject`/`html`/`text`, not both.",
            code="content_conflict",
        )
    if body.template is None:
        if body.version is not None:
            raise InvalidMessage("`version` needs `template`.", code="content_conflict")
        if body.html is None and body.text is None:
            raise InvalidMessage(
                "a message needs `template`, or inline `html` and/or `text`.",
                code="content_required",
            )


def _check_schedule(body: MessageCreate, settings: DeliverySettings, now: datetime) -> None:
    if body.send_at is not None and body.send_at > now + timedelta(days=settings.max_schedule_days):
        raise InvalidMessage(
            f"send_at: at most {settings.max_schedule_days} days ahead.", code="send_at_too_far"
        )


def _check_data(where: str, data: dict[str, Any], limit: int) -> int:
    """The size of `data` as stored (JSON), or a refusal: NUL characters
    (PostgreSQL's jsonb cannot hold them; a clear 422 beats a database
    error), or more than `limit` bytes."""
    try:
        text = json.dumps(data, ensure_ascii=False)
    except (TypeError, ValueError):
        text = "\\u0000"
    if "\\u0000" in text or "\x00" in text:
        raise InvalidMessage(f"{where}: text must not contain NUL characters.", code="invalid_data")
    size = len(text.encode())
    if size > limit:
        raise InvalidMessage(
            f"{where}: {size} bytes of JSON; at most {limit} per message.", code="data_too_large"
        )
    return size


def _header(name: str, value: str) -> tuple[str, str]:
    if _INJECTION.search(name) or _INJECTION.search(value):
        raise HeaderInjectionRefused(f"headers.{name[:100]}")
    lower = name.lower()
    if lower in RESERVED_HEADERS or lower.startswith(("content-", "x-sendstream-")):
        raise ReservedHeader(name)
    try:
        mime_headers.extra_header(name, value)
    except mime_headers.HeaderInjection:
        raise HeaderInjectionRefused(f"headers.{name[:100]}") from None
    except mime_headers.MimeError as exc:
        raise InvalidMessage(f"headers.{name[:100]}: {exc}", code="invalid_header") from None
    return name, value.strip(" \t")


def _attachments(given: list[AttachmentInput], settings: DeliverySettings) -> list[AttachmentDraft]:
    out: list[AttachmentDraft] = []
    total = 0
    for index, item in enumerate(given):
        where = f"attachments[{index}]"
        if _INJECTION.search(item.filename) or _INJECTION.search(item.content_type):
            raise HeaderInjectionRefused(where)
        kind = item.content_type.lower()
        if _CONTENT_TYPE.fullmatch(kind) is None or kind.startswith(("multipart/", "message/")):
            raise InvalidMessage(
                f"{where}.content_type: {item.content_type[:100]!r} is not a `type/subtype` "
                "that can be attached (use application/octet-stream).",
                code="invalid_attachment",
            )
        if item.content_id is not None:
            try:
                mime_headers.content_id(item.content_id)
            except mime_headers.HeaderInjection:
                raise HeaderInjectionRefused(f"{where}.content_id") from None
            except mime_headers.MimeError as exc:
                raise InvalidMessage(
                    f"{where}.content_id: {exc}", code="invalid_attachment"
                ) from None
        try:
            data = base64.b64decode("".join(item.content.split()), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidMessage(
                f"{where}.content: not base64.", code="invalid_attachment"
            ) from None
        if len(data) > settings.max_attachment_bytes:
            raise AttachmentTooLarge(
                f"{where} ({item.filename[:100]})", len(data), settings.max_attachment_bytes
            )
        total += len(data)
        if total > settings.max_attachments_total_bytes:
            raise AttachmentTooLarge(
                "the attachments together", total, settings.max_attachments_total_bytes
            )
        out.append(
            AttachmentDraft(
                filename=item.filename,
                content_type=item.content_type,
                content_id=item.content_id,
                sha256=hashlib.sha256(data).hexdigest(),
                data=data,
            )
        )
    return out
