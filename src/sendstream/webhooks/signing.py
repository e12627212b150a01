"""Standard Webhooks signatures (https://www.standardwebhooks.com).

The signed content is `f"{msg_id}.{timestamp}.{body}"` (UTF-8), where
`msg_id` is the `webhook-id` header, `timestamp` the `webhook-timestamp`
header (integer Unix seconds) and `body` the exact request body. The
`webhook-signature` header holds one space-separated `version,base64` entry
per key:

- `v1`: HMAC-SHA256 under a symmetric secret, shown to users as
  `whsec_<base64 of the secret bytes>` (32 random bytes here; the spec
  allows 24 to 64);
- `v1a`: Ed25519 under a private key, whose public key users get as
  `whpk_<base64 of the 32 raw public key bytes>`.

During a secret rotation both the old and the new secret sign, so a
receiver that still holds the old one keeps verifying.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as random_bytes
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
PUBLIC_KEY_PREFIX = "whpk_"
SECRET_BYTES = 32
# The spec's bounds on a symmetric secret's length, in bytes.
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64


def generate_secret() -> bytes:
    return random_bytes.token_bytes(SECRET_BYTES)


def format_secret(secret: bytes) -> str:
    """The `whsec_...` form users paste into their verifier."""
    return SECRET_PREFIX + base64.b64encode(secret).decode()


def parse_secret(value: str) -> bytes:
    """The secret bytes of a `whsec_...` value; ValueError if it is not one."""
    if not value.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    raw = base64.b64decode(value[len(SECRET_PREFIX) :], validate=True)
    if not MIN_SECRET_BYTES <= len(raw) <= MAX_SECRET_BYTES:
        raise ValueError(
            f"a webhook secret holds {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, not {len(raw)}"
        )
    return raw


def generate_ed25519_key() -> bytes:
    """A new Ed25519 private key as its 32 raw bytes."""
    return Ed25519PrivateKey.generate().private_bytes_raw()


def load_ed25519_key(raw: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key(private: Ed25519PrivateKey) -> str:
    """The `whpk_...` form of the key's public half, for receivers."""
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode()


def signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def sign(
    secrets: Sequence[bytes],
    msg_id: str,
    timestamp: int,
    body: bytes,
    ed25519_keys: Sequence[Ed25519PrivateKey] = (),
) -> str:
    """The `webhook-signature` header value: `v1,<b64>` per HMAC secret,
    then `v1a,<b64>` per Ed25519 key, space-separated, in the order given
    (put the current secret first)."""
    if not secrets and not ed25519_keys:
        raise ValueError("nothing to sign with: give at least one secret or key")
    if not msg_id or any(c in msg_id for c in " \r\n"):
        # It travels as the `webhook-id` header, which holds no spaces or breaks.
        raise ValueError(f"msg_id must be a non-empty token, got {msg_id!r}")
    content = signed_content(msg_id, timestamp, body)
    parts = [
        "v1," + base64.b64encode(hmac.new(secret, content, hashlib.sha256).digest()).decode()
        for secret in secrets
    ]
    parts.extend("v1a," + base64.b64encode(key.sign(content)).decode() for key in ed25519_keys)
    return " ".join(parts)
