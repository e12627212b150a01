"""Message bytes built directly (RFC 5322, RFC 2045-2047, RFC 2231).

The stdlib `EmailMessage` spends about 2 ms a message on a policy-driven
object model we do not need; here a message is one pass over its parts with
the per-byte work in C (`binascii` for quoted-printable and base64, `bytes`
methods for the checks), which the delivery hot path needs.

What `build` guarantees (tests hold each one):

- CRLF line ends everywhere, the message ends in CRLF, no line passes 998
  octets and header lines stay within 78 where the text allows;
- headers are pure ASCII: non-ASCII display names, subjects and unstructured
  header values become UTF-8 encoded-words, domains become IDNA A-labels, and
  a non-ASCII local part is refused (`InvalidAddress`: no SMTPUTF8 yet);
- CR, LF or NUL in any header name, value, address or file name raises
  `HeaderInjection` naming the header; Sendstream's own fields (From, Date,
  Content-*, DKIM-Signature, ...) cannot be given as extra headers;
- text bodies have their line ends normalised to CRLF and end with a line
  break (an empty body stays empty); each part is sent as 7bit when it is
  ASCII with short lines, quoted-printable when it is mostly ASCII, else
  base64; attachments are always base64;
- structure: one body -> a single part; text and HTML -> multipart/alternative
  (text first); inline attachments (with a `content_id`) -> multipart/related
  around the HTML; other attachments -> multipart/mixed around all of it.
  Inline attachments without an HTML body are sent as ordinary attachments.
- multipart boundaries are random and checked against the content they
  enclose.

Bcc recipients are an envelope matter: they never appear in the message.
"""

from __future__ import annotations

import binascii
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache

from sendstream.delivery.mime_headers import (
    HeaderInjection,
    InvalidAddress,
    InvalidHeader,
    MimeError,
    address_list,
    ascii_domain,
    check_injection,
    content_id,
    extra_header,
    file_name_parameter,
    fold,
    message_id,
    unstructured,
)

__all__ = [
    "Address",
    "Attachment",
    "HeaderInjection",
    "InvalidAddress",
    "InvalidHeader",
    "MessageParts",
    "MimeError",
    "build",
    "new_message_id",
    "normalize_text",
]


@dataclass(frozen=True, slots=True)
class Address:
    address: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes
    # Set for an inline part the HTML refers to as `cid:<content_id>`.
    content_id: str | None = None


@dataclass(slots=True)
class MessageParts:
    sender: Address
    to: Sequence[Address] = ()
    cc: Sequence[Address] = ()
    reply_to: Sequence[Address] = ()
    subject: str = ""
    text: str | None = None
    html: str | None = None
    attachments: Sequence[Attachment] = ()
    # Extra fields in the order given (List-Unsubscribe, Feedback-ID, X-...).
    headers: Sequence[tuple[str, str]] = ()
    # `<id@domain>`; a new one on the sender's domain when None.
    message_id: str | None = None
    # Timezone-aware; now (UTC) when None.
    date: datetime | None = None


# A line of 999 octets or more (RFC 5322 2.1.1 allows 998 plus CRLF).
_LONG_LINE = re.compile(rb"[^\r\n]{999}")
_ASCII = bytes(range(128))
# `type/subtype` of RFC 6838 restricted-name characters, no parameters.
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*")
_BASE64_LINE = 76


@dataclass(slots=True)
class _Entity:
    # Its Content-* fields, each ending in CRLF.
    headers: str
    # Empty, or ending in CRLF.
    body: bytes


def new_message_id(domain: str) -> str:
    """A fresh `<random@domain>`: 144 random bits, domain as IDNA A-labels."""
    return f"<{secrets.token_urlsafe(18)}@{ascii_domain(domain)}>"


def normalize_text(text: str) -> str:
    """A text body as `build` sends it: CRLF line ends, ending in CRLF unless empty.

    Lone CR and lone LF both count as line ends.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text and not text.endswith("\n"):
        text += "\n"
    return text.replace("\n", "\r\n")


def build(parts: MessageParts) -> bytes:
    """The message as it goes on the wire (before DKIM signing)."""
    date = parts.date if parts.date is not None else datetime.now(UTC)
    if date.utcoffset() is None:
        raise MimeError("the message date must be timezone-aware")
    head = [_date_field(date.replace(microsecond=0)), address_list("From", [parts.sender])]
    if parts.reply_to:
        head.append(address_list("Reply-To", parts.reply_to))
    if parts.to:
        head.append(address_list("To", parts.to))
    if parts.cc:
        head.append(address_list("Cc", parts.cc))
    head.append(unstructured("Subject", parts.subject))
    if parts.message_id is None:
        head.append(message_id(new_message_id(parts.sender.address.rpartition("@")[2])))
    else:
        head.append(message_id(parts.message_id))
    for name, value in parts.headers:
        head.append(extra_header(name, value))
    head.append("MIME-Version: 1.0\r\n")
    entity = _message_body(parts)
    head.append(entity.headers)
    head.append("\r\n")
    return "".join(head).encode("ascii") + entity.body


@lru_cache(maxsize=8)
def _date_field(date: datetime) -> str:
    # The field has whole seconds: messages built in the same second share it.
    return f"Date: {format_datetime(date)}\r\n"


def _message_body(parts: MessageParts) -> _Entity:
    html = _text_part("html", parts.html) if parts.html is not None else None
    inline: list[_Entity] = []
    attached: list[_Entity] = []
    for attachment in parts.attachments:
        if attachment.content_id is not None and html is not None:
            inline.append(_attachment(attachment, inline=True))
        else:
            attached.append(_attachment(attachment, inline=False))
    if html is not None and inline:
        html = _multipart("related", [html, *inline], [' type="text/html";'])
    text = _text_part("plain", parts.text) if parts.text is not None else None
    body: _Entity | None
    if text is not None and html is not None:
        body = _multipart("alternative", [text, html])
    else:
        body = text or html
    if attached:
        return _multipart("mixed", [body, *attached] if body is not None else attached)
    return body if body is not None else _text_part("plain", "")


def _text_part(subtype: str, text: str) -> _Entity:
    try:
        data = normalize_text(text).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MimeError(f"the {subtype} body is not valid Unicode: {exc.reason}") from None
    encoding, body = _transfer_encode(data)
    return _Entity(
        f"Content-Type: text/{subtype}; charset=utf-8\r\nContent-Transfer-Encoding: {encoding}\r\n",
        body,
    )


def _transfer_encode(data: bytes) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, encoded body) for CRLF-normalised text.

    7bit when it can go as it is. Otherwise quoted-printable costs 3 octets
    per non-ASCII octet and base64 4/3 of everything (plus line breaks), so
    quoted-printable wins while at most about a sixth of the octets are
    non-ASCII.
    """
    if data.isascii() and b"\0" not in data and _LONG_LINE.search(data) is None:
        return "7bit", data
    non_ascii = len(data.translate(None, _ASCII))
    if non_ascii * 6 <= len(data):
        # `data` ends in CRLF, so b2a_qp writes CRLF soft breaks too.
        return "quoted-printable", binascii.b2a_qp(data, istext=True)
    return "base64", _base64(data)


def _base64(data: bytes) -> bytes:
    encoded = binascii.b2a_base64(data, newline=False)
    if not encoded:
        return b""
    lines = [encoded[i : i + _BASE64_LINE] for i in range(0, len(encoded), _BASE64_LINE)]
    lines.append(b"")
    return b"\r\n".join(lines)


def _attachment(attachment: Attachment, *, inline: bool) -> _Entity:
    content_type = attachment.content_type
    check_injection("attachment content type", content_type)
    if _CONTENT_TYPE.fullmatch(content_type) is None:
        raise MimeError(
            f"attachment {attachment.filename!r}: content type {content_type!r}"
            " is not of the form type/subtype"
        )
    if content_type.lower().startswith(("multipart/", "message/")):
        raise MimeError(
            f"attachment {attachment.filename!r}: {content_type} cannot be sent as"
            " an attachment; use application/octet-stream"
        )
    if not isinstance(attachment.data, bytes):
        raise MimeError(f"attachment {attachment.filename!r}: data must be bytes")
    disposition = " inline;" if inline else " attachment;"
    headers = [
        fold(
            "Content-Type", [f" {content_type};", *file_name_parameter("name", attachment.filename)]
        ),
        fold(
            "Content-Disposition",
            [disposition, *file_name_parameter("filename", attachment.filename)],
        ),
    ]
    if attachment.content_id is not None:
        headers.append(content_id(attachment.content_id))
    headers.append("Content-Transfer-Encoding: base64\r\n")
    return _Entity("".join(headers), _base64(attachment.data))


def _multipart(subtype: str, children: Sequence[_Entity], params: Sequence[str] = ()) -> _Entity:
    """A multipart entity whose boundary occurs in none of its children.

    The CRLF before each delimiter belongs to the delimiter (RFC 2046 5.1.1),
    so a child body that ends in CRLF keeps it when read back.
    """
    encoded = [(child.headers.encode("ascii"), child.body) for child in children]
    while True:
        boundary = f"=_{secrets.token_hex(12)}"
        marker = boundary.encode("ascii")
        if not any(marker in headers or marker in body for headers, body in encoded):
            break
    delimiter = b"--" + marker + b"\r\n"
    chunks: list[bytes] = []
    for headers, body in encoded:
        chunks += [delimiter, headers, b"\r\n", body, b"\r\n"]
    chunks.append(b"--" + marker + b"--\r\n")
    pieces = [f" multipart/{subtype};", *params, f' boundary="{boundary}"']
    content_type = fold("Content-Type", pieces)
    return _Entity(content_type, b"".join(chunks))
