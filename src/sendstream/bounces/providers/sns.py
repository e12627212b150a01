"""Amazon SNS HTTP(S) deliveries: signature verification, the signing
certificate's fetch (allow-listed hosts only, cached) and the visit of a
SubscribeURL.

The string to sign (AWS "Verifying the signatures of Amazon SNS messages")
is each signed field's name and value, each followed by a newline, in byte
order of the names: Notification signs Message, MessageId, Subject (only
when present), Timestamp, TopicArn, Type; SubscriptionConfirmation and
UnsubscribeConfirmation sign Message, MessageId, SubscribeURL, Timestamp,
Token, TopicArn, Type. SignatureVersion 1 is SHA1withRSA, 2 SHA256withRSA
(PKCS#1 v1.5), the signature base64.

SigningCertURL and SubscribeURL are fetched only from https URLs whose host
fully matches one of `provider_webhooks.sns_hosts` (by default
`sns.<region>.amazonaws.com[.cn]`), never following redirects: a forged
message cannot make Sendstream fetch from anywhere else, and a certificate
from an AWS host over TLS is one AWS issued.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sendstream.core.settings import Settings

TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
# A certificate is a few KB; anything much bigger is not one.
MAX_CERT_BYTES = 65_536
MAX_CACHED_CERTS = 64


class UrlNotAllowed(Exception):
    """A SigningCertURL or SubscribeURL outside the allow-list."""


class FetchFailed(Exception):
    """The allowed URL did not answer usably (network, status, not a certificate)."""


def string_to_sign(doc: dict[str, Any]) -> bytes | None:
    """The bytes SNS signed, or None when a signed field is missing or not text."""
    fields = _NOTIFICATION_FIELDS if doc.get("Type") == "Notification" else _CONFIRMATION_FIELDS
    out = []
    for name in fields:
        value = doc.get(name)
        if name == "Subject" and value is None:
            continue
        if not isinstance(value, str):
            return None
        out.append(f"{name}\n{value}\n")
    return "".join(out).encode()


def check_url(url: Any, settings: Settings) -> str:
    """`url` when Sendstream may fetch it, else `UrlNotAllowed` saying why."""
    config = settings.provider_webhooks
    if not isinstance(url, str):
        raise UrlNotAllowed("the URL is missing")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise UrlNotAllowed("the URL does not parse") from None
    allowed_schemes = ("https", "http") if config.sns_allow_http else ("https",)
    if parts.scheme not in allowed_schemes:
        raise UrlNotAllowed(f"scheme {parts.scheme!r} is not https")
    if parts.username or parts.password:
        raise UrlNotAllowed("the URL carries credentials")
    if not any(re.fullmatch(pattern, host) for pattern in config.sns_hosts):
        raise UrlNotAllowed(f"host {host!r} is not an SNS host (provider_webhooks.sns_hosts)")
    return url


class CertificateCache:
    """Public keys of fetched signing certificates by URL, for
    `sns_cert_cache_seconds`; one fetch per URL at a time."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[float, rsa.RSAPublicKey]] = {}
        self._lock = asyncio.Lock()

    def clear(self) -> None:
        self._keys.clear()

    async def key(self, url: str, settings: Settings) -> rsa.RSAPublicKey:
        now = time.monotonic()
        cached = self._keys.get(url)
        if cached and cached[0] > now:
            return cached[1]
        async with self._lock:
            cached = self._keys.get(url)
            if cached and cached[0] > time.monotonic():
                return cached[1]
            key = await _fetch_key(url, settings)
            if len(self._keys) >= MAX_CACHED_CERTS:
                self._keys.clear()
            ttl = settings.provider_webhooks.sns_cert_cache_seconds
            self._keys[url] = (time.monotonic() + ttl, key)
            return key


certificates = CertificateCache()


async def _get(url: str, settings: Settings) -> httpx.Response:
    timeout = settings.provider_webhooks.sns_fetch_timeout
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        raise FetchFailed(f"{type(exc).__name__}: {exc}"[:300]) from None
    if response.status_code != 200:
        raise FetchFailed(f"answered {response.status_code}")
    return response


async def _fetch_key(url: str, settings: Settings) -> rsa.RSAPublicKey:
    response = await _get(url, settings)
    if len(response.content) > MAX_CERT_BYTES:
        raise FetchFailed("the answer is too large for a certificate")
    try:
        certificate = x509.load_pem_x509_certificate(response.content)
    except ValueError:
        raise FetchFailed("the answer is not a PEM certificate") from None
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise FetchFailed("the certificate's key is not RSA")
    return key


def signature_valid(doc: dict[str, Any], key: rsa.RSAPublicKey) -> bool:
    version = doc.get("SignatureVersion")
    algorithm: hashes.HashAlgorithm
    if version == "1":
        algorithm = hashes.SHA1()  # noqa: S303 - SNS SignatureVersion 1 is SHA1withRSA
    elif version == "2":
        algorithm = hashes.SHA256()
    else:
        return False
    signed = string_to_sign(doc)
    signature = doc.get("Signature")
    if signed is None or not isinstance(signature, str):
        return False
    try:
        key.verify(
            base64.b64decode(signature, validate=True), signed, padding.PKCS1v15(), algorithm
        )
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


async def visit(url: str, settings: Settings) -> None:
    """GET a SubscribeURL (already checked by `check_url`): this is what
    confirms the subscription at SNS."""
    await _get(url, settings)
