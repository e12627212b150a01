"""Header fields for the MIME builder: folding (RFC 5322 2.2.3), encoded-words
(RFC 2047), addresses with IDNA domains, and RFC 2231 file-name parameters.

Every function here returns ASCII text with CRLF line ends: a header that
needs non-ASCII is encoded, never sent raw (no SMTPUTF8 yet). A field is built
from *pieces*, each of which starts with the whitespace that may be folded
(`" Jane"`, `" <jane@example.com>,"`); `fold` joins them and breaks a line
before a piece that would push it past 78 characters. Pieces are sized so that
no line passes 998 octets; when a structured value cannot be (one unbreakable
word that long), `InvalidHeader` says so instead of sending a broken message.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import quote

import idna

if TYPE_CHECKING:
    from sendstream.delivery.mime import Address

# RFC 5322 2.1.1: lines SHOULD stay within 78 characters and MUST within 998.
SOFT_LINE_LIMIT = 78
HARD_LINE_LIMIT = 998
# RFC 2047 2: an encoded-word is at most 75 characters.
_ENCODED_WORD_LIMIT = 75
_ENCODED_WORD_OVERHEAD = len("=?utf-8?q??=")
# An RFC 2231 continuation segment, short enough that `; filename*12*=` and
# the segment fit within 78 characters.
_RFC2231_SEGMENT = 56
# A display name longer than this goes out as encoded-words, which fold
# anywhere; shorter ones stay readable (atoms or one quoted-string).
_SHORT_NAME = 64


class MimeError(ValueError):
    """The message parts cannot be turned into a valid message; the text says why."""


class HeaderInjection(MimeError):
    """A header name, value, address or file name contains CR, LF or NUL.

    Either would let the caller end the field early and write headers (or a
    body) of their own choosing; the send API maps this to its own error code.
    """

    def __init__(self, header: str) -> None:
        super().__init__(f"{header}: CR, LF and NUL are not allowed in a header")
        self.header = header


class InvalidHeader(MimeError):
    """A header name is malformed or reserved, or a value cannot be encoded."""


class InvalidAddress(MimeError):
    """An address cannot be written into a header (bad syntax, non-ASCII local part)."""


# CR, LF and NUL end or corrupt a field; a lone surrogate cannot be encoded.
_INJECTION = re.compile(r"[\r\n\x00\ud800-\udfff]")
# Printable ASCII except the colon (RFC 5322 ftext).
_FIELD_NAME = re.compile(r"[!-9;-~]+")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_QUOTED_LOCAL = re.compile(r'"(?:[ !#-\[\]-~]|\\[ -~])*"')
_ATOM_PHRASE = re.compile(rf"{_ATEXT}+(?: {_ATEXT}+)*")
_QUOTABLE = re.compile(r"[ -~]*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_LDH_DOMAIN = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")
# Text that can go into an unstructured field as it is: visible ASCII words
# separated by spaces or tabs, nothing leading or trailing (a parser drops
# leading whitespace).
_PLAIN_TEXT = re.compile(r"[!-~]+(?:[ \t]+[!-~]+)*")
# Splits before each run of whitespace: every piece is the run and the word after it.
_BEFORE_WSP = re.compile(r"(?<![ \t])(?=[ \t])")
_MSG_ID = re.compile(r"<[!-;=?-~]+@[!-;=?-~]+>")
_CONTENT_ID = re.compile(r"[!-;=?-~]+")
# RFC 2047 5(3): the characters an encoded-word in a phrase may carry as they are.
_Q_LITERAL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/"
# Octets that cost one character in Q (the literal ones, and space as "_").
_Q_AS_IS = _Q_LITERAL + b" "
_Q_TABLE = [chr(b) if b in _Q_LITERAL else "_" if b == 0x20 else f"={b:02X}" for b in range(256)]
# RFC 2231 attribute-char: what stays literal in a percent-encoded parameter.
_ATTR_SAFE = "!#$&+-.^_`|~"


def check_injection(header: str, value: str) -> None:
    found = _INJECTION.search(value)
    if found is not None:
        if found.group() in "\r\n\x00":
            raise HeaderInjection(header)
        raise MimeError(f"{header}: the text is not valid Unicode (a lone surrogate)")


def fold(name: str, pieces: Iterable[str]) -> str:
    """`Name:` followed by the pieces, folded; ends in CRLF.

    A break goes before a piece that would pass 78 characters, but never
    leaves a continuation line without a word (a blank line would end the
    header section) and never puts a piece after `Name:` on a line of its own
    unless it then fits.
    """
    out = [name, ":"]
    line = len(name) + 1
    first_line = True
    has_piece = False
    for piece in pieces:
        if (
            line + len(piece) > SOFT_LINE_LIMIT
            and not piece.isspace()
            and (has_piece or (first_line and len(piece) <= SOFT_LINE_LIMIT))
        ):
            if line > HARD_LINE_LIMIT:
                raise InvalidHeader(f"{name}: a word is longer than {HARD_LINE_LIMIT} characters")
            out.append("\r\n")
            line = 0
            first_line = has_piece = False
        out.append(piece)
        line += len(piece)
        has_piece = True
    if line > HARD_LINE_LIMIT:
        raise InvalidHeader(f"{name}: a word is longer than {HARD_LINE_LIMIT} characters")
    out.append("\r\n")
    return "".join(out)


def encoded_words(text: str, first_room: int = _ENCODED_WORD_LIMIT) -> list[str]:
    """`text` as UTF-8 encoded-words, B or Q whichever is shorter.

    Each word holds whole characters (RFC 2047 5: a multi-byte character is
    never split across words) and is at most 75 characters; the first is at
    most `first_room` so it fits on the line it starts. The work is per word
    or per octet with table lookups: this runs for every personalised
    subject and display name.
    """
    data = text.encode("utf-8")
    q_length = len(data) + 2 * len(data.translate(None, _Q_AS_IS))
    b_length = 4 * ((len(data) + 2) // 3)
    room = max(min(first_room, _ENCODED_WORD_LIMIT), 24) - _ENCODED_WORD_OVERHEAD
    if q_length <= b_length:
        return [f"=?utf-8?q?{chunk}?=" for chunk in _q_chunks(data, room)]
    words = []
    start = 0
    while start < len(data):
        end = min(start + room // 4 * 3, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # inside a character
            end -= 1
        words.append(f"=?utf-8?b?{binascii.b2a_base64(data[start:end], newline=False).decode()}?=")
        start = end
        room = _ENCODED_WORD_LIMIT - _ENCODED_WORD_OVERHEAD
    return words


def _q_chunks(data: bytes, room: int) -> list[str]:
    """Q-encoded text cut into pieces of at most `room` characters, each
    ending on a character boundary (never before a UTF-8 continuation octet)."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    # Where the character being read began, in `current` and in size.
    char_index = char_size = 0
    for byte in data:
        if byte & 0xC0 != 0x80:
            char_index, char_size = len(current), size
        encoded = _Q_TABLE[byte]
        current.append(encoded)
        size += len(encoded)
        if size > room:
            chunks.append("".join(current[:char_index]))
            current = current[char_index:]
            size -= char_size
            char_index = char_size = 0
            room = _ENCODED_WORD_LIMIT - _ENCODED_WORD_OVERHEAD
    if current:
        chunks.append("".join(current))
    return chunks


def unstructured(name: str, value: str) -> str:
    """An unstructured field (Subject, an X- header) that reads back exactly.

    Plain visible ASCII is folded at its own whitespace, so an unfolding
    reader gets every character back. Anything else (non-ASCII, control
    characters, leading or trailing whitespace, text that looks like an
    encoded-word, a word too long for one line) is sent as encoded-words.
    """
    check_injection(name, value)
    if not value:
        return f"{name}: \r\n"
    first_room = SOFT_LINE_LIMIT - len(name) - 2
    if _PLAIN_TEXT.fullmatch(value) is not None and "=?" not in value:
        pieces = [p for p in _BEFORE_WSP.split(" " + value) if p]
        if len(pieces[0]) <= first_room + 1 and all(len(p) <= SOFT_LINE_LIMIT for p in pieces[1:]):
            return fold(name, pieces)
    return fold(name, [" " + w for w in encoded_words(value, first_room)])


def structured(name: str, value: str) -> str:
    """A caller's ASCII field whose syntax must survive (List-Unsubscribe, ...).

    Folded only at its own whitespace; surrounding whitespace is dropped.
    """
    check_injection(name, value)
    value = value.strip(" \t")
    if not value:
        return f"{name}: \r\n"
    if _PLAIN_TEXT.fullmatch(value) is None:
        raise InvalidHeader(f"{name}: the value must be printable ASCII")
    return fold(name, [p for p in _BEFORE_WSP.split(" " + value) if p])


# Fields the builder writes itself, or that only a later hop may add: a
# caller setting one would duplicate or contradict it (two From fields, a
# forged DKIM-Signature or Received trail). Every Content-* is reserved too.
RESERVED_HEADERS = frozenset(
    {
        "from", "sender", "to", "cc", "bcc", "reply-to", "subject", "date",
        "message-id", "mime-version", "dkim-signature", "arc-seal",
        "arc-message-signature", "arc-authentication-results",
        "authentication-results", "return-path", "received",
    }
)  # fmt: skip
# Caller fields with a syntax of their own: sent as given (ASCII only, folded
# at their whitespace), never turned into encoded-words.
STRUCTURED_HEADERS = frozenset(
    {
        "list-unsubscribe", "list-unsubscribe-post", "list-id", "list-help",
        "list-subscribe", "list-post", "list-owner", "list-archive",
        "in-reply-to", "references", "feedback-id", "auto-submitted", "precedence",
    }
)  # fmt: skip


def extra_header(name: str, value: str) -> str:
    """A caller's header: name checked, not reserved; value without surrounding blanks.

    Fields in `STRUCTURED_HEADERS` must be ASCII; any other field is
    unstructured text and may carry any Unicode (as encoded-words).
    """
    check_injection("header name", name)
    if _FIELD_NAME.fullmatch(name) is None:
        raise InvalidHeader(
            f"header name {name!r}: only printable ASCII without spaces or colons is allowed"
        )
    lower = name.lower()
    if lower in RESERVED_HEADERS or lower.startswith("content-"):
        raise InvalidHeader(f"header {name!r} is set by Sendstream and cannot be given")
    check_injection(name, value)
    value = value.strip(" \t")
    if lower in STRUCTURED_HEADERS:
        return structured(name, value)
    return unstructured(name, value)


@lru_cache(maxsize=4096)
def ascii_domain(domain: str) -> str:
    """The domain as sent: ASCII kept as given, non-ASCII as IDNA A-labels."""
    check_injection("address", domain)
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise InvalidAddress(f"domain {domain!r} is not a valid IDNA name: {exc}") from None
    if len(domain) > 253 or _LDH_DOMAIN.fullmatch(domain) is None:
        raise InvalidAddress(f"domain {domain!r} is not a valid host name")
    return domain


def addr_spec(header: str, address: str) -> str:
    """`local@domain` as it goes on the wire; refuses what would need SMTPUTF8."""
    check_injection(header, address)
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise InvalidAddress(f"{header}: {address!r} is not an address (local@domain)")
    if not local.isascii():
        raise InvalidAddress(
            f"{header}: {address!r} has a non-ASCII local part, which needs SMTPUTF8;"
            " Sendstream does not send SMTPUTF8 messages yet"
        )
    if len(local) > 64 or (
        _DOT_ATOM.fullmatch(local) is None and _QUOTED_LOCAL.fullmatch(local) is None
    ):
        raise InvalidAddress(f"{header}: {address!r} has an invalid local part")
    return f"{local}@{ascii_domain(domain)}"


def display_name(name: str, first_room: int) -> list[str]:
    """Pieces of a display name: atoms, one quoted-string, or encoded-words."""
    if "=?" not in name and len(name) < _SHORT_NAME:
        if _ATOM_PHRASE.fullmatch(name) is not None:
            return [" " + word for word in name.split(" ")]
        if _QUOTABLE.fullmatch(name) is not None:
            return [' "' + name.replace("\\", "\\\\").replace('"', '\\"') + '"']
    return [" " + word for word in encoded_words(name, first_room)]


def address_list(name: str, addresses: Sequence[Address]) -> str:
    """`From`, `To`, `Cc`, `Reply-To`: `Name <local@domain>` separated by commas."""
    pieces: list[str] = []
    first_room = SOFT_LINE_LIMIT - len(name) - 2
    for address in addresses:
        spec = addr_spec(name, address.address)
        if address.name:
            check_injection(name, address.name)
            pieces.extend(display_name(address.name, first_room))
            pieces.append(f" <{spec}>,")
        else:
            pieces.append(f" {spec},")
        first_room = _ENCODED_WORD_LIMIT
    pieces[-1] = pieces[-1][:-1]
    return fold(name, pieces)


def message_id(value: str) -> str:
    check_injection("Message-ID", value)
    if len(value) > 250 or _MSG_ID.fullmatch(value) is None:
        raise InvalidHeader(f"Message-ID {value!r} is not of the form <id@domain>")
    return f"Message-ID: {value}\r\n"


def content_id(value: str) -> str:
    """`Content-ID: <id>` from an id given with or without its angle brackets."""
    check_injection("Content-ID", value)
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    if len(value) > 250 or _CONTENT_ID.fullmatch(value) is None:
        raise InvalidHeader(f"Content-ID {value!r}: only printable ASCII without spaces")
    return f"Content-ID: <{value}>\r\n"


def file_name_parameter(parameter: str, file_name: str) -> list[str]:
    """Pieces of `; name="..."`: quoted when short plain ASCII, else RFC 2231.

    RFC 2231 form (`filename*0*=utf-8''%E2%82%AC...`) carries any Unicode
    name, split into continuations at whole characters so no line is long.
    """
    check_injection(f"attachment {parameter}", file_name)
    # Readers drop surrounding whitespace from file names (Python's
    # get_filename does); dropping it here keeps what we send what they see.
    file_name = file_name.strip()
    if not file_name:
        raise MimeError("an attachment needs a file name")
    if (
        file_name.isascii()
        and _QUOTABLE.fullmatch(file_name) is not None
        and '"' not in file_name
        and "\\" not in file_name
        and len(file_name) <= _RFC2231_SEGMENT
    ):
        return [f' {parameter}="{file_name}"']
    segments: list[str] = []
    current = "utf-8''"
    for char in file_name:
        encoded = quote(char.encode("utf-8"), safe=_ATTR_SAFE)
        if len(current) + len(encoded) > _RFC2231_SEGMENT:
            segments.append(current)
            current = ""
        current += encoded
    segments.append(current)
    if len(segments) == 1:
        return [f" {parameter}*={segments[0]}"]
    pieces = [f" {parameter}*{i}*={segment};" for i, segment in enumerate(segments)]
    pieces[-1] = pieces[-1][:-1]
    return pieces
