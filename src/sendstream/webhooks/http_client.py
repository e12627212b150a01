"""The HTTP/1.1 client webhook requests go out through: a keep-alive pool of
our own, hand-written request bytes and answer parsing for the plain case,
`h11` for everything else.

Why not httpx: profiling `bench/webhooks_throughput.py` put 77% of the
webhook worker's CPU in httpx/httpcore, 62% in httpcore's pool, which polls
every pooled connection's socket for every request it places. Here a request
takes the most recently used idle connection of its origin off a list.

Contracts:

- An `Origin` is scheme, the address connected to, port and TLS server name.
  The caller resolves and vets the address (SSRF checks); this module never
  resolves a name, it connects to the address it is given and checks the
  certificate against `server_name` (also sent as SNI).
- A connection goes back to the pool only when h11 has both sides idle again
  after the exchange and the answer was read to its end; anything else
  (an error, a cancellation, a `Connection: close`, an answer too long to
  drain) closes it. Idle connections expire after `keepalive_expiry`.
- At most `max_connections` connections are open (or opening) at once, at
  most `max_per_origin` to one origin; a request past either waits, in
  arrival order. An idle connection to another origin is closed to make room
  rather than waited for.
- The answer's first `keep_bytes` are kept; at most `drain_limit` body bytes
  are read so the connection can be reused, and past that the connection is
  closed instead of read. The socket is not read while more than
  `READ_BUFFER_HIGH` unparsed bytes wait, so nothing else is buffered.
- `connect_timeout` bounds TCP plus TLS, `read_timeout` each wait for bytes
  of the answer. The whole-request deadline is the caller's: cancelling a
  request closes its connection.
- The wire: the request is written by hand (`request_bytes`; names, values
  and target checked as strictly as h11 does), and an answer that is plain
  HTTP/1.1 (a final status other than 204/304, one Content-Length within
  `drain_limit`, no Transfer-Encoding, no folded header line) is parsed
  here. Anything else (1xx, chunked, a body ended by closing, oversized,
  malformed, cut short) is handed, with the bytes read so far, to an h11
  connection that is told the same request was sent: h11 reads it or says
  what is wrong. Hand-writing it halved the CPU a request cost in h11.
- A request that fails on a reused connection before any byte of the answer
  came (the server closed the idle connection as the request went out, which
  servers with short keep-alive timeouts make routine) is sent once more on a
  new connection. Webhook receivers deduplicate by `webhook-id`.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import h11

# Unparsed bytes held per connection before the socket stops being read.
READ_BUFFER_HIGH = 65_536
# A head longer than this is left to h11 (whose own limit is 16 KiB).
HEAD_LIMIT = 16_384
# RFC 9110 token (a header name), field value, request target (as h11).
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?")
_TARGET = re.compile(rb"[\x21-\x7e]+")


class HttpError(Exception):
    """No usable answer; the message says why."""


class ConnectError(HttpError):
    """The connection (TCP or TLS, certificate check included) failed."""


class ConnectTimeout(HttpError):
    pass


class ReadTimeout(HttpError):
    pass


class ReadError(HttpError):
    """The connection failed or was closed during the exchange."""


class RemoteProtocolError(HttpError):
    """The answer was not valid HTTP/1.1, or ended before it was complete."""


class LocalProtocolError(HttpError):
    """The request could not be written as HTTP/1.1 (a bad header)."""


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    address: str
    port: int
    # TLS only: the name sent as SNI and checked against the certificate.
    server_name: str | None = None


@dataclass(frozen=True, slots=True)
class Response:
    status_code: int
    # Names lower-case, as h11 gives them.
    headers: list[tuple[bytes, bytes]]
    # The body's first `keep_bytes`.
    body: bytes

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode("ascii")
        for key, value in self.headers:
            if key == wanted:
                return value.decode("latin-1")
        return None


def request_bytes(target: bytes, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> bytes:
    """A POST as HTTP/1.1 bytes, head and body; `headers` must hold Host and
    Content-Length. Raises `LocalProtocolError` where h11 would."""
    if not _TARGET.fullmatch(target):
        raise LocalProtocolError("Illegal target characters")
    lines = [b"POST ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        if not _TOKEN.fullmatch(name):
            raise LocalProtocolError("Illegal header name " + repr(name))
        if not _VALUE.fullmatch(value):
            raise LocalProtocolError("Illegal header value " + repr(value))
        lines += (name, b": ", value, b"\r\n")
    lines += (b"\r\n", body)
    return b"".join(lines)


def _plain_head(head: bytes) -> tuple[int, list[tuple[bytes, bytes]], int, bool] | None:
    """Status, headers (names lower-case), Content-Length and whether the
    server closes, of an answer head this module reads itself; None: h11's."""
    if head.count(b"\n") != head.count(b"\r\n"):
        return None  # a bare LF: h11 knows what to make of it
    lines = head.split(b"\r\n")
    status_line = lines[0]
    if (
        not status_line.startswith(b"HTTP/1.1 ")
        or not status_line[9:12].isdigit()
        or status_line[12:13] not in (b"", b" ")
    ):
        return None
    status = int(status_line[9:12])
    if status < 200 or status in (204, 304):
        return None
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = None
    close = False
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        # A folded line starts with white space: not a token.
        if not colon or not _TOKEN.fullmatch(name) or b"\n" in value:
            return None
        name = name.lower()
        value = value.strip(b" \t")
        if name == b"content-length":
            if length is not None or not value.isdigit():
                return None
            length = int(value)
        elif name == b"transfer-encoding":
            return None
        elif name == b"connection" and b"close" in value.lower():
            close = True
        headers.append((name, value))
    if length is None:
        return None
    return status, headers, length, close


class _Connection(asyncio.Protocol):
    def __init__(self, origin: Origin, loop: asyncio.AbstractEventLoop) -> None:
        self.origin = origin
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        # Made for an answer this module does not read itself (see `exchange`).
        self.h11: h11.Connection | None = None
        self.exchanges = 0
        self.idle_since = 0.0
        # Bytes came since the current exchange began (see `ConnectionPool.post`).
        self.answered = False
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.answered = True
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > READ_BUFFER_HIGH and not self._paused and self.transport:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def reusable(self) -> bool:
        """Idle and untouched: bytes or an EOF on an idle connection mean the
        server is closing it (or is broken)."""
        return (
            not self._eof
            and not self._chunks
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def close(self) -> None:
        # abort, not close: a server that stopped reading must not keep the
        # socket open on unsent bytes.
        if self.transport is not None:
            self.transport.abort()

    async def _receive(self, read_timeout: float) -> bytes:
        """The bytes received since last asked, b"" at the end of the stream."""
        while not self._chunks:
            if self._eof:
                if self._error is not None:
                    raise ReadError(_describe(self._error))
                return b""
            waiter = self.loop.create_future()
            self._waiter = waiter
            expiry = self.loop.call_later(read_timeout, _expire, waiter, read_timeout)
            try:
                await waiter
            finally:
                expiry.cancel()
                self._waiter = None
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def _next_event(
        self, conn: h11.Connection, read_timeout: float
    ) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if self._eof and not self.answered:
                    # h11 words it from the server's side of the state machine.
                    raise RemoteProtocolError(
                        "the server closed the connection without answering"
                    ) from None
                raise RemoteProtocolError(str(exc) or "invalid HTTP/1.1 answer") from None
            if event is not h11.NEED_DATA:
                return event
            conn.receive_data(await self._receive(read_timeout))

    async def exchange(
        self,
        request: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        *,
        read_timeout: float,
        keep_bytes: int,
        drain_limit: int,
    ) -> tuple[Response, bool]:
        """One POST (`request`: `request_bytes` of the rest): the answer, and
        whether the connection can be reused."""
        if self.transport is None or not self.reusable:
            raise ReadError("the connection was closed before the request was sent")
        self.answered = False
        # One write: the request head and body leave in as few packets as fit.
        self.transport.write(request)

        received = bytearray()
        # Until the head's end, as h11 finds it (a bare LF may end a line).
        while b"\n\r\n" not in received and b"\n\n" not in received:
            data = await self._receive(read_timeout) if len(received) <= HEAD_LIMIT else b""
            if not data:
                break
            received += data
        end = received.find(b"\r\n\r\n")
        plain = _plain_head(bytes(received[:end])) if end >= 0 else None
        if plain is None or plain[2] > drain_limit:
            return await self._exchange_h11(
                received, target, headers, body, read_timeout, keep_bytes, drain_limit
            )
        status, answer_headers, length, close = plain
        start = end + 4
        while len(received) - start < length:
            data = await self._receive(read_timeout)
            if not data:
                # Cut short: h11 says so in its words.
                return await self._exchange_h11(
                    received, target, headers, body, read_timeout, keep_bytes, drain_limit
                )
            received += data
        self.exchanges += 1
        response = Response(
            status, answer_headers, bytes(received[start : start + min(length, keep_bytes)])
        )
        # Bytes past the answer's end would be read as the next answer.
        reusable = not close and len(received) == start + length and self.reusable
        return response, reusable

    async def _exchange_h11(
        self,
        received: bytearray,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        read_timeout: float,
        keep_bytes: int,
        drain_limit: int,
    ) -> tuple[Response, bool]:
        """The rest of an exchange whose answer h11 reads: told the request
        went out, given what came so far."""
        conn = self.h11 = h11.Connection(h11.CLIENT)
        try:
            conn.send(h11.Request(method=b"POST", target=target, headers=headers))
            conn.send(h11.Data(data=body))
            conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:
            raise LocalProtocolError(str(exc)) from None
        if received:
            conn.receive_data(bytes(received))

        while True:
            event = await self._next_event(conn, read_timeout)
            if isinstance(event, h11.Response):
                break
            if isinstance(event, h11.ConnectionClosed):
                raise RemoteProtocolError("the server closed the connection without answering")
            # InformationalResponse (100 Continue, 103): the answer follows.

        declared = _content_length(event.headers)
        # Known in advance not to fit: keep the first bytes, read no more.
        too_long = declared is not None and declared > drain_limit
        kept = bytearray()
        seen = 0
        complete = False
        while True:
            part = await self._next_event(conn, read_timeout)
            if isinstance(part, h11.Data):
                if len(kept) < keep_bytes:
                    kept += part.data[: keep_bytes - len(kept)]
                seen += len(part.data)
                if seen > drain_limit or (too_long and len(kept) >= keep_bytes):
                    break
            elif isinstance(part, h11.EndOfMessage):
                complete = True
                break
            else:
                raise RemoteProtocolError(f"unexpected {type(part).__name__} in the answer")
        response = Response(event.status_code, list(event.headers), bytes(kept))
        self.exchanges += 1
        reusable = False
        if complete and conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            # Bytes past the answer's end would be read as the next answer.
            reusable = self.reusable and not conn.trailing_data[0]
        self.h11 = None
        return response, reusable


def _expire(waiter: asyncio.Future[None], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(ReadTimeout(f"no bytes of the answer for {timeout:g} s"))


def _content_length(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    for key, value in headers:
        if key == b"content-length":
            # h11 has already refused a value that is not digits.
            return int(value)
    return None


def _describe(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


@dataclass(slots=True)
class _Waiter:
    origin: Origin
    # Set to a connection handed over, or to None: a slot is reserved, open one.
    future: asyncio.Future[_Connection | None]


class ConnectionPool:
    def __init__(
        self,
        *,
        max_connections: int = 100,
        max_per_origin: int | None = None,
        keepalive_expiry: float = 30.0,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        keep_bytes: int = 1024,
        drain_limit: int = 65_536,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.max_per_origin = max_per_origin or max_connections
        self.keepalive_expiry = keepalive_expiry
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keep_bytes = keep_bytes
        self.drain_limit = drain_limit
        self._ssl_context = ssl_context
        # Most recently used last.
        self._idle: dict[Origin, list[_Connection]] = {}
        # Connections open or being opened, per origin and in all.
        self._open: dict[Origin, int] = {}
        self._total = 0
        self._waiters: deque[_Waiter] = deque()
        self._swept = time.monotonic()
        self._closed = False

    @property
    def connections(self) -> int:
        """Connections open or being opened."""
        return self._total

    def idle(self, origin: Origin) -> int:
        return len(self._idle.get(origin, ()))

    async def post(
        self, origin: Origin, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> Response:
        """POST `body` to `target` (the path and query) at `origin`; the
        answer whatever its status (redirects are not followed), or an
        `HttpError`. `headers` must hold Host; Content-Length is added."""
        wire_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        wire_headers.append((b"content-length", str(len(body)).encode("ascii")))
        wire_target = target.encode("ascii")
        request = request_bytes(wire_target, wire_headers, body)
        for retried in (False, True):
            conn = await self._acquire(origin)
            reused = conn.exchanges > 0
            try:
                response, reusable = await conn.exchange(
                    request,
                    wire_target,
                    wire_headers,
                    body,
                    read_timeout=self.read_timeout,
                    keep_bytes=self.keep_bytes,
                    drain_limit=self.drain_limit,
                )
            except (ReadError, RemoteProtocolError):
                self._discard(conn)
                if reused and not retried and not conn.answered:
                    # The idle ones left were idle longer still (LIFO).
                    self._drop_idle(origin)
                    continue
                raise
            except BaseException:
                self._discard(conn)
                raise
            if reusable:
                self._release(conn)
            else:
                self._discard(conn)
            return response
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        self._closed = True
        for connections in list(self._idle.values()):
            for conn in connections:
                self._forget(conn)
                conn.close()
        self._idle.clear()

    # The pool's bookkeeping: every open connection is counted in `_open`
    # and `_total` from the moment a slot is reserved for it until
    # `_forget`; an idle one is also in `_idle`.

    async def _acquire(self, origin: Origin) -> _Connection:
        conn = self._pop_idle(origin)
        if conn is not None:
            return conn
        if not self._reserve(origin):
            waiter = _Waiter(origin, asyncio.get_running_loop().create_future())
            self._waiters.append(waiter)
            try:
                given = await waiter.future
            except BaseException:
                if waiter.future.cancelled():
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
                else:
                    # Served just as it was cancelled: pass it on.
                    handed = waiter.future.result()
                    if handed is not None:
                        self._release(handed)
                    else:
                        self._unreserve(origin)
                raise
            if given is not None:
                return given
        try:
            return await self._connect(origin)
        except BaseException:
            self._unreserve(origin)
            raise

    async def _connect(self, origin: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = _Connection(origin, loop)
        context = self._tls() if origin.scheme == "https" else None
        where = f"{origin.address}:{origin.port}"
        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(
                    lambda: conn,
                    origin.address,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.server_name if context else None,
                )
        except TimeoutError:
            raise ConnectTimeout(
                f"no connection to {where} within {self.connect_timeout:g} s"
            ) from None
        except OSError as exc:  # ssl.SSLError (a certificate refused) included
            raise ConnectError(f"{where}: {_describe(exc)}") from None
        return conn

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            # Certificates checked against the system's CAs and the name.
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _pop_idle(self, origin: Origin) -> _Connection | None:
        connections = self._idle.get(origin)
        if not connections:
            return None
        fresh_after = time.monotonic() - self.keepalive_expiry
        while connections:
            conn = connections.pop()
            if conn.reusable and conn.idle_since > fresh_after:
                return conn
            self._forget(conn)
            conn.close()
        return None

    def _drop_idle(self, origin: Origin) -> None:
        for conn in self._idle.pop(origin, []):
            self._forget(conn)
            conn.close()
        self._kick()

    def _reserve(self, origin: Origin) -> bool:
        if self._open.get(origin, 0) >= self.max_per_origin:
            return False
        if self._total >= self.max_connections and not self._evict_idle():
            return False
        self._open[origin] = self._open.get(origin, 0) + 1
        self._total += 1
        return True

    def _unreserve(self, origin: Origin) -> None:
        self._open[origin] -= 1
        if not self._open[origin]:
            del self._open[origin]
        self._total -= 1
        self._kick()

    def _evict_idle(self) -> bool:
        """Close the longest idle connection of any origin, to make room."""
        oldest: _Connection | None = None
        for connections in self._idle.values():
            if connections and (oldest is None or connections[0].idle_since < oldest.idle_since):
                oldest = connections[0]
        if oldest is None:
            return False
        self._idle[oldest.origin].pop(0)
        self._forget(oldest)
        oldest.close()
        return True

    def _release(self, conn: _Connection) -> None:
        if self._closed:
            self._discard(conn)
            return
        now = time.monotonic()
        conn.idle_since = now
        self._idle.setdefault(conn.origin, []).append(conn)
        if now - self._swept > self.keepalive_expiry:
            self._sweep(now)
        self._kick()

    def _sweep(self, now: float) -> None:
        self._swept = now
        fresh_after = now - self.keepalive_expiry
        for connections in list(self._idle.values()):
            while connections and (
                connections[0].idle_since <= fresh_after or not connections[0].reusable
            ):
                conn = connections.pop(0)
                self._forget(conn)
                conn.close()

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        self._forget(conn)
        self._kick()

    def _forget(self, conn: _Connection) -> None:
        origin = conn.origin
        self._open[origin] -= 1
        if not self._open[origin]:
            del self._open[origin]
            self._idle.pop(origin, None)
        self._total -= 1

    def _kick(self) -> None:
        """Serve the waiters that can go now, in arrival order."""
        if not self._waiters:
            return
        still: deque[_Waiter] = deque()
        while self._waiters:
            waiter = self._waiters.popleft()
            if waiter.future.done():
                continue
            conn = self._pop_idle(waiter.origin)
            if conn is not None:
                waiter.future.set_result(conn)
            elif self._reserve(waiter.origin):
                waiter.future.set_result(None)
            else:
                still.append(waiter)
        self._waiters = still
