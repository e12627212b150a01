"""Secrets at rest (DKIM private keys, SMTP passwords, OAuth tokens, webhook
secrets): AES-256-GCM under a key derived from the master key.

A token is

    version (1 byte, 0x01) | key id (4 bytes) | nonce (12 random bytes) | ciphertext + 16-byte tag

* The key is `HKDF(master, "secrets-at-rest")`; the key id is the first four
  bytes of `HKDF(master, "secrets-at-rest-key-id")`, a separate derivation, so
  the id says which master key to use without saying anything about the key.
* The associated data is the header plus a `context` naming the secret's
  place, e.g. `"sending_domains.dkim_private_key:<row id>"`. A token copied to
  another row, column or workspace does not decrypt there, and neither does a
  token with a changed header or byte.
* Rotation: set a new `security.master_key` and move the old one to
  `security.previous_keys`. Old tokens still decrypt (the key id picks the
  key), `needs_rotation()` says which ones to re-encrypt, and `reencrypt()`
  does it. Once nothing needs rotation, the old key can be dropped.

A nonce is random for every encryption: with 96-bit nonces the chance of a
repeat stays negligible well past 2^32 encryptions under one key, far more
secrets than a Sendstream installation holds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sendstream.core.keys import decode_master_key, master_key
from sendstream.core.settings import Settings, get_settings

VERSION = 1
KEY_ID_BYTES = 4
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = 1 + KEY_ID_BYTES
# The smallest token: header, nonce and the tag of an empty plaintext.
MIN_TOKEN_BYTES = HEADER_BYTES + NONCE_BYTES + TAG_BYTES

_KEY_PURPOSE = b"secrets-at-rest"
_KEY_ID_PURPOSE = b"secrets-at-rest-key-id"


class SecretError(Exception):
    """A stored secret cannot be read. Always names the secret's context, never
    its content; it is an operator's problem (a missing key, a damaged row),
    so it surfaces as a 500, not as a client error."""

    def __init__(self, message: str, context: str) -> None:
        super().__init__(message)
        self.context = context


class SecretKeyNotFound(SecretError):
    """No configured master key (current or previous) has the token's key id."""


class SecretDecryptionFailed(SecretError):
    """A key fits but the token does not authenticate: it was changed, or it
    belongs to another context (copied from another row)."""


class MalformedSecret(SecretError):
    """Not a token this module wrote (too short, unknown version)."""


@dataclass(frozen=True)
class _Key:
    key_id: bytes
    aead: AESGCM


def _hkdf(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(master)


@lru_cache(maxsize=16)
def _key_for(master: bytes) -> _Key:
    return _Key(
        key_id=_hkdf(master, _KEY_ID_PURPOSE)[:KEY_ID_BYTES],
        aead=AESGCM(_hkdf(master, _KEY_PURPOSE)),
    )


def _current(settings: Settings) -> _Key:
    return _key_for(master_key(settings))


def _all_keys(settings: Settings) -> list[_Key]:
    """The current key first, then the previous ones in configured order."""
    keys = [_current(settings)]
    for position, secret in enumerate(settings.security.previous_keys):
        keys.append(
            _key_for(
                decode_master_key(
                    secret.get_secret_value(), f"SENDSTREAM_SECURITY__PREVIOUS_KEYS[{position}]"
                )
            )
        )
    return keys


def _aad(header: bytes, context: str) -> bytes:
    return header + context.encode()


def encrypt(plaintext: bytes, context: str, *, settings: Settings | None = None) -> bytes:
    """A token for `plaintext` under the current master key, bound to `context`
    (which must be given again, identical, to decrypt)."""
    if not context:
        raise ValueError("a secret needs a context naming its place, e.g. 'table.column:<id>'")
    key = _current(settings or get_settings())
    header = bytes([VERSION]) + key.key_id
    nonce = os.urandom(NONCE_BYTES)
    return header + nonce + key.aead.encrypt(nonce, plaintext, _aad(header, context))


def _split(token: bytes, context: str) -> tuple[bytes, bytes, bytes]:
    if len(token) < MIN_TOKEN_BYTES or token[0] != VERSION:
        raise MalformedSecret(
            f"the stored secret for {context} is not a Sendstream secret token "
            f"(version {token[0] if token else 'missing'}, {len(token)} bytes)",
            context,
        )
    return (
        token[:HEADER_BYTES],
        token[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES],
        token[HEADER_BYTES + NONCE_BYTES :],
    )


def decrypt(token: bytes, context: str, *, settings: Settings | None = None) -> bytes:
    """The plaintext of `token`, or a `SecretError` naming `context`."""
    header, nonce, sealed = _split(token, context)
    key_id = header[1:]
    fitting = [k for k in _all_keys(settings or get_settings()) if k.key_id == key_id]
    if not fitting:
        raise SecretKeyNotFound(
            f"no configured master key fits the secret for {context} (key id "
            f"{key_id.hex()}): the key that encrypted it is neither security.master_key nor "
            "in security.previous_keys. Put the old key back in previous_keys.",
            context,
        )
    for key in fitting:  # more than one only if two keys' 32-bit ids collide
        try:
            return key.aead.decrypt(nonce, sealed, _aad(header, context))
        except InvalidTag:
            continue
    raise SecretDecryptionFailed(
        f"the secret for {context} does not decrypt: it was altered, or it was copied "
        "from another place (a secret only decrypts where it was written).",
        context,
    )


def key_id(token: bytes) -> bytes:
    """The 4-byte id of the master key that encrypted `token`."""
    return token[1:HEADER_BYTES]


def needs_rotation(token: bytes, *, settings: Settings | None = None) -> bool:
    """True when `token` was not written by the current master key (or in an
    older format): re-encrypt it with `reencrypt` before dropping old keys."""
    if len(token) < MIN_TOKEN_BYTES or token[0] != VERSION:
        return True
    return key_id(token) != _current(settings or get_settings()).key_id


def reencrypt(token: bytes, context: str, *, settings: Settings | None = None) -> bytes:
    """`token` decrypted (with whichever configured key fits) and encrypted
    again under the current master key, with a fresh nonce."""
    return encrypt(decrypt(token, context, settings=settings), context, settings=settings)
