"""One webhook HTTP request, made safely: the `WebhookSender` owns the
process's one `httpx.AsyncClient` (HTTP/1.1, keep-alive pool).

- SSRF: the URL is checked and its host resolved (`ssrf.check_url`) before
  the request, and the connection goes to the vetted address itself (the URL's
  host replaced by the address, `Host` and TLS SNI/certificate checks kept on
  the name), so a DNS answer that changes between check and connect cannot
  reach an internal address. Answers are reused for `DNS_CACHE_SECONDS`.
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

import httpx

from sendstream.core.errors import SendstreamError
from sendstream.core.settings import Settings
from sendstream.webhooks import ssrf

RESPONSE_KEEP_BYTES = 1024
# Bytes of a response read to keep its connection reusable; more is not read.
DRAIN_LIMIT = 65_536
DNS_CACHE_SECONDS = 30.0
USER_AGENT = "Sendstream-Webhooks/1.0"


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


@dataclass(slots=True)
class _Resolved:
    addresses: list[ssrf.IPAddress]
    until: float


class WebhookSender:
    def __init__(self, settings: Settings) -> None:
        webhooks = settings.webhooks
        self.read_timeout = webhooks.read_timeout
        self.connect_timeout = webhooks.connect_timeout
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=webhooks.connect_timeout,
                read=webhooks.read_timeout,
                write=webhooks.read_timeout,
                pool=webhooks.read_timeout,
            ),
            limits=httpx.Limits(
                max_connections=webhooks.max_connections,
                max_keepalive_connections=webhooks.max_connections,
                keepalive_expiry=30.0,
            ),
            follow_redirects=False,
            trust_env=False,
            http1=True,
            http2=False,
        )
        self._dns: dict[tuple[str, bool], _Resolved] = {}

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _addresses(self, url: str, allow_private: bool) -> list[ssrf.IPAddress]:
        key = (url, allow_private)
        now = time.monotonic()
        cached = self._dns.get(key)
        if cached is not None and cached.until > now:
            return cached.addresses
        addresses = await ssrf.check_url(url, allow_private)
        if len(self._dns) > 10_000:
            self._dns.clear()
        self._dns[key] = _Resolved(addresses, now + DNS_CACHE_SECONDS)
        return addresses

    async def send(
        self, url: str, headers: dict[str, str], body: bytes, *, allow_private: bool
    ) -> AttemptResult:
        started = time.perf_counter()
        try:
            addresses = await self._addresses(url, allow_private)
        except SendstreamError as exc:
            refused = exc.code != "webhook_host_unresolvable"
            return AttemptResult(
                None, None, _ms(started), f"{exc.code}: {exc.message}", None, refused
            )
        target = httpx.URL(url)
        address = addresses[0]
        extensions: dict[str, str] = {}
        if target.scheme == "https":
            extensions["sni_hostname"] = target.host
        host_header = target.netloc.decode("ascii")
        request = self._client.build_request(
            "POST",
            target.copy_with(host=str(address)),
            headers={**headers, "host": host_header},
            content=body,
            extensions=extensions,
        )
        deadline = self.connect_timeout + 2 * self.read_timeout
        try:
            async with asyncio.timeout(deadline):
                response = await self._client.send(request, stream=True)
                try:
                    kept = await _read_some(response)
                finally:
                    await response.aclose()
        except TimeoutError:
            return AttemptResult(
                None, None, _ms(started), f"timeout: no complete answer within {deadline:g} s"
            )
        except httpx.TimeoutException as exc:
            return AttemptResult(None, None, _ms(started), f"timeout: {type(exc).__name__}")
        except httpx.HTTPError as exc:
            return AttemptResult(None, None, _ms(started), f"connection: {_describe(exc)}")
        except OSError as exc:
            return AttemptResult(None, None, _ms(started), f"connection: {_describe(exc)}")
        return AttemptResult(
            response.status_code,
            kept.decode("utf-8", "replace"),
            _ms(started),
            None,
            retry_after_seconds(response.headers.get("retry-after")),
        )


async def _read_some(response: httpx.Response) -> bytes:
    kept = bytearray()
    seen = 0
    async for chunk in response.aiter_raw():
        if len(kept) < RESPONSE_KEEP_BYTES:
            kept += chunk[: RESPONSE_KEEP_BYTES - len(kept)]
        seen += len(chunk)
        if seen > DRAIN_LIMIT:
            # Closing an unfinished response closes its connection: the rest
            # is never read.
            break
    return bytes(kept)


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
