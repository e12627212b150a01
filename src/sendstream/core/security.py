"""Security primitives: argon2id password hashing and API key generation,
parsing and hashing. Pure functions; no database, no domain imports.

API keys look like `ss_<prefix>_<secret>`: the prefix (12 hex characters) is
public, stored in clear and used to find the key's row; the secret (32 random
bytes, base64url) is shown once and only its hash is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

API_KEY_SCHEME = "ss"
_PREFIX_BYTES = 6
_SECRET_BYTES = 32
# `ss_` + 12 lowercase hex characters, then `_`, then 43 base64url characters.
# The secret alphabet includes `_` and `-`, so the key is split at the first
# two underscores only.
_KEY_RE = re.compile(r"^ss_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")

# argon2-cffi's defaults are argon2id with the RFC 9106 "low memory" profile.
_password_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _password_hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _password_hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str) -> bool:
    return _password_hasher.check_needs_rehash(password_hash)


@dataclass(frozen=True)
class GeneratedKey:
    prefix: str
    """Public part, stored in clear (`ss_0123456789ab`)."""
    key: str
    """The full key; shown once, never stored."""
    secret_hash: str
    """What the database keeps: hex SHA-256 of the full key."""


@dataclass(frozen=True)
class ParsedKey:
    prefix: str
    key: str


def generate_api_key() -> GeneratedKey:
    prefix = f"{API_KEY_SCHEME}_{secrets.token_hex(_PREFIX_BYTES)}"
    key = f"{prefix}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    return GeneratedKey(prefix=prefix, key=key, secret_hash=hash_api_key(key))


def parse_api_key(value: str) -> ParsedKey | None:
    """The key's lookup prefix, or None when `value` cannot be one of our keys."""
    match = _KEY_RE.match(value)
    if match is None:
        return None
    return ParsedKey(prefix=f"{API_KEY_SCHEME}_{match.group(1)}", key=value)


def hash_api_key(key: str) -> str:
    # A plain SHA-256 is the right tool here, unlike for passwords: the secret is
    # 256 random bits, so there is no dictionary to try and slow hashing (argon2)
    # would only cost CPU on every request without adding any protection. The
    # whole key is hashed so the hash also binds the public prefix.
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_matches(key: str, secret_hash: str) -> bool:
    # Constant-time, so response timing does not reveal how much of a guessed
    # hash matched.
    return hmac.compare_digest(hash_api_key(key), secret_hash)
