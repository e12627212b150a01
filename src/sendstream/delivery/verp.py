"""VERP return paths: `bounces+<token>@<delivery.bounce_domain>`.

A bounce (or an auto-reply) goes to the envelope sender, so a per-message
sender names the message that bounced without guessing from the DSN's
text. The token is base64url (no padding) of

    workspace id (16 bytes) | message id (16 bytes) | HMAC-SHA256 tag (10 bytes)

with the tag over both ids under the master key's `verp` subkey: 56
characters, so the local part is exactly 64 octets, the RFC 5321 limit.
A forged or mangled token (a guessed id, a changed character) parses to
None, so nobody can make a message look bounced by mailing our MX.

The token is case-sensitive, as RFC 5321 says a local part is to every host
but its destination (ours): MTAs copy the envelope sender into a DSN as
they received it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from typing import Final

from sendstream.core.keys import subkey
from sendstream.core.settings import Settings, get_settings

PREFIX: Final = "bounces+"
KEY_PURPOSE: Final = "verp"
_TAG_BYTES = 10
_TOKEN_BYTES = 32 + _TAG_BYTES
_TOKEN_CHARS = 56


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _tag(ids: bytes, settings: Settings | None) -> bytes:
    return hmac.new(subkey(KEY_PURPOSE, settings), ids, hashlib.sha256).digest()[:_TAG_BYTES]


def verp_token(
    workspace_id: uuid.UUID, message_id: uuid.UUID, settings: Settings | None = None
) -> str:
    ids = workspace_id.bytes + message_id.bytes
    return _encode(ids + _tag(ids, settings))


def verp_address(
    workspace_id: uuid.UUID, message_id: uuid.UUID, settings: Settings | None = None
) -> str:
    """The envelope sender (MAIL FROM) of one message."""
    settings = settings or get_settings()
    token = verp_token(workspace_id, message_id, settings)
    return f"{PREFIX}{token}@{settings.delivery.bounce_domain}"


def parse_verp(
    local_part: str, settings: Settings | None = None
) -> tuple[uuid.UUID, uuid.UUID] | None:
    """(workspace id, message id) of a return path's local part
    (`bounces+<token>`; a whole address is accepted too), or None when it is
    not one of ours or its tag does not match."""
    local = local_part.rpartition("@")[0] if "@" in local_part else local_part
    if not local.startswith(PREFIX):
        return None
    token = local[len(PREFIX) :]
    if len(token) != _TOKEN_CHARS:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "==")
    except (binascii.Error, ValueError):
        return None
    # The decoder skips characters outside its alphabet and ignores the unused
    # low bits of the last character: only the one canonical spelling passes.
    if len(raw) != _TOKEN_BYTES or _encode(raw) != token:
        return None
    ids, tag = raw[:32], raw[32:]
    if not hmac.compare_digest(tag, _tag(ids, settings)):
        return None
    return uuid.UUID(bytes=ids[:16]), uuid.UUID(bytes=ids[16:])
