"""The master key and the keys derived from it.

The master key (32 bytes, base64 in `security.master_key`) protects secrets at
rest and keys the hashes that stand in for erased addresses. In production it
must be set. Elsewhere, when unset, one is generated on first use and kept in
`<embedded.data_dir>/master.key` (mode 0600), so a newcomer's `sendstream up`
works and its hashes stay stable across restarts.

Each use gets its own subkey through HKDF-SHA256 with a purpose label, so a
key for one purpose never doubles as another's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from functools import lru_cache
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sendstream.core.settings import Settings, get_settings

MASTER_KEY_BYTES = 32


class MasterKeyMissing(RuntimeError):
    pass


def decode_master_key(value: str, where: str) -> bytes:
    """A master key from its base64 text (`where` names its source in the error)."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != MASTER_KEY_BYTES:
        raise MasterKeyMissing(
            f"{where}: the master key must be {MASTER_KEY_BYTES} random bytes in base64 "
            '(generate one with `python -c "import os,base64;'
            'print(base64.b64encode(os.urandom(32)).decode())"`).'
        )
    return raw


@lru_cache(maxsize=8)
def _configured(value: str) -> bytes:
    return decode_master_key(value, "SENDSTREAM_SECURITY__MASTER_KEY")


# Per process and path: the file is written once and never changes, and a
# worker asks for the key for every message it signs a link or return path in.
@lru_cache(maxsize=8)
def _from_file(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES)).decode() + "\n")
    return decode_master_key(path.read_text(), str(path))


def master_key(settings: Settings | None = None) -> bytes:
    settings = settings or get_settings()
    configured = settings.security.master_key
    if configured is not None:
        return _configured(configured.get_secret_value())
    if settings.environment == "production":
        raise MasterKeyMissing(
            "SENDSTREAM_SECURITY__MASTER_KEY is not set; production needs a master key "
            "(32 random bytes, base64)."
        )
    return _from_file(settings.embedded.data_dir / "master.key")


@lru_cache(maxsize=32)
def _derive(master: bytes, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
        master
    )


def subkey(purpose: str, settings: Settings | None = None) -> bytes:
    """A 32-byte key for one purpose (`"address-hash"`, `"confirmation-link"` ...)."""
    return _derive(master_key(settings), purpose)


def keyed_hash(purpose: str, value: str, settings: Settings | None = None) -> str:
    """HMAC-SHA256 of `value` under the purpose's subkey, as 64 hex characters."""
    return hmac.new(subkey(purpose, settings), value.encode(), hashlib.sha256).hexdigest()
