"""Inbound mail, MIME to JSON-ready values (stdlib `email`, `policy.default`).

Correctness over speed: this runs once per received mail in a job, not on
a hot path. Bounded and tolerant: at most `max_parts` MIME parts are looked
at, bodies are cut at `max_body_chars`, attachments past the size limits
are recorded without their content, an unknown or wrong charset decodes
with replacement characters, and a header that cannot be parsed is kept as
its raw text. Every such tolerance is noted in `ParsedMail.notes`; nothing
here raises for bad mail.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from dataclasses import dataclass, field
from email import policy
from email.headerregistry import AddressHeader
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses
from typing import Any, Final

# Headers kept per mail, and characters per header value.
MAX_HEADERS: Final = 300
MAX_HEADER_CHARS: Final = 8000
# Message-IDs taken from References (the newest last).
MAX_REFERENCES: Final = 50
_MSGID: Final = re.compile(r"<[^<>\s]{1,250}>")


@dataclass(frozen=True)
class MailAddress:
    address: str
    name: str | None

    def as_json(self) -> dict[str, Any]:
        return {"address": self.address, "name": self.name}


@dataclass(frozen=True)
class ParsedAttachment:
    filename: str | None
    content_type: str
    content_id: str | None
    # `attachment` or `inline`.
    disposition: str
    size: int
    sha256: str
    # None when omitted (too large).
    content: bytes | None


@dataclass
class ParsedMail:
    from_: MailAddress | None = None
    to: list[MailAddress] = field(default_factory=list)
    cc: list[MailAddress] = field(default_factory=list)
    reply_to: list[MailAddress] = field(default_factory=list)
    subject: str | None = None
    message_id: str | None = None
    # In-Reply-To first, then References newest first, each `<id>`.
    reply_ids: list[str] = field(default_factory=list)
    headers: list[list[str]] = field(default_factory=list)
    text: str | None = None
    html: str | None = None
    text_truncated: bool = False
    html_truncated: bool = False
    attachments: list[ParsedAttachment] = field(default_factory=list)
    auto_submitted: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Limits:
    max_body_chars: int
    max_attachment_bytes: int
    max_attachments_total_bytes: int
    max_parts: int


def parse_mail(raw: bytes, limits: Limits) -> ParsedMail:
    """The mail's fields, bodies and attachments; never raises for bad mail."""
    parsed = ParsedMail()
    message = BytesParser(policy=policy.default).parsebytes(raw)
    for defect in message.defects[:5]:
        parsed.notes.append(f"MIME defect: {type(defect).__name__}")
    parsed.headers = _headers(message, parsed.notes)
    parsed.from_ = next(iter(_addresses(message, "from", parsed.notes)), None)
    parsed.to = _addresses(message, "to", parsed.notes)
    parsed.cc = _addresses(message, "cc", parsed.notes)
    parsed.reply_to = _addresses(message, "reply-to", parsed.notes)
    subject = _header_text(message, "subject", parsed.notes)
    parsed.subject = _clean(subject)[:MAX_HEADER_CHARS] if subject is not None else None
    message_ids = _MSGID.findall(_header_text(message, "message-id", parsed.notes) or "")
    parsed.message_id = message_ids[0] if message_ids else None
    parsed.reply_ids = _reply_ids(message, parsed.notes)
    parsed.auto_submitted = _auto_submitted(message, parsed.notes)
    _Walker(parsed, limits).walk(message)
    return parsed


class _Walker:
    def __init__(self, parsed: ParsedMail, limits: Limits) -> None:
        self.parsed = parsed
        self.limits = limits
        self.parts = 0
        self.stored = 0
        self.texts: list[str] = []
        self.htmls: list[str] = []

    def walk(self, message: Message) -> None:
        self._part(message, depth=0)
        self.parsed.text, self.parsed.text_truncated = self._join(self.texts)
        self.parsed.html, self.parsed.html_truncated = self._join(self.htmls)

    def _join(self, pieces: list[str]) -> tuple[str | None, bool]:
        if not pieces:
            return None, False
        text = "\n".join(pieces)
        limit = self.limits.max_body_chars
        return (text[:limit], True) if len(text) > limit else (text, False)

    def _part(self, part: Message, depth: int) -> None:
        self.parts += 1
        if self.parts > self.limits.max_parts:
            if self.parts == self.limits.max_parts + 1:
                self.parsed.notes.append(
                    f"more than {self.limits.max_parts} MIME parts: the rest were skipped"
                )
            return
        content_type = _content_type(part)
        if part.is_multipart() and content_type.startswith("multipart/") and depth < 20:
            payload = part.get_payload()
            if isinstance(payload, list):
                for child in payload:
                    if isinstance(child, Message):
                        self._part(child, depth + 1)
            return
        disposition = _safe(part.get_content_disposition) or None
        filename = _clean(_safe(part.get_filename) or "") or None
        is_body = (
            content_type in ("text/plain", "text/html")
            and disposition != "attachment"
            and filename is None
        )
        if is_body:
            text = self._decode_text(part)
            (self.texts if content_type == "text/plain" else self.htmls).append(text)
            return
        self._attachment(part, content_type, disposition, filename)

    def _decode_text(self, part: Message) -> str:
        data = _payload_bytes(part)
        charset = _safe(part.get_content_charset) or "us-ascii"
        try:
            codecs.lookup(charset)
        except LookupError:
            self.parsed.notes.append(f"unknown charset {charset[:40]!r}: decoded as UTF-8")
            charset = "utf-8"
        try:
            text = data.decode(charset)
        except UnicodeDecodeError:
            self.parsed.notes.append(f"bytes not valid in charset {charset!r}: replaced")
            text = data.decode(charset, "replace")
        return _clean(text)

    def _attachment(
        self, part: Message, content_type: str, disposition: str | None, filename: str | None
    ) -> None:
        if content_type == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                data = _safe(inner[0].as_bytes) or b""
            else:
                data = _payload_bytes(part)
            filename = filename or "attached-message.eml"
        else:
            data = _payload_bytes(part)
        content_id = _header_text(part, "content-id", self.parsed.notes)
        content_id = content_id.strip()[:998] if content_id else None
        size = len(data)
        limits = self.limits
        keep = (
            size <= limits.max_attachment_bytes
            and self.stored + size <= limits.max_attachments_total_bytes
        )
        if keep:
            self.stored += size
        else:
            self.parsed.notes.append(
                f"attachment {filename or content_type!r} of {size} bytes omitted "
                "(over the attachment size limit)"
            )
        self.parsed.attachments.append(
            ParsedAttachment(
                filename=filename[:255] if filename else None,
                content_type=content_type[:255],
                content_id=content_id,
                disposition="inline" if disposition == "inline" else "attachment",
                size=size,
                sha256=hashlib.sha256(data).hexdigest(),
                content=data if keep else None,
            )
        )


def _safe(call: Any) -> Any:
    try:
        return call()
    except Exception:  # a malformed part: treated as absent
        return None


def _content_type(part: Message) -> str:
    value = _safe(part.get_content_type) or "application/octet-stream"
    return str(value).lower()


def _payload_bytes(part: Message) -> bytes:
    data = _safe(lambda: part.get_payload(decode=True))
    if isinstance(data, bytes):
        return data
    raw = _safe(part.get_payload)
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    return b""


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL; lone surrogates cannot be encoded.
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _header_text(part: Message, name: str, notes: list[str]) -> str | None:
    try:
        value = part.get(name)
    except Exception as exc:
        notes.append(f"header {name} unreadable: {type(exc).__name__}")
        raw = next((v for k, v in part.raw_items() if k.lower() == name), None)
        return None if raw is None else _clean(str(raw))
    return None if value is None else _clean(str(value))


def _headers(message: Message, notes: list[str]) -> list[list[str]]:
    pairs: list[list[str]] = []
    raw_items = list(message.raw_items())
    if len(raw_items) > MAX_HEADERS:
        notes.append(f"{len(raw_items)} headers: only the first {MAX_HEADERS} kept")
    for name, raw in raw_items[:MAX_HEADERS]:
        try:
            value = str(message.policy.header_fetch_parse(name, raw))
        except Exception:
            value = str(raw)
        pairs.append([_clean(name), _clean(value)[:MAX_HEADER_CHARS]])
    return pairs


def _addresses(message: Message, name: str, notes: list[str]) -> list[MailAddress]:
    found: list[MailAddress] = []
    try:
        header = message.get(name)
        if isinstance(header, AddressHeader):
            for address in header.addresses:
                if address.addr_spec and address.addr_spec != "<>":
                    found.append(
                        MailAddress(_clean(address.addr_spec), _clean(address.display_name) or None)
                    )
            return found[:100]
        if header is None:
            return []
        raw = str(header)
    except Exception as exc:
        notes.append(f"header {name} unreadable: {type(exc).__name__}")
        raw = " ".join(str(v) for k, v in message.raw_items() if k.lower() == name)
    for display, address in getaddresses([raw]):
        if address:
            found.append(MailAddress(_clean(address), _clean(display) or None))
    return found[:100]


def _reply_ids(message: Message, notes: list[str]) -> list[str]:
    ids: list[str] = []
    in_reply_to = _header_text(message, "in-reply-to", notes) or ""
    references = _header_text(message, "references", notes) or ""
    for candidate in [*_MSGID.findall(in_reply_to), *reversed(_MSGID.findall(references))]:
        if candidate not in ids:
            ids.append(candidate)
    return ids[:MAX_REFERENCES]


def _auto_submitted(message: Message, notes: list[str]) -> bool:
    """RFC 3834 and the common vendor headers (header evidence only)."""
    auto = (_header_text(message, "auto-submitted", notes) or "").strip().lower()
    if auto and not auto.startswith("no"):
        return True
    for name in ("x-autoreply", "x-autorespond", "x-autoresponder"):
        if _header_text(message, name, notes) is not None:
            return True
    precedence = (_header_text(message, "precedence", notes) or "").strip().lower()
    return precedence == "auto_reply"
