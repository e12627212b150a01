"""DKIM signing (RFC 6376) with RSA-SHA256 and Ed25519-SHA256 (RFC 8463).

relaxed/relaxed canonicalisation, `bh=` SHA-256, no `l=` (a length limit lets
anyone append content under a valid signature). The body is canonicalised and
hashed once per message and shared by every key, so dual signing (RSA for
every receiver, Ed25519 for those that know it) costs one body pass and two
private-key operations. Canonicalisation is a few compiled `bytes` regular
expressions over the wire bytes, not the email package: the message is
signed exactly as it will be sent.

`h=` lists the fields that matter and are present, each once per occurrence;
From, Subject, List-Unsubscribe and List-Unsubscribe-Post are listed one extra
time ("oversigned"), so a copy added after signing breaks the signature
instead of being shown to the reader.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

# Looked up in this order; the order does not matter to a verifier.
SIGNED_HEADERS: tuple[str, ...] = (
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "feedback-id",
)
OVERSIGNED_HEADERS: frozenset[str] = frozenset(
    {"from", "subject", "list-unsubscribe", "list-unsubscribe-post"}
)
# RFC 8301: verifiers refuse RSA keys under 1024 bits.
MIN_RSA_BITS = 1024
_SIGNATURE_LINE = 76

# One header field: name, optional blanks, colon, value with its continuation
# lines, CRLF.
_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)\r\n")
_WSP_RUN = re.compile(rb"[ \t]+")
_TRAILING_WSP = re.compile(rb"[ \t]+(?=\r\n)")
_TRAILING_CRLFS = re.compile(rb"(?:\r\n)+\Z")
_SELECTOR = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9_-]+)*")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]+")


class DkimError(ValueError):
    """A key or a message that cannot be signed; the text says why."""


PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True, slots=True)
class DkimKey:
    # The signing domain (`d=`) as ASCII (IDNA A-labels) and the selector (`s=`).
    domain: str
    selector: str
    private_key: PrivateKey

    def __post_init__(self) -> None:
        if _DOMAIN.fullmatch(self.domain) is None or len(self.domain) > 253:
            raise DkimError(f"DKIM domain {self.domain!r} is not an ASCII host name")
        if _SELECTOR.fullmatch(self.selector) is None or len(self.selector) > 63:
            raise DkimError(f"DKIM selector {self.selector!r} is not a valid DNS label")
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            if self.private_key.key_size < MIN_RSA_BITS:
                raise DkimError(f"RSA DKIM keys need at least {MIN_RSA_BITS} bits")
        elif not isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            raise DkimError("a DKIM key is RSA or Ed25519")

    @classmethod
    def from_pem(
        cls,
        domain: str,
        selector: str,
        pem: bytes,
        password: bytes | None = None,
        *,
        generated_here: bool = False,
    ) -> DkimKey:
        """`generated_here`: a key this installation generated and stored
        encrypted (authenticated), so OpenSSL's RSA consistency check, ~80 ms
        a load, proves nothing new and is skipped."""
        try:
            key = serialization.load_pem_private_key(
                pem, password=password, unsafe_skip_rsa_key_validation=generated_here
            )
        except (ValueError, TypeError) as exc:
            raise DkimError(f"not a PEM private key: {exc}") from None
        if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
            raise DkimError("a DKIM key is RSA or Ed25519")
        return cls(domain, selector, key)

    @property
    def algorithm(self) -> str:
        return "rsa-sha256" if isinstance(self.private_key, rsa.RSAPrivateKey) else "ed25519-sha256"

    def dns_record(self) -> str:
        """The TXT value to publish at `<selector>._domainkey.<domain>`."""
        kind = "rsa" if isinstance(self.private_key, rsa.RSAPrivateKey) else "ed25519"
        return f"v=DKIM1; k={kind}; p={public_dns_value(self.private_key)}"


def public_dns_value(key: PrivateKey) -> str:
    """The `p=` value: base64 SubjectPublicKeyInfo for RSA, raw 32 octets for Ed25519."""
    if isinstance(key, rsa.RSAPrivateKey):
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        der = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    return base64.b64encode(der).decode("ascii")


def _private_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def generate_rsa_key(bits: int = 2048) -> tuple[bytes, str]:
    """A new RSA key: (PKCS#8 PEM private key, DNS `p=` value)."""
    if bits < MIN_RSA_BITS:
        raise DkimError(f"RSA DKIM keys need at least {MIN_RSA_BITS} bits")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _private_pem(key), public_dns_value(key)


def generate_ed25519_key() -> tuple[bytes, str]:
    """A new Ed25519 key: (PKCS#8 PEM private key, DNS `p=` value)."""
    key = ed25519.Ed25519PrivateKey.generate()
    return _private_pem(key), public_dns_value(key)


def canonical_body(body: bytes) -> bytes:
    """RFC 6376 3.4.4 relaxed body canonicalisation (of CRLF-delimited lines).

    Blank runs become one space, blanks at line ends go, empty lines at the
    end go, and a non-empty body ends in CRLF; an empty body stays empty.
    """
    if b"\t" in body or b"  " in body:
        body = _WSP_RUN.sub(b" ", body)
    if b" \r\n" in body:
        body = _TRAILING_WSP.sub(b"", body)
    if body.endswith(b"\r\n\r\n"):
        body = _TRAILING_CRLFS.sub(b"\r\n", body)
    if body == b"\r\n":
        return b""
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body


def canonical_header(name: bytes, value: bytes) -> bytes:
    """RFC 6376 3.4.2 relaxed header canonicalisation, without the CRLF."""
    if b"\r\n" in value:
        value = value.replace(b"\r\n", b"")
    if b"\t" in value or b"  " in value:
        value = _WSP_RUN.sub(b" ", value)
    return name.lower() + b":" + value.strip(b" ")


def sign(
    message: bytes,
    keys: Sequence[DkimKey],
    *,
    headers: Sequence[str] = SIGNED_HEADERS,
    timestamp: int | None = None,
) -> bytes:
    """`message` with one DKIM-Signature field per key in front of it.

    `message` is the wire form (CRLF line ends, as `mime.build` makes it; a
    missing final CRLF is added, as SMTP would); `headers` the field names to
    sign when present. Signatures come out in the order of `keys`.
    """
    if not keys:
        return message
    if not message.endswith(b"\r\n"):
        # SMTP ends the data with CRLF whatever we pass it, and verifiers
        # disagree about blanks on an unterminated last line: sign what the
        # receiver will get.
        message += b"\r\n"
    split = message.find(b"\r\n\r\n")
    if split < 0:
        block, body = message, b""
    else:
        block, body = message[: split + 2], message[split + 4 :]
    fields = _fields(block)
    if b"from" not in fields:
        raise DkimError("the message has no From field, which DKIM must sign")
    body_hash = base64.b64encode(hashlib.sha256(canonical_body(body)).digest()).decode("ascii")
    names, signed = _select(fields, headers)
    stamp = int(time.time()) if timestamp is None else timestamp
    out = [_signature(key, names, signed, body_hash, stamp) for key in keys]
    out.append(message)
    return b"".join(out)


def _fields(block: bytes) -> dict[bytes, list[bytes]]:
    """Lower-case name -> raw value of each occurrence, top first."""
    fields: dict[bytes, list[bytes]] = {}
    pos = 0
    while pos < len(block):
        match = _FIELD.match(block, pos)
        if match is None:
            line = block[pos : block.find(b"\r\n", pos)][:60]
            raise DkimError(f"malformed header line: {line!r}")
        name = match.group(1).lower()
        fields.setdefault(name, []).append(match.group(2))
        pos = match.end()
    return fields


def _select(fields: dict[bytes, list[bytes]], headers: Sequence[str]) -> tuple[list[str], bytes]:
    """The `h=` names and the canonical fields they sign, in `h=` order.

    A name listed n times signs its last n occurrences, bottom up (RFC 6376
    5.4.2); an oversigned name's extra listing matches nothing now and would
    match a field added later.
    """
    names: list[str] = []
    signed: list[bytes] = []
    for name in headers:
        name = name.lower()
        key = name.encode("ascii")
        occurrences = fields.get(key)
        if not occurrences:
            continue
        names.extend([name] * len(occurrences))
        signed.extend(canonical_header(key, value) for value in reversed(occurrences))
        if name in OVERSIGNED_HEADERS:
            names.append(name)
    if "from" not in names:
        raise DkimError("the signed headers must include From (RFC 6376 5.4)")
    return names, (b"\r\n".join(signed) + b"\r\n") if signed else b""


def _signature(
    key: DkimKey, names: list[str], signed: bytes, body_hash: str, timestamp: int
) -> bytes:
    """The folded DKIM-Signature field for one key, ending in CRLF."""
    pieces = [
        " v=1;",
        f" a={key.algorithm};",
        " c=relaxed/relaxed;",
        f" d={key.domain};",
        f" s={key.selector};",
        f" t={timestamp};",
    ]
    # FWS may stand around each colon of `h=` (RFC 6376 3.5), so the list
    # folds between names.
    h_list = [f"{name}:" for name in names]
    h_list[0] = " h=" + h_list[0]
    h_list[-1] = h_list[-1][:-1] + ";"
    pieces.extend(h_list)
    pieces.append(f" bh={body_hash};")
    pieces.append(" b=")
    head = _fold("DKIM-Signature:", pieces)
    data = signed + canonical_header(b"dkim-signature", head[len("DKIM-Signature:") :].encode())
    private_key = key.private_key
    if isinstance(private_key, rsa.RSAPrivateKey):
        raw = private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        # RFC 8463 3: Ed25519 signs the SHA-256 hash of the header data.
        raw = private_key.sign(hashlib.sha256(data).digest())
    signature = base64.b64encode(raw).decode("ascii")
    lines = [head]
    room = 78 - (len(head) - head.rfind("\n") - 1)
    if room > 8:
        lines.append(signature[:room])
        signature = signature[room:]
    for start in range(0, len(signature), _SIGNATURE_LINE):
        lines.append("\r\n " + signature[start : start + _SIGNATURE_LINE])
    lines.append("\r\n")
    return "".join(lines).encode("ascii")


def _fold(start: str, pieces: list[str]) -> str:
    """Join pieces after `start`, breaking before one that would pass 78 columns.

    A piece that does not begin with a blank (the rest of an `h=` list) gets
    one at the break, which is the FWS the grammar allows there.
    """
    out = [start]
    line = len(start)
    for piece in pieces:
        if line + len(piece) > 78 and line > len(start):
            piece = piece if piece.startswith(" ") else " " + piece
            out.append("\r\n")
            line = 0
        out.append(piece)
        line += len(piece)
    return "".join(out)
