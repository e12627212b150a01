"""One webhook HTTP request, made safely: the `WebhookSender` owns the
process's one connection pool (`http_client.ConnectionPool`: HTTP/1.1 over
h11, keep-alive).

- SSRF: the URL is checked and its host resolved (`ssrf.check_url`) before
  the request, and the connection goes to the vetted address itself (`Host`
  and TLS SNI/certificate checks kept on the name), so a DNS answer that
  changes between check and connect cannot reach an internal address.
  Answers are reused for `DNS_CACHE_SECONDS`.
- Redirects are not followed (a 3xx is recorded as the answer).
- The response body is streamed: its first KiB is kept, at most
  `DRAIN_LIMIT` bytes are read so the connection can be reused, and past
  that the connection is closed rather than reading (or buffering) more.
  `Accept-Encoding: identity` so no compressed bomb is inflated.
- Timeouts: connect, each read, and a whole-request deadline, so a receiver
  that trickles bytes cannot hold a request forever.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import quote

from sendstream.core.errors import SendstreamError
from sendstream.core.settings import Settings
from sendstream.webhooks import ssrf
from sendstream.webhooks.http_client import (
    ConnectionPool,
    ConnectTimeout,
    HttpError,
    Origin,
    ReadTimeout,
)

RESPONSE_KEEP_BYTES = 1024
# Bytes of a response read to keep its connection reusable; more is not read.
DRAIN_LIMIT = 65_536
DNS_CACHE_SECONDS = 30.0
# Idle connections are closed after this long.
KEEPALIVE_SECONDS = 30.0
USER_AGENT = "Sendstream-Webhooks/1.0"
# Framing and routing are the client's: a custom header must not override them.
_OURS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
# Characters left as they are when a non-ASCII path is percent-encoded.
_URL_SAFE = "/%:@!$&'()*+,;=?-._~"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    status_code: int | None
    response_body: str | None
    latency_ms: float
    # Why no usable answer came (timeout, connection, refused address).
    error: str | None = None
    # Seconds a 429/503 asked to wait (Retry-After), if it said.
    retry_after: float | None = None
    # The request was refused before it was made and trying again will not
    # help (the URL is not allowed any more).
    refused: bool = False


@dataclass(frozen=True, slots=True)
class _Resolved:
    """A URL checked and taken apart: where to connect, what to ask for."""

    origin: Origin
    target: str
    host_header: str
    until: float


class WebhookSender:
    def __init__(self, settings: Settings) -> None:
        webhooks = settings.webhooks
        self.read_timeout = webhooks.read_timeout
        self.connect_timeout = webhooks.connect_timeout
        self._pool = ConnectionPool(
            max_connections=webhooks.max_connections,
            keepalive_expiry=KEEPALIVE_SECONDS,
            connect_timeout=webhooks.connect_timeout,
            read_timeout=webhooks.read_timeout,
            keep_bytes=RESPONSE_KEEP_BYTES,
            drain_limit=DRAIN_LIMIT,
        )
        self._dns: dict[tuple[str, bool], _Resolved] = {}

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def _resolve(self, url: str, allow_private: bool) -> _Resolved:
        key = (url, allow_private)
        now = time.monotonic()
        cached = self._dns.get(key)
        if cached is not None and cached.until > now:
            return cached
        addresses = await ssrf.check_url(url, allow_private)
        parts, host = ssrf.parse_url(url)
        scheme = parts.scheme.lower()
        port = parts.port or (443 if scheme == "https" else 80)
        origin = Origin(scheme, str(addresses[0]), port, host if scheme == "https" else None)
        named = f"[{host}]" if ":" in host else host
        host_header = named if parts.port is None else f"{named}:{parts.port}"
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        if not target.isascii():
            target = quote(target, safe=_URL_SAFE)
        if len(self._dns) > 10_000:
            self._dns.clear()
        resolved = _Resolved(origin, target, host_header, now + DNS_CACHE_SECONDS)
        self._dns[key] = resolved
        return resolved

    async def send(
        self, url: str, headers: dict[str, str], body: bytes, *, allow_private: bool
    ) -> AttemptResult:
        started = time.perf_counter()
        try:
            resolved = await self._resolve(url, allow_private)
        except SendstreamError as exc:
            refused = exc.code != "webhook_host_unresolvable"
            return AttemptResult(
                None, None, _ms(started), f"{exc.code}: {exc.message}", None, refused
            )
        wire = [("host", resolved.host_header)]
        wire += [(k, v) for k, v in headers.items() if k.lower() not in _OURS]
        deadline = self.connect_timeout + 2 * self.read_timeout
        try:
            async with asyncio.timeout(deadline):
                response = await self._pool.post(resolved.origin, resolved.target, wire, body)
        except TimeoutError:
            return AttemptResult(
                None, None, _ms(started), f"timeout: no complete answer within {deadline:g} s"
            )
        except (ConnectTimeout, ReadTimeout) as exc:
            return AttemptResult(None, None, _ms(started), f"timeout: {_describe(exc)}")
        except (HttpError, OSError) as exc:
            return AttemptResult(None, None, _ms(started), f"connection: {_describe(exc)}")
        return AttemptResult(
            response.status_code,
            response.body.decode("utf-8", "replace"),
            _ms(started),
            None,
            retry_after_seconds(response.header("retry-after")),
        )


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: delay-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _describe(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]
