"""Signed tokens of tracking and unsubscribe links.

A token is base64url (no padding) of

    payload = version (1 byte) | kind and flags (1) | workspace id (16)
              | message id (16) | [contact id (16)] | [list id (16)] | [URL, UTF-8]
    token   = payload | HMAC-SHA256(key, payload)[:16]

* `kind` says what the token opens (open pixel, click, unsubscribe, trap
  link); the MAC covers it, so a pixel token is no click token. The two flag
  bits say whether the contact and list ids are present (a message to an
  address that is no contact has neither).
* A click token carries its target URL, so a click can only ever lead where
  the message's own link led: nothing is stored per link, and there is no open
  redirect (changing one byte of the URL breaks the MAC).
* The key is `HKDF(master key, "tracking-link")`. Verification tries the
  current master key, then each of `security.previous_keys`, so links in mail
  sent before a key rotation keep working.
* 16 bytes of MAC (128 bits): forging one takes 2^128 tries on average.

The mailto address of List-Unsubscribe needs a local part of at most 64
characters that survives case-folding, so it gets its own short form:
lower-case base32 of message id (16) | MAC (16) over the workspace and message
ids (`mailto_local_part` / `read_mailto_local_part`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import uuid
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sendstream.core.keys import MASTER_KEY_BYTES, master_key
from sendstream.core.settings import Settings, get_settings
from sendstream.tracking.errors import TrackingLinkInvalid

KEY_PURPOSE: Final = "tracking-link"
# Bumped if the layout ever changes, so old links fail cleanly, never misread.
VERSION: Final = 1
MAC_BYTES: Final = 16
# Longest URL a click token carries; longer links are left as they are.
MAX_URL_BYTES: Final = 2048
_IDS: Final = 32  # workspace and message
_HEADER: Final = 2
_HAS_CONTACT: Final = 0x10
_HAS_LIST: Final = 0x20
_KIND_MASK: Final = 0x0F
# What `read_mailto_local_part` accepts: "unsub-" and 52 base32 characters.
MAILTO_PREFIX: Final = "unsub-"
_MAILTO_DOMAIN_BYTE: Final = b"\x01m"


class Kind(Enum):
    OPEN = 1
    CLICK = 2
    UNSUBSCRIBE = 3
    # The hidden link only machines follow (tracking/bots.py).
    TRAP = 4


_KINDS: Final = {k.value: k for k in Kind}


@dataclass(frozen=True, slots=True)
class Claim:
    kind: Kind
    workspace_id: uuid.UUID
    message_id: uuid.UUID
    contact_id: uuid.UUID | None
    list_id: uuid.UUID | None
    # The target of a click token; None for other kinds.
    url: str | None = None


# --- keys


@lru_cache(maxsize=16)
def _key_from_master(master: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEY_PURPOSE.encode()).derive(
        master
    )


@lru_cache(maxsize=16)
def _previous(encoded: str) -> bytes | None:
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return _key_from_master(raw) if len(raw) == MASTER_KEY_BYTES else None


def signing_key(settings: Settings | None = None) -> bytes:
    """The key new tokens are signed with (the current master key's)."""
    return _key_from_master(master_key(settings or get_settings()))


def verification_keys(settings: Settings | None = None) -> list[bytes]:
    """The current key first, then those of `security.previous_keys` (a
    malformed previous key is skipped: it cannot have signed anything)."""
    settings = settings or get_settings()
    keys = [signing_key(settings)]
    for secret in settings.security.previous_keys:
        key = _previous(secret.get_secret_value())
        if key is not None and key not in keys:
            keys.append(key)
    return keys


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.digest(key, payload, "sha256")[:MAC_BYTES]


# --- the long form (links)


def payload(
    kind: Kind,
    workspace_id: uuid.UUID,
    message_id: uuid.UUID,
    contact_id: uuid.UUID | None,
    list_id: uuid.UUID | None,
    url: str | None = None,
) -> bytes:
    """The unsigned payload; `encode_payload` signs it. Split so that a
    rewrite signing twenty links builds the common prefix once."""
    flags = kind.value
    parts = [workspace_id.bytes, message_id.bytes]
    if contact_id is not None:
        flags |= _HAS_CONTACT
        parts.append(contact_id.bytes)
    if list_id is not None:
        flags |= _HAS_LIST
        parts.append(list_id.bytes)
    head = bytes((VERSION, flags)) + b"".join(parts)
    return head + url.encode() if url is not None else head


def encode_payload(key: bytes, data: bytes) -> str:
    return base64.urlsafe_b64encode(data + _mac(key, data)).rstrip(b"=").decode("ascii")


def make_token(
    kind: Kind,
    workspace_id: uuid.UUID,
    message_id: uuid.UUID,
    contact_id: uuid.UUID | None = None,
    list_id: uuid.UUID | None = None,
    url: str | None = None,
    *,
    settings: Settings | None = None,
) -> str:
    if (kind is Kind.CLICK) != (url is not None):
        raise ValueError("a click token carries a URL, and only a click token does")
    data = payload(kind, workspace_id, message_id, contact_id, list_id, url)
    return encode_payload(signing_key(settings), data)


def read_token(token: str, *kinds: Kind, settings: Settings | None = None) -> Claim:
    """The token's claim, or `TrackingLinkInvalid` when it is malformed,
    tampered with, of none of `kinds`, or signed under a key we do not hold."""
    if not 0 < len(token) <= 4096 or not token.isascii():
        raise TrackingLinkInvalid()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise TrackingLinkInvalid() from None
    if len(raw) < _HEADER + _IDS + MAC_BYTES:
        raise TrackingLinkInvalid()
    data, presented = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    if not any(
        hmac.compare_digest(presented, _mac(key, data)) for key in verification_keys(settings)
    ):
        raise TrackingLinkInvalid()
    version, flags = data[0], data[1]
    kind = _KINDS.get(flags & _KIND_MASK)
    if version != VERSION or kind is None or kind not in kinds:
        raise TrackingLinkInvalid()
    at = _HEADER + _IDS
    workspace_id = uuid.UUID(bytes=data[2:18])
    message_id = uuid.UUID(bytes=data[18:34])
    contact_id = list_id = None
    if flags & _HAS_CONTACT:
        contact_id, at = _uuid_at(data, at)
    if flags & _HAS_LIST:
        list_id, at = _uuid_at(data, at)
    url = None
    if kind is Kind.CLICK:
        try:
            url = data[at:].decode()
        except UnicodeDecodeError:
            raise TrackingLinkInvalid() from None
    elif at != len(data):
        raise TrackingLinkInvalid()
    return Claim(kind, workspace_id, message_id, contact_id, list_id, url)


def _uuid_at(data: bytes, at: int) -> tuple[uuid.UUID, int]:
    if len(data) < at + 16:
        raise TrackingLinkInvalid()
    return uuid.UUID(bytes=data[at : at + 16]), at + 16


# --- the short form (mailto local part)


def _mailto_mac(key: bytes, workspace_id: uuid.UUID, message_id: uuid.UUID) -> bytes:
    return _mac(key, _MAILTO_DOMAIN_BYTE + workspace_id.bytes + message_id.bytes)


def mailto_local_part(
    workspace_id: uuid.UUID, message_id: uuid.UUID, *, settings: Settings | None = None
) -> str:
    """`unsub-` and 52 lower-case base32 characters (58 in all, under the
    64 a local part may have)."""
    mac = _mailto_mac(signing_key(settings), workspace_id, message_id)
    encoded = base64.b32encode(message_id.bytes + mac).decode("ascii").rstrip("=").lower()
    return MAILTO_PREFIX + encoded


def read_mailto_local_part(local_part: str) -> tuple[uuid.UUID, bytes] | None:
    """The message id and MAC of a mailto unsubscribe address's local part
    (any case), or None when it is not one. The MAC is checked against the
    message's workspace by `check_mailto`, once the message is looked up."""
    text = local_part.strip().lower()
    if not text.startswith(MAILTO_PREFIX):
        return None
    body = text[len(MAILTO_PREFIX) :].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 16 + MAC_BYTES:
        return None
    return uuid.UUID(bytes=raw[:16]), raw[16:]


def check_mailto(
    workspace_id: uuid.UUID, message_id: uuid.UUID, mac: bytes, *, settings: Settings | None = None
) -> bool:
    return any(
        hmac.compare_digest(mac, _mailto_mac(key, workspace_id, message_id))
        for key in verification_keys(settings)
    )
