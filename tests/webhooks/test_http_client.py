"""The webhook HTTP/1.1 client (sendstream.webhooks.http_client) against raw
asyncio servers on loopback, each scripted to answer (or misbehave) in one
way, counting the connections it accepts."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from sendstream.core.settings import Settings
from sendstream.webhooks.http_client import (
    ConnectError,
    ConnectionPool,
    HttpError,
    LocalProtocolError,
    Origin,
    ReadTimeout,
    RemoteProtocolError,
    Response,
)
from sendstream.webhooks.sender import WebhookSender
from tests.fixtures.dns import DnsServer
from tests.fixtures.smtp_servers import TlsFiles
from tests.webhooks.conftest import publish_address

HUGE_BYTES = 50 * 1024 * 1024
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

Handler = Callable[["Exchange"], Awaitable[bool]]


@dataclass
class Exchange:
    """One request as a scripted server sees it; the handler answers through
    `writer` and returns whether to read another request on the connection."""

    server: Server
    connection: int
    path: str
    headers: dict[str, str]
    body: bytes
    writer: asyncio.StreamWriter


@dataclass
class Server:
    handler: Handler
    connections: int = 0
    requests: list[Exchange] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    bytes_sent: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    port: int = 0

    async def wait_requests(self, count: int) -> None:
        async with asyncio.timeout(30):
            while len(self.requests) < count:
                self.arrived.clear()
                await self.arrived.wait()

    def origin(self, scheme: str = "http", server_name: str | None = None) -> Origin:
        return Origin(scheme, "127.0.0.1", self.port, server_name)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.connections += 1
        connection = self.connections
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
                exchange = Exchange(self, connection, path, headers, body, writer)
                self.requests.append(exchange)
                self.arrived.set()
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    keep = await self.handler(exchange)
                finally:
                    self.in_flight -= 1
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            # Ended by `serving` at the test's end; Python 3.11's stream
            # server logs an error for a handler task that ends cancelled.
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self.done.set()


@contextlib.asynccontextmanager
async def serving(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server(handler)
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0, ssl=tls)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        for task in server.tasks:
            task.cancel()
        await asyncio.gather(*server.tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(listener.wait_closed(), 2)


@contextlib.asynccontextmanager
async def pool(**options: Any) -> AsyncIterator[ConnectionPool]:
    running = ConnectionPool(**{"connect_timeout": 5.0, "read_timeout": 5.0, **options})
    try:
        yield running
    finally:
        await running.aclose()


async def post(
    client: ConnectionPool, origin: Origin, path: str = "/hook", body: bytes = b"{}"
) -> Response:
    return await client.post(origin, path, [("host", "hooks.example.com")], body)


async def answer_ok(exchange: Exchange) -> bool:
    exchange.writer.write(OK)
    await exchange.writer.drain()
    return True


class TestKeepAlive:
    async def test_sequential_requests_share_one_connection(self) -> None:
        async with serving(answer_ok) as server, pool() as client:
            for i in range(20):
                response = await post(client, server.origin(), f"/hook/{i}", b'{"n": %d}' % i)
                assert response.status_code == 200
                assert response.body == b"ok"
        assert server.connections == 1
        assert [r.path for r in server.requests] == [f"/hook/{i}" for i in range(20)]
        assert server.requests[3].body == b'{"n": 3}'
        assert server.requests[0].headers["host"] == "hooks.example.com"
        assert server.requests[0].headers["content-length"] == "8"

    async def test_a_server_closing_after_each_answer_gets_a_new_connection_each_time(
        self,
    ) -> None:
        async def answer_and_close(exchange: Exchange) -> bool:
            exchange.writer.write(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 4\r\n\r\ndone"
            )
            await exchange.writer.drain()
            return False

        async with serving(answer_and_close) as server, pool() as client:
            for _ in range(5):
                response = await post(client, server.origin())
                assert (response.status_code, response.body) == (200, b"done")
            assert client.connections == 0
        assert server.connections == 5

    async def test_an_answer_ended_by_closing_the_connection_is_read_to_its_end(self) -> None:
        async def unframed(exchange: Exchange) -> bool:
            exchange.writer.write(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
            await exchange.writer.drain()
            return False

        async with serving(unframed) as server, pool() as client:
            response = await post(client, server.origin())
            assert response.body == b"until the end"
            assert client.connections == 0

    async def test_a_connection_the_server_closed_while_idle_is_not_used_again(self) -> None:
        # Closes without saying so (no `Connection: close`), as servers do
        # when their keep-alive timeout ends.
        async def answer_then_hang_up(exchange: Exchange) -> bool:
            await answer_ok(exchange)
            return False

        async with serving(answer_then_hang_up) as server, pool() as client:
            await post(client, server.origin())
            await server.done.wait()
            response = await post(client, server.origin())
        assert response.status_code == 200
        assert server.connections == 2
        assert len(server.requests) == 2

    async def test_a_request_the_server_dropped_on_a_reused_connection_is_sent_once_more(
        self,
    ) -> None:
        # The race of a keep-alive timeout: the server closes the connection
        # just as the next request arrives on it, before answering.
        async def first_only(exchange: Exchange) -> bool:
            if (
                len([r for r in exchange.server.requests if r.connection == exchange.connection])
                > 1
            ):
                return False
            return await answer_ok(exchange)

        async with serving(first_only) as server, pool() as client:
            await post(client, server.origin(), "/a")
            response = await post(client, server.origin(), "/b")
        assert response.status_code == 200
        assert [(r.connection, r.path) for r in server.requests] == [
            (1, "/a"),
            (1, "/b"),
            (2, "/b"),
        ]

    async def test_a_new_connection_closed_without_an_answer_is_an_error_not_retried(
        self,
    ) -> None:
        async def hang_up(exchange: Exchange) -> bool:
            return False

        async with serving(hang_up) as server, pool() as client:
            with pytest.raises(RemoteProtocolError, match="without answering"):
                await post(client, server.origin())
        assert len(server.requests) == 1

    async def test_idle_connections_past_the_keepalive_expiry_are_closed_not_used(self) -> None:
        async with serving(answer_ok) as server, pool(keepalive_expiry=0.0) as client:
            for _ in range(3):
                await post(client, server.origin())
        assert server.connections == 3


class TestBrokenAnswers:
    async def test_an_answer_cut_short_is_an_error(self) -> None:
        async def half(exchange: Exchange) -> bool:
            exchange.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
            await exchange.writer.drain()
            return False

        async with serving(half) as server, pool() as client:
            with pytest.raises(RemoteProtocolError):
                await post(client, server.origin())
            assert client.connections == 0

    async def test_half_a_status_line_then_close_is_an_error(self) -> None:
        async def half_head(exchange: Exchange) -> bool:
            exchange.writer.write(b"HTTP/1.1 200 O")
            await exchange.writer.drain()
            return False

        async with serving(half_head) as server, pool() as client:
            with pytest.raises(RemoteProtocolError):
                await post(client, server.origin())

    async def test_a_reset_connection_is_an_error(self) -> None:
        async def reset(exchange: Exchange) -> bool:
            exchange.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")
            await exchange.writer.drain()
            sock = exchange.writer.get_extra_info("socket")
            # Linger 0: close() sends RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            exchange.writer.transport.abort()
            return False

        async with serving(reset) as server, pool() as client:
            with pytest.raises(HttpError):
                await post(client, server.origin())
            assert client.connections == 0

    async def test_an_answer_that_is_not_http_is_an_error(self) -> None:
        async def garbage(exchange: Exchange) -> bool:
            exchange.writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
            await exchange.writer.drain()
            return False

        async with serving(garbage) as server, pool() as client:
            with pytest.raises(RemoteProtocolError):
                await post(client, server.origin())

    async def test_a_server_that_never_answers_times_out_per_read(self) -> None:
        async def hang(exchange: Exchange) -> bool:
            await asyncio.sleep(3600)
            return False

        async with serving(hang) as server, pool(read_timeout=0.2) as client:
            with pytest.raises(ReadTimeout):
                await post(client, server.origin())
            assert client.connections == 0

    async def test_a_closed_port_is_a_connect_error(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        async with pool() as client:
            with pytest.raises(ConnectError, match=f"127.0.0.1:{port}"):
                await post(client, Origin("http", "127.0.0.1", port))
            assert client.connections == 0


def chunked(parts: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


class TestAnswerBodies:
    async def test_a_chunked_body_is_read_and_the_connection_reused(self) -> None:
        async def chunks(exchange: Exchange) -> bool:
            exchange.writer.write(b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n")
            for part in (b"first,", b"second,", b"third"):
                exchange.writer.write(chunked([part])[: -len(b"0\r\n\r\n")])
                await exchange.writer.drain()
            exchange.writer.write(b"0\r\n\r\n")
            await exchange.writer.drain()
            return True

        async with serving(chunks) as server, pool() as client:
            for _ in range(3):
                response = await post(client, server.origin())
                assert (response.status_code, response.body) == (202, b"first,second,third")
        assert server.connections == 1

    async def test_only_the_first_kib_is_kept_but_a_body_within_the_drain_limit_is_read(
        self,
    ) -> None:
        body = bytes(range(256)) * 40

        async def ten_kib(exchange: Exchange) -> bool:
            exchange.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10240\r\n\r\n" + body)
            await exchange.writer.drain()
            return True

        async with serving(ten_kib) as server, pool(keep_bytes=1024) as client:
            for _ in range(2):
                response = await post(client, server.origin())
                assert response.body == body[:1024]
        assert server.connections == 1

    @pytest.mark.parametrize("framing", ["content-length", "chunked"])
    async def test_a_50_mb_body_is_cut_without_reading_it_all(self, framing: str) -> None:
        async def huge(exchange: Exchange) -> bool:
            if framing == "chunked":
                exchange.writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            else:
                exchange.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % HUGE_BYTES)
            part = b"x" * 65536
            framed = chunked([part])[: -len(b"0\r\n\r\n")] if framing == "chunked" else part
            while exchange.server.bytes_sent < HUGE_BYTES:
                exchange.writer.write(framed)
                await exchange.writer.drain()
                exchange.server.bytes_sent += len(part)
            return True

        async with serving(huge) as server, pool(drain_limit=65_536) as client:
            response = await post(client, server.origin())
            assert response.status_code == 200
            assert response.body == b"x" * 1024
            # Not kept for reuse: closed, the rest never read.
            assert client.connections == 0
            await asyncio.wait_for(server.done.wait(), 30)
        assert server.bytes_sent < HUGE_BYTES

    async def test_a_redirect_is_an_answer_not_followed(self) -> None:
        async def redirect(exchange: Exchange) -> bool:
            exchange.writer.write(
                b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"
            )
            await exchange.writer.drain()
            return True

        async with serving(redirect) as server, pool() as client:
            response = await post(client, server.origin())
        assert response.status_code == 302
        assert response.header("Location") == "/elsewhere"
        assert [r.path for r in server.requests] == ["/hook"]


def answering(*answers: bytes, keep: bool = True) -> Handler:
    """A handler that writes `answers` in turn (one per request), each in
    one write, and keeps the connection open or not."""

    async def handler(exchange: Exchange) -> bool:
        exchange.writer.write(answers[(len(exchange.server.requests) - 1) % len(answers)])
        await exchange.writer.drain()
        return keep

    return handler


class TestWireFormat:
    """The request is written and a plain answer read without h11; the
    answers that are not plain go to h11 with the bytes read so far."""

    async def test_the_request_is_one_well_formed_http_1_1_post(self) -> None:
        async with serving(answer_ok) as server, pool() as client:
            await client.post(
                server.origin(),
                "/in?x=1",
                [("host", "hooks.example.com"), ("webhook-id", "msg_1")],
                b'{"a": 1}',
            )
        (request,) = server.requests
        assert request.path == "/in?x=1"
        assert request.headers == {
            "host": "hooks.example.com",
            "webhook-id": "msg_1",
            "content-length": "8",
        }
        assert request.body == b'{"a": 1}'

    @pytest.mark.parametrize(
        "header",
        [("x-evil", "a\r\nx-injected: 1"), ("bad name", "v"), ("x-tail", "v ")],
    )
    async def test_a_header_h11_would_refuse_is_refused_before_sending(
        self, header: tuple[str, str]
    ) -> None:
        async with serving(answer_ok) as server, pool() as client:
            with pytest.raises(LocalProtocolError):
                await client.post(server.origin(), "/", [("host", "h"), header], b"")
        assert server.requests == []

    async def test_headers_and_a_body_split_across_packets_are_read(self) -> None:
        async def trickle(exchange: Exchange) -> bool:
            for part in (
                b"HTTP/1.1 201 Created\r\nConte",
                b"nt-Length: 5\r\nRetry-",
                b"After: 7\r\n",
                b"\r\nab",
                b"cde",
            ):
                exchange.writer.write(part)
                await exchange.writer.drain()
                await asyncio.sleep(0.01)
            return True

        async with serving(trickle) as server, pool() as client:
            for _ in range(2):
                response = await post(client, server.origin())
                assert (response.status_code, response.body) == (201, b"abcde")
                assert response.header("retry-after") == "7"
        assert server.connections == 1

    async def test_an_informational_answer_is_passed_over(self) -> None:
        handler = answering(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
        async with serving(handler) as server, pool() as client:
            for _ in range(2):
                assert (await post(client, server.origin())).status_code == 200
        assert server.connections == 1

    async def test_connection_close_is_honoured(self) -> None:
        handler = answering(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        async with serving(handler) as server, pool() as client:
            for _ in range(2):
                assert (await post(client, server.origin())).body == b"ok"
        assert server.connections == 2

    async def test_bytes_past_the_answer_are_not_taken_for_the_next_answer(self) -> None:
        handler = answering(OK + b"HTTP/1.1 500 Nope\r\nContent-Length: 0\r\n\r\n")
        async with serving(handler) as server, pool() as client:
            for _ in range(2):
                assert (await post(client, server.origin())).status_code == 200
        assert server.connections == 2

    async def test_a_folded_header_line_is_read_by_h11(self) -> None:
        handler = answering(
            b"HTTP/1.1 200 OK\r\nX-Note: one\r\n two\r\nContent-Length: 2\r\n\r\nok"
        )
        async with serving(handler) as server, pool() as client:
            response = await post(client, server.origin())
        assert response.header("x-note") == "one two"

    async def test_an_answer_with_bare_line_feeds_is_read_by_h11(self) -> None:
        handler = answering(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")
        async with serving(handler) as server, pool() as client:
            response = await post(client, server.origin())
        assert (response.status_code, response.body) == (200, b"ok")

    async def test_two_content_lengths_that_disagree_are_an_error(self) -> None:
        handler = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!")
        async with serving(handler) as server, pool() as client:
            with pytest.raises(RemoteProtocolError):
                await post(client, server.origin())

    async def test_a_body_cut_short_by_closing_is_an_error(self) -> None:
        handler = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", keep=False)
        async with serving(handler) as server, pool() as client:
            with pytest.raises(RemoteProtocolError):
                await post(client, server.origin())


class TestTls:
    async def test_a_self_signed_certificate_is_refused(self, tls_files: TlsFiles) -> None:
        async with serving(answer_ok, tls_files.server_context()) as server, pool() as client:
            with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await post(client, server.origin(scheme="https", server_name="localhost"))
        assert server.requests == []

    async def test_the_certificate_is_checked_against_the_url_host_not_the_address(
        self, tls_files: TlsFiles
    ) -> None:
        trusting = ssl.create_default_context(cafile=str(tls_files.cert))
        server_context = tls_files.server_context()
        server_names: list[str | None] = []
        server_context.sni_callback = lambda _, name, __: server_names.append(name)
        async with (
            serving(answer_ok, server_context) as server,
            pool(ssl_context=trusting) as client,
        ):
            response = await post(client, server.origin(scheme="https", server_name="localhost"))
            assert response.status_code == 200
            with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await post(client, server.origin(scheme="https", server_name="hooks.example.com"))
        # The name went out as SNI, though the connection went to 127.0.0.1.
        assert server_names == ["localhost", "hooks.example.com"]
        assert len(server.requests) == 1


class TestLimits:
    @staticmethod
    def held(release: asyncio.Event) -> Handler:
        async def handler(exchange: Exchange) -> bool:
            await release.wait()
            return await answer_ok(exchange)

        return handler

    async def test_connections_to_one_origin_stay_within_the_per_origin_limit(self) -> None:
        release = asyncio.Event()
        async with serving(self.held(release)) as server, pool(max_per_origin=2) as client:
            requests = [asyncio.create_task(post(client, server.origin())) for _ in range(8)]
            await server.wait_requests(2)
            assert client.connections == 2
            release.set()
            responses = await asyncio.gather(*requests)
        assert [r.status_code for r in responses] == [200] * 8
        assert server.max_in_flight == 2
        assert server.connections == 2

    async def test_the_global_limit_holds_across_origins_and_idle_ones_make_room(self) -> None:
        release = asyncio.Event()
        async with (
            serving(self.held(release)) as first,
            serving(self.held(release)) as second,
            pool(max_connections=3) as client,
        ):
            requests = [
                asyncio.create_task(post(client, server.origin())) for server in (first, second) * 4
            ]
            # In arrival order the first three go: first, second, first.
            await first.wait_requests(2)
            await second.wait_requests(1)
            assert client.connections == 3
            release.set()
            responses = await asyncio.gather(*requests)
            assert [r.status_code for r in responses] == [200] * 8
            assert client.connections <= 3
        assert first.max_in_flight + second.max_in_flight <= 3

    async def test_an_idle_connection_to_another_origin_is_closed_to_make_room(self) -> None:
        async with (
            serving(answer_ok) as first,
            serving(answer_ok) as second,
            pool(max_connections=1) as client,
        ):
            await post(client, first.origin())
            assert client.idle(first.origin()) == 1
            response = await post(client, second.origin())
            assert response.status_code == 200
            assert client.idle(first.origin()) == 0
            assert client.connections == 1

    async def test_a_request_cancelled_while_waiting_gives_its_place_back(self) -> None:
        release = asyncio.Event()
        async with serving(self.held(release)) as server, pool(max_connections=1) as client:
            busy = asyncio.create_task(post(client, server.origin()))
            waiting = asyncio.create_task(post(client, server.origin()))
            await server.wait_requests(1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            release.set()
            assert (await busy).status_code == 200
            assert (await post(client, server.origin())).status_code == 200
            assert client.connections == 1
        assert len(server.requests) == 2

    async def test_a_request_cancelled_mid_answer_closes_its_connection(self) -> None:
        release = asyncio.Event()
        async with serving(self.held(release)) as server, pool() as client:
            request = asyncio.create_task(post(client, server.origin()))
            await server.wait_requests(1)
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request
            assert client.connections == 0
            release.set()
            assert (await post(client, server.origin())).status_code == 200
        assert server.connections == 2


class TestWebhookSender:
    """The sender over the pool: the URL's name is resolved and vetted, the
    connection goes to that address, and the name stays in Host and TLS."""

    async def test_the_request_goes_to_the_vetted_address_under_the_url_host(
        self, settings: Settings, http_webhooks: None, dns_server: DnsServer
    ) -> None:
        publish_address(dns_server, "hooks.example.com", "127.0.0.1")
        sender = WebhookSender(settings)
        async with serving(answer_ok) as server:
            try:
                result = await sender.send(
                    f"http://hooks.example.com:{server.port}/in?tag=a",
                    # Framing and routing are the client's, whatever a
                    # custom header says.
                    {"content-type": "application/json", "host": "evil", "content-length": "1"},
                    b'{"a": 1}',
                    allow_private=True,
                )
            finally:
                await sender.aclose()
        assert (result.status_code, result.response_body, result.error) == (200, "ok", None)
        [request] = server.requests
        assert request.path == "/in?tag=a"
        assert request.headers["host"] == f"hooks.example.com:{server.port}"
        assert request.headers["content-length"] == "8"
        assert request.body == b'{"a": 1}'

    async def test_https_checks_the_certificate_against_the_url_host(
        self, settings: Settings, dns_server: DnsServer, tls_files: TlsFiles
    ) -> None:
        publish_address(dns_server, "hooks.example.com", "127.0.0.1")
        sender = WebhookSender(settings)
        async with serving(answer_ok, tls_files.server_context()) as server:
            try:
                result = await sender.send(
                    f"https://hooks.example.com:{server.port}/in",
                    {"content-type": "application/json"},
                    b"{}",
                    allow_private=True,
                )
            finally:
                await sender.aclose()
        assert result.status_code is None
        assert result.error is not None
        assert result.error.startswith("connection: ConnectError")
        assert "CERTIFICATE_VERIFY_FAILED" in result.error
        assert server.requests == []
