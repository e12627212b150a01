"""A webhook receiver on loopback: a small HTTP/1.1 server (raw asyncio, so
it can misbehave in ways a framework would not let it) that records every
request and answers by path:

    /ok              200 "ok"
    /slow            200 after `slow_seconds`
    /hang            reads the request, never answers
    /fail            500 forever
    /close           closes the connection without answering
    /huge            200 with a 50 MB body
    /redirect        302 to /ok
    /gone            410
    /missing         404
    /limited         429 with `Retry-After: <retry_after>` for the first
                     `limited_times` requests, then 200
    /flaky           500 for the first `flaky_times` requests, then 200

Keep-alive is honoured, so connection reuse is exercised too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

HUGE_BYTES = 50 * 1024 * 1024


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    host: str = "127.0.0.1"
    port: int = 0
    slow_seconds: float = 2.0
    retry_after: str = "1"
    limited_times: int = 1
    flaky_times: int = 2
    requests: list[Received] = field(default_factory=list)
    huge_bytes_sent: int = 0
    # Requests being answered at once, now and at most, per path.
    in_flight: dict[str, int] = field(default_factory=dict)
    max_in_flight: dict[str, int] = field(default_factory=dict)
    _server: asyncio.Server | None = None
    _counts: dict[str, int] = field(default_factory=dict)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def on(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(self, path: str, count: int = 1, within: float = 30.0) -> list[Received]:
        async with asyncio.timeout(within):
            while len(self.on(path)) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.on(path)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                _, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(Received(path, headers, body))
                self._counts[path] = self._counts.get(path, 0) + 1
                self._arrived.set()
                self.in_flight[path] = self.in_flight.get(path, 0) + 1
                self.max_in_flight[path] = max(
                    self.max_in_flight.get(path, 0), self.in_flight[path]
                )
                try:
                    keep = await self._answer(path, writer)
                finally:
                    self.in_flight[path] -= 1
                if not keep:
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, path: str, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False closes the connection."""
        n = self._counts[path]
        if path == "/hang":
            await asyncio.sleep(3600)
            return False
        if path == "/close":
            return False
        if path == "/slow":
            await asyncio.sleep(self.slow_seconds)
            return await _reply(writer, 200, b"late")
        if path == "/fail":
            return await _reply(writer, 500, b"broken")
        if path == "/redirect":
            return await _reply(writer, 302, b"", [("Location", "/ok")])
        if path == "/gone":
            return await _reply(writer, 410, b"gone")
        if path == "/missing":
            return await _reply(writer, 404, b"no such hook")
        if path == "/limited" and n <= self.limited_times:
            return await _reply(writer, 429, b"slow down", [("Retry-After", self.retry_after)])
        if path == "/flaky" and n <= self.flaky_times:
            return await _reply(writer, 500, b"not yet")
        if path == "/huge":
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {HUGE_BYTES}\r\n\r\n".encode("ascii"))
            chunk = b"x" * 65536
            sent = 0
            while sent < HUGE_BYTES:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
                self.huge_bytes_sent = sent
            return True
        return await _reply(writer, 200, b"ok" + b"!" * 2000)


async def _reply(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    headers: list[tuple[str, str]] | None = None,
) -> bool:
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers or []]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()
    return True


@contextlib.asynccontextmanager
async def receiving(**options: object) -> AsyncIterator[Receiver]:
    receiver = Receiver(**options)  # type: ignore[arg-type]
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.close()
