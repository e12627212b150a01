"""A small, bounded MIME reader for inbound reports.

The stdlib `email` parser with `policy.default` costs about a millisecond a
message and reads all of it; the classifier needs only the headers, the
part tree, the text of the first few text parts and the headers of the
returned message. This reader splits on boundaries by hand, decodes
base64/quoted-printable and charsets leniently (an unknown charset or bad
padding never raises), and stops at fixed limits, so a 100 MB message or a
part bomb costs the same as a normal bounce.
"""

from __future__ import annotations

import binascii
import html
import re
from dataclasses import dataclass, field
from email.header import decode_header

# Only the head of a message is read: reports put what matters first (a
# 500-recipient DSN is about 150 KB), the returned message comes last.
MAX_RAW_BYTES = 512 * 1024
# Decoded text kept per part; enough for the largest delivery-status part.
MAX_PART_TEXT = 256 * 1024
MAX_PARTS = 64
MAX_DEPTH = 5
MAX_HEADER_BYTES = 64 * 1024

_PARAM = re.compile(r';\s*([A-Za-z0-9._*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')
_TAG = re.compile(r"<(?:script|style)\b.*?</(?:script|style)\s*>|<[^>]*>", re.S | re.I)
_BLOCK_TAG = re.compile(r"<\s*(?:br|/p|/div|/tr|/li|/h\d|p|div|tr|li|table)\b[^>]*>", re.I)
_SPACES = re.compile(r"[ \t\xa0]+")


@dataclass(slots=True)
class Part:
    """One MIME entity: lower-cased header names in order, the content type
    split into type and parameters, the raw (still transfer-encoded) body,
    and the children of a multipart or the returned message of a
    message/rfc822."""

    headers: list[tuple[str, str]]
    content_type: str
    params: dict[str, str]
    body: bytes
    children: list[Part] = field(default_factory=list)
    # name -> values, built on the first look-up (the root and the returned
    # message are asked for a dozen names each).
    _index: dict[str, list[str]] | None = field(default=None, repr=False, compare=False)

    def _build_index(self) -> dict[str, list[str]]:
        index: dict[str, list[str]] = {}
        for key, value in self.headers:
            if key in index:
                index[key].append(value)
            else:
                index[key] = [value]
        self._index = index
        return index

    def get(self, name: str) -> str | None:
        values = (self._index or self._build_index()).get(name)
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        values = (self._index or self._build_index()).get(name)
        return list(values) if values else []


@dataclass(slots=True)
class Scan:
    root: Part
    parts: list[Part]  # every part, depth first, the root first
    notes: list[str]


_FOLD = re.compile(r"\n[ \t]+")
_FIELD = re.compile(r"^([!-9;-~]+)[ \t]*:[ \t]*(.*)$", re.M)


def parse_headers(block: bytes) -> list[tuple[str, str]]:
    """Header fields of one header block (LF line ends), unfolded; lines
    that are neither a field nor a continuation are skipped."""
    text = block[:MAX_HEADER_BYTES].decode("utf-8", "replace")
    if "\n " in text or "\n\t" in text:
        text = _FOLD.sub(" ", text)
    return [(name.lower(), value.strip()) for name, value in _FIELD.findall(text)]


_FIELD_START = re.compile(rb"[!-9;-~]+[ \t]*:")


def split_head(data: bytes) -> tuple[bytes, bytes]:
    """(header block, body) of an entity whose line ends are LF; an entity
    whose first line is not a header field has no headers."""
    if data.startswith(b"\n"):
        return b"", data[1:]
    if not _FIELD_START.match(data):
        return b"", data
    end = data.find(b"\n\n")
    if end < 0:
        return data, b""
    return data[:end], data[end + 2 :]


def content_type(value: str | None) -> tuple[str, dict[str, str]]:
    if not value:
        return "text/plain", {}
    main, _, rest = value.partition(";")
    ctype = main.strip().lower() or "text/plain"
    if "/" not in ctype:
        ctype = "text/plain"
    params: dict[str, str] = {}
    for key, raw in _PARAM.findall(";" + rest):
        val = raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw
        params.setdefault(key.lower().rstrip("*"), val)
    return ctype, params


def decode_words(value: str) -> str:
    """RFC 2047 encoded words (`=?utf-8?q?...?=`) as text; the value itself
    when it has none or they do not decode."""
    if "=?" not in value:
        return value
    try:
        out = []
        for chunk, charset in decode_header(value):
            if isinstance(chunk, bytes):
                out.append(_decode_bytes(chunk, charset))
            else:
                out.append(chunk)
        return "".join(out)
    except Exception:
        return value


def _decode_bytes(data: bytes, charset: str | None) -> str:
    if charset:
        try:
            return data.decode(charset.strip().strip('"').lower(), "replace")
        except (LookupError, ValueError, TypeError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def transfer_decode(part: Part, limit: int = MAX_PART_TEXT) -> bytes:
    """The part's body without its Content-Transfer-Encoding, bounded."""
    cte = (part.get("content-transfer-encoding") or "").strip().lower()
    body = part.body
    if cte == "base64":
        raw = body[: limit * 4 // 3 + 4]
        compact = re.sub(rb"[^A-Za-z0-9+/]", b"", raw)
        compact = compact[: len(compact) - len(compact) % 4]
        try:
            return binascii.a2b_base64(compact)[:limit]
        except (binascii.Error, ValueError):
            return body[:limit]
    if cte == "quoted-printable":
        try:
            return binascii.a2b_qp(body[: limit * 3])[:limit]
        except (binascii.Error, ValueError):
            return body[:limit]
    return body[:limit]


def part_text(part: Part, limit: int = MAX_PART_TEXT) -> str:
    """The part's text: transfer-decoded, charset-decoded (leniently), and
    for text/html reduced to its words."""
    text = _decode_bytes(transfer_decode(part, limit), part.params.get("charset"))
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if part.content_type == "text/html":
        text = _BLOCK_TAG.sub("\n", text)
        text = html.unescape(_TAG.sub(" ", text))
        text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return text


def scan(raw: bytes) -> Scan:
    """The part tree of a message, reading at most MAX_RAW_BYTES."""
    notes: list[str] = []
    if len(raw) > MAX_RAW_BYTES:
        notes.append(f"read the first {MAX_RAW_BYTES // 1024} KiB of {len(raw)} bytes")
        raw = raw[:MAX_RAW_BYTES]
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n")
    if raw.startswith(b"From "):  # an mbox separator line
        raw = raw.partition(b"\n")[2]
    parts: list[Part] = []
    root = _entity(raw, 0, parts, notes)
    return Scan(root=root, parts=parts, notes=notes)


def _entity(data: bytes, depth: int, parts: list[Part], notes: list[str]) -> Part:
    head, body = split_head(data)
    headers = parse_headers(head)
    ctype_value = None
    for key, value in headers:
        if key == "content-type":
            ctype_value = value
            break
    ctype, params = content_type(ctype_value)
    part = Part(headers=headers, content_type=ctype, params=params, body=body)
    parts.append(part)
    if depth >= MAX_DEPTH:
        return part
    if ctype.startswith("multipart/"):
        boundary = params.get("boundary")
        if boundary:
            for chunk in _split_multipart(body, boundary.encode("utf-8", "replace")):
                if len(parts) >= MAX_PARTS:
                    notes.append(f"stopped after {MAX_PARTS} MIME parts")
                    break
                part.children.append(_entity(chunk, depth + 1, parts, notes))
        else:
            notes.append("multipart without a boundary")
    elif ctype in ("message/rfc822", "message/global", "text/rfc822-headers"):
        inner = body
        if (part.get("content-transfer-encoding") or "").strip().lower() in (
            "base64",
            "quoted-printable",
        ):
            inner = transfer_decode(part).replace(b"\r\n", b"\n")
        if ctype == "text/rfc822-headers":
            inner = inner.lstrip(b"\n")
            if b"\n\n" not in inner:
                inner += b"\n\n"
        # Only the returned message's headers matter; its own parts are not
        # walked (a forwarded multipart would only add work).
        ihead, ibody = split_head(inner)
        iheaders = parse_headers(ihead)
        ictype, iparams = content_type(next((v for k, v in iheaders if k == "content-type"), None))
        child = Part(headers=iheaders, content_type=ictype, params=iparams, body=ibody)
        part.children.append(child)
    return part


def _split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    delimiter = b"\n--" + boundary
    chunks = (b"\n" + body).split(delimiter)
    out: list[bytes] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        newline = chunk.find(b"\n")
        out.append(b"" if newline < 0 else chunk[newline + 1 :])
    return out
