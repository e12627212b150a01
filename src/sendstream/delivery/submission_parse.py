"""A message submitted over SMTP, read into the body of `POST /v1/messages`,
so it goes through the same checks and the same pipeline as an API send.

- Sender: the first `From:` address (the envelope's MAIL FROM when there is
  none). The envelope sender is not used otherwise: Sendstream sends with
  its own per-message VERP return path.
- Recipients are the envelope's (RCPT TO), never the headers': with one
  `To:` address among them, it is `to`, the `Cc:` addresses among them are
  `cc` and every other envelope recipient is `bcc` (one message, as the
  client meant it). With none or several `To:` addresses, every envelope
  recipient gets its own message (a `to` list, as in the API), so nobody
  gets two copies and no Bcc recipient is shown to anyone.
- Content: `Subject:`, the text/plain and text/html bodies, every other
  leaf part an attachment (inline ones keep their Content-ID).
- `Reply-To:`, `In-Reply-To:`, `References:` and custom fields are kept.
  Fields Sendstream writes itself are dropped, not refused (`Date`,
  `Message-ID`, `MIME-Version`, `Received`, `Sender`, `Bcc`, DKIM/ARC
  fields, `Content-*`, `List-Unsubscribe*`, `Feedback-ID`).
- `X-Sendstream-*` fields set options and are removed: `-Stream`, `-Tags`
  (comma-separated), `-Metadata` (a JSON object), `-Track-Opens`,
  `-Track-Clicks` (true/false), `-List-Id`, `-Template` with `-Data` (a
  JSON object; the template's subject and bodies replace the message's).
"""

from __future__ import annotations

import base64
import json
import mimetypes
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses
from typing import Any

from sendstream.contacts.addresses import InvalidAddress, normalize_address
from sendstream.delivery import mime_headers

OPTION_PREFIX = "x-sendstream-"
DROPPED_HEADERS = mime_headers.RESERVED_HEADERS | {
    "list-unsubscribe",
    "list-unsubscribe-post",
    "feedback-id",
    "bcc",
    "sender",
    "x-original-to",
    "delivered-to",
}
_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off"})
_FOLD = re.compile(r"\s*[\r\n]+\s*")
# compat32: header values stay strings, decoded here only where used. The
# `default` policy parses every header into objects when it is read: ten
# times slower, and the relay reads every header of every message.
_PARSER = BytesParser(policy=policy.compat32)
MAX_NAME = 200
# The common shapes of an address field: `a@b`, `<a@b>`, `Name <a@b>` and
# `"Name" <a@b>`, one address, no comments, no encoded-words in the address.
# They skip `getaddresses`, whose full RFC 5322 parser costs ~0.1 ms a field.
_SIMPLE_ADDRESS = re.compile(
    r'^\s*(?:"([^"\\]*)"|([^"<>,;:()\\@]*?))\s*<([^<>\s,;:()"@]+@[^<>\s,;:()"@]+)>\s*$'
    r'|^\s*([^<>\s,;:()"@]+@[^<>\s,;:()"@]+)\s*$'
)


class Refused(Exception):
    """The message cannot be accepted: an SMTP reply (code, enhanced code, text)."""

    def __init__(self, code: int, enhanced: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.enhanced = enhanced
        self.text = text

    @property
    def reply(self) -> str:
        return smtp_reply(self.code, self.enhanced, self.text)


def smtp_reply(code: int, enhanced: str, text: str) -> str:
    """One reply line: no CR/LF, at most 500 characters (RFC 5321 allows 512)."""
    line = f"{code} {enhanced} {_FOLD.sub(' ', text)}"
    return line if len(line) <= 500 else line[:497] + "..."


@dataclass(slots=True)
class Submission:
    """A `POST /v1/messages` body (`MessageCreate` fields) and what the relay
    needs to know about it before queueing."""

    body: dict[str, Any]
    stream: str
    # Message rows it becomes (one per `to` address).
    rows: int
    size: int


def parse_submission(raw: bytes, recipients: Sequence[str], mail_from: str) -> Submission:
    message = read_message(raw)
    options = _options(message)
    body: dict[str, Any] = {}
    sender = _first_address(message, "from")
    if sender is None:
        if not mail_from or mail_from == "<>":
            raise Refused(550, "5.7.1", "from_required: the message has no From: address.")
        sender = {"email": mail_from}
    body["from"] = sender
    reply_to = _first_address(message, "reply-to")
    if reply_to is not None:
        body["reply_to"] = reply_to
    to, cc, bcc = _recipients(message, recipients)
    body["to"] = to[0] if len(to) == 1 else to
    if cc:
        body["cc"] = cc
    if bcc:
        body["bcc"] = bcc
    template = options.pop("template", None)
    if template is not None:
        body["template"] = template
    else:
        subject = message.get("subject")
        if subject is not None:
            body["subject"] = decoded(subject)
    leaves = _leaves(message)
    text_part, html_part = _bodies(leaves)
    if template is None:
        if text_part is not None:
            body["text"] = _text(text_part)
        if html_part is not None:
            body["html"] = _text(html_part)
        if text_part is None and html_part is None:
            body["text"] = ""
    attachments = _attachments(leaves, (text_part, html_part))
    if attachments:
        body["attachments"] = attachments
    headers = _custom_headers(message)
    if headers:
        body["headers"] = headers
    body.update(options)
    stream = body.get("stream", "transactional")
    return Submission(
        body=body,
        stream=stream if isinstance(stream, str) else "transactional",
        rows=len(to),
        size=len(raw),
    )


def decoded(value: Any) -> str:
    """A header value as text: unfolded, RFC 2047 encoded-words decoded
    (an undecodable one is kept as written)."""
    text = _unfold(str(value))
    if "=?" not in text:
        return text
    try:
        return _unfold(str(make_header(decode_header(text))))
    except (LookupError, UnicodeError, ValueError):
        return text


# --- options


def _options(message: Message) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, value in message.items():
        lower = name.lower()
        if not lower.startswith(OPTION_PREFIX):
            continue
        option = lower[len(OPTION_PREFIX) :]
        text = decoded(value)
        if option == "stream":
            found["stream"] = text.lower()
        elif option == "tags":
            found["tags"] = [t.strip() for t in text.split(",") if t.strip()]
        elif option == "metadata":
            found["metadata"] = _json_object(name, text)
        elif option == "data":
            found["data"] = _json_object(name, text)
        elif option in ("track-opens", "track-clicks"):
            found[option.replace("-", "_")] = _flag(name, text)
        elif option == "list-id":
            found["list_id"] = text
        elif option == "template":
            found["template"] = text
        else:
            raise Refused(
                554,
                "5.6.0",
                f"unknown_option: {name} is not an X-Sendstream option (Stream, Tags, "
                "Metadata, Track-Opens, Track-Clicks, List-Id, Template, Data).",
            )
    if "data" in found and "template" not in found:
        raise Refused(
            554, "5.6.0", "invalid_option: X-Sendstream-Data needs X-Sendstream-Template."
        )
    return found


def _json_object(name: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise Refused(554, "5.6.0", f"invalid_option: {name} must be a JSON object.")
    return value


def _flag(name: str, text: str) -> bool:
    lower = text.strip().lower()
    if lower in _TRUE:
        return True
    if lower in _FALSE:
        return False
    raise Refused(554, "5.6.0", f"invalid_option: {name} must be true or false.")


# --- addresses


def _addresses(message: Message, field: str) -> list[tuple[str, str]]:
    """(display name, address) of every parseable address of the field."""
    values = message.get_all(field)
    if not values:
        return []
    if len(values) == 1:
        simple = _SIMPLE_ADDRESS.match(_unfold(str(values[0])))
        if simple is not None:
            quoted, plain, spec, bare = simple.groups()
            if bare is not None:
                return [("", bare)]
            name = (quoted if quoted is not None else plain or "").strip()
            return [(decoded(name) if name else "", spec)]
    out: list[tuple[str, str]] = []
    for name, spec in getaddresses([_unfold(str(v)) for v in values]):
        if spec and "@" in spec:
            out.append((decoded(name) if name else "", spec))
    return out


def _entry(name: str, email: str) -> dict[str, Any]:
    name = _unfold(name)[:MAX_NAME]
    return {"email": email, "name": name} if name else {"email": email}


def _first_address(message: Message, field: str) -> dict[str, Any] | None:
    found = _addresses(message, field)
    return _entry(*found[0]) if found else None


def _key(address: str) -> str:
    try:
        return normalize_address(address).key
    except InvalidAddress:
        return address.strip().lower()


def _recipients(
    message: Message, envelope: Sequence[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(to, cc, bcc) from the envelope recipients, named as the headers name
    them (see the module docstring)."""
    wanted: dict[str, str] = {}
    for address in envelope:
        wanted.setdefault(_key(address), address)
    names: dict[str, str] = {}
    to_keys: list[str] = []
    cc_keys: list[str] = []
    for field, keys in (("to", to_keys), ("cc", cc_keys)):
        for name, address in _addresses(message, field):
            key = _key(address)
            if key in wanted and key not in names:
                names[key] = name
                keys.append(key)
    if len(to_keys) == 1:
        rest = [k for k in wanted if k != to_keys[0] and k not in cc_keys]
        return (
            [_entry(names[to_keys[0]], wanted[to_keys[0]])],
            [_entry(names[k], wanted[k]) for k in cc_keys],
            [{"email": wanted[k]} for k in rest],
        )
    ordered = to_keys + cc_keys + [k for k in wanted if k not in names]
    return [_entry(names.get(k, ""), wanted[k]) for k in ordered], [], []


# --- content


def _unfold(text: str) -> str:
    return _FOLD.sub(" ", text).strip()


def _is_attachment(part: Message) -> bool:
    return part.get_content_disposition() == "attachment"


def _leaves(part: Message) -> list[Message]:
    """Every leaf part, in order; an attached message (message/*) is one leaf."""
    if part.is_multipart() and not part.get_content_type().startswith("message/"):
        out: list[Message] = []
        payload = part.get_payload()
        for child in payload if isinstance(payload, list) else ():
            if isinstance(child, Message):
                out.extend(_leaves(child))
        return out
    return [part]


def _bodies(leaves: list[Message]) -> tuple[Message | None, Message | None]:
    """The first text/plain and the first text/html part that are not
    attachments (a lone part of another text type counts as plain)."""
    text: Message | None = None
    html: Message | None = None
    for part in leaves:
        if _is_attachment(part):
            continue
        kind = part.get_content_type()
        if kind == "text/html" and html is None:
            html = part
        elif kind == "text/plain" and text is None:
            text = part
    if text is None and html is None and len(leaves) == 1:
        only = leaves[0]
        if only.get_content_maintype() == "text" and not _is_attachment(only):
            text = only
    return text, html


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "us-ascii"
    try:
        text = payload.decode(charset, "replace")
    except LookupError:  # an unknown charset: UTF-8 is the likeliest
        text = payload.decode("utf-8", "replace")
    # Stored with plain line ends, as the API stores what it is given; the
    # MIME builder writes CRLF.
    return text.replace("\r\n", "\n")


def _attachments(
    leaves: list[Message], bodies: tuple[Message | None, Message | None]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for part in leaves:
        if any(part is b for b in bodies):
            continue
        out.append(_attachment(part, len(out)))
    return out


def _attachment(part: Message, index: int) -> dict[str, Any]:
    kind = part.get_content_type()
    if kind.startswith("message/"):
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else payload
        data = inner.as_bytes() if isinstance(inner, Message) else str(inner).encode()
        kind = "application/octet-stream"
        default_name = f"message-{index + 1}.eml"
    else:
        decoded_payload = part.get_payload(decode=True)
        data = decoded_payload if isinstance(decoded_payload, bytes) else b""
        default_name = f"attachment-{index + 1}{mimetypes.guess_extension(kind) or '.bin'}"
    filename = part.get_filename()
    entry: dict[str, Any] = {
        "content": base64.b64encode(data).decode("ascii"),
        "filename": (decoded(filename) if filename else "")[:255] or default_name,
        "content_type": kind,
    }
    content_id = part.get("content-id")
    if content_id is not None:
        cid = str(content_id).strip().strip("<>").strip()
        if cid:
            entry["content_id"] = cid
    return entry


def _custom_headers(message: Message) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in message.items():
        lower = name.lower()
        if (
            lower in DROPPED_HEADERS
            or lower.startswith(("content-", OPTION_PREFIX))
            or lower.startswith(("arc-", "x-google-", "x-ms-exchange-"))
        ):
            continue
        out[name] = decoded(value)
    return out


# --- reading the MIME tree
#
# `email.feedparser` reads a message line by line in Python: ~150 µs for a
# 1.5 KB multipart message, a tenth of the relay's budget. `read_message`
# builds the same compat32 `Message` tree itself for the common shape (CRLF
# line ends only, well-formed header blocks, multiparts with their start and
# close boundaries, no message/* parts) with str.find, and hands anything
# else to the feedparser. tests/delivery/test_submission_parse.py checks the
# two trees are equal.


def read_message(raw: bytes) -> Message:
    text = raw.decode("ascii", "surrogateescape")
    lines = text.count("\n")
    if text.count("\r\n") == lines and text.count("\r") == lines:
        found = _read_part(text, "text/plain", False)
        if found is not None:
            return found[0]
    return _PARSER.parsebytes(raw)


_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+:")


def _read_part(text: str, default_type: str, child: bool) -> tuple[Message, str | None] | None:
    """(the part, its multipart epilogue or None), or None when the text
    needs the feedparser. A child's text ends with the CRLF that belongs to
    the next boundary (RFC 2046 5.1.1)."""
    part = Message()
    if default_type != "text/plain":
        part.set_default_type(default_type)
    if text.startswith("\r\n"):
        start = 2
    else:
        end = text.find("\r\n\r\n")
        if end < 0:
            return None
        headers: list[tuple[str, str]] = []
        for line in text[:end].split("\r\n"):
            if line[:1] in (" ", "\t"):
                if not headers:
                    return None
                name, value = headers[-1]
                headers[-1] = (name, value + "\r\n" + line)
                continue
            match = _HEADER_NAME.match(line)
            if match is None:
                return None
            colon = match.end()
            headers.append((line[: colon - 1], line[colon:].lstrip(" \t")))
        for name, value in headers:
            part.set_raw(name, value)
        start = end + 4
    body = text[start:]
    maintype = part.get_content_maintype()
    if maintype == "message":
        return None
    if maintype != "multipart":
        part.set_payload(body[:-2] if child and body.endswith("\r\n") else body)
        return part, None
    boundary = part.get_boundary()
    if boundary is None or part.get_content_subtype() == "digest":
        return None
    return _read_multipart(part, body, "--" + boundary)


def _read_multipart(part: Message, body: str, separator: str) -> tuple[Message, str | None] | None:
    marks: list[tuple[int, int]] = []  # (start, end) of each boundary line
    close: tuple[int, int] | None = None
    size = len(body)
    at = body.find(separator)
    while at >= 0:
        if at == 0 or body[at - 1] == "\n":
            after = at + len(separator)
            closing = body.startswith("--", after)
            stop = after + 2 if closing else after
            while stop < size and body[stop] in " \t":
                stop += 1
            if stop == size or body.startswith("\r\n", stop):
                line_end = min(stop + 2, size)
                if closing:
                    close = (at, line_end)
                    break
                marks.append((at, line_end))
        at = body.find(separator, at + 1)
    if close is None or not marks:
        return None
    if marks[0][0] > 0:
        part.preamble = body[: marks[0][0] - 2]  # the CRLF belongs to the boundary
    children: list[Message | str] = []
    ends = [m[0] for m in marks[1:]] + [close[0]]
    for (_, begin), end in zip(marks, ends, strict=True):
        segment = body[begin:end]
        if not segment:  # adjacent boundary lines: the feedparser's business
            return None
        found = _read_part(segment, "text/plain", True)
        if found is None:
            return None
        child, epilogue = found
        if child.get_content_maintype() == "multipart":
            if not epilogue:
                child.epilogue = None
            elif epilogue.endswith("\r\n"):
                child.epilogue = epilogue[:-2]
        children.append(child)
    part.set_payload(children)
    epilogue = body[close[1] :]
    part.epilogue = epilogue
    return part, epilogue
