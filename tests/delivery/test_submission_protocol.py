"""The relay's SMTP protocol (smtp_server.py) byte by byte over a raw socket
on loopback: pipelining, DATA's end marker and dot-stuffing, the size and
line limits, commands out of order, STARTTLS command injection, AUTH LOGIN,
idle and shutdown replies."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import pytest

from sendstream.core.db import Database
from sendstream.delivery.submission import SubmissionServer
from tests.delivery.messages_helpers import DOMAIN, verified_domain
from tests.delivery.submission_helpers import (
    StartRelay,
    client_context,
    create_credential,
    rows,
    start_relay_fixture,  # noqa: F401  (fixture `start_relay`)
)
from tests.fixtures.actors import Actor


class Wire:
    """A raw SMTP client: writes bytes, reads whole replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int | None) -> Wire:
        assert port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        wire = cls(reader, writer)
        assert (await wire.reply()).startswith("220 ")
        return wire

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self) -> str:
        """One reply, its lines joined with newlines."""
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            if not line:
                raise ConnectionError("closed")
            lines.append(line.decode().rstrip("\r\n"))
            if line[3:4] != b"-":
                return "\n".join(lines)

    async def command(self, line: str) -> str:
        await self.send(line.encode() + b"\r\n")
        return await self.reply()

    async def closed(self) -> bool:
        """Whether the server closed the connection (it is closed here too)."""
        rest = await asyncio.wait_for(self.reader.read(), 10)
        self.close()
        return rest == b""

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def sender(db: Database, admin_actor: Actor) -> Actor:
    await verified_domain(db, admin_actor.workspace_id)
    return admin_actor


@pytest.fixture
async def login(client: httpx.AsyncClient, sender: Actor) -> dict[str, Any]:
    return await create_credential(client, sender)


@pytest.fixture
async def trusted(start_relay: StartRelay, login: dict[str, Any]) -> SubmissionServer:
    """A relay where loopback is logged in as the credential (no AUTH)."""
    return await start_relay(
        submission_trusted_networks=["127.0.0.0/8"],
        submission_trusted_username=login["username"],
        submission_max_message_bytes=4096,
    )


def body(subject: str, text: str) -> bytes:
    return (
        f"From: Acme <news@{DOMAIN}>\r\nTo: ada@example.com\r\nSubject: {subject}\r\n\r\n{text}"
    ).encode()


class TestPipelining:
    async def test_a_whole_transaction_in_one_write_gets_every_reply_in_order(
        self, trusted: SubmissionServer, db: Database, sender: Actor
    ) -> None:
        wire = await Wire.open(trusted.port)
        await wire.send(
            b"EHLO client\r\nMAIL FROM:<app@" + DOMAIN.encode() + b">\r\n"
            b"RCPT TO:<ada@example.com>\r\nDATA\r\n"
        )
        assert "250-PIPELINING" in await wire.reply()
        assert (await wire.reply()).startswith("250 2.1.0")
        assert (await wire.reply()).startswith("250 2.1.5")
        assert (await wire.reply()).startswith("354 ")
        await wire.send(body("piped", "one\r\n") + b".\r\nNOOP\r\nQUIT\r\n")
        assert "Queued as" in await wire.reply()
        assert (await wire.reply()).startswith("250 2.0.0")
        assert (await wire.reply()).startswith("221 ")
        assert await wire.closed()
        assert [r["subject"] for r in await rows(db, sender.workspace_id)] == ["piped"]


class TestData:
    async def test_dot_stuffed_lines_are_unstuffed_and_a_bare_lf_dot_does_not_end_data(
        self, trusted: SubmissionServer, db: Database, sender: Actor
    ) -> None:
        wire = await Wire.open(trusted.port)
        await wire.command("EHLO client")
        await wire.command(f"MAIL FROM:<app@{DOMAIN}>")
        await wire.command("RCPT TO:<ada@example.com>")
        assert (await wire.command("DATA")).startswith("354")
        await wire.send(body("dots", "..starts with a dot\r\nnot the end\n.\nstill text\r\n"))
        await wire.send(b".\r\n")
        reply = await wire.reply()
        wire.close()
        assert "Queued as" in reply
        [row] = await rows(db, sender.workspace_id)
        assert row["text"] == ".starts with a dot\nnot the end\n.\nstill text\n"

    async def test_data_past_the_size_limit_is_read_to_the_end_and_refused(
        self, trusted: SubmissionServer, db: Database, sender: Actor
    ) -> None:
        wire = await Wire.open(trusted.port)
        await wire.command("EHLO client")
        await wire.command(f"MAIL FROM:<app@{DOMAIN}>")
        await wire.command("RCPT TO:<ada@example.com>")
        await wire.command("DATA")
        for _ in range(20):  # 20 KB against a 4 KB limit, in pieces
            await wire.send(b"x" * 998 + b"\r\n")
        await wire.send(b".\r\n")
        reply = await wire.reply()
        # The connection is still in step: the next command is a command.
        noop = await wire.command("NOOP")
        wire.close()
        assert reply.startswith("552 5.3.4")
        assert noop.startswith("250")
        assert await rows(db, sender.workspace_id) == []

    async def test_a_text_line_past_the_cap_is_refused(
        self, start_relay: StartRelay, login: dict[str, Any], db: Database, sender: Actor
    ) -> None:
        relay = await start_relay(
            submission_trusted_networks=["127.0.0.1/32"],
            submission_trusted_username=login["username"],
        )
        wire = await Wire.open(relay.port)
        await wire.command("EHLO client")
        replies = []
        for line in (b"y" * 60_000, b"z" * 70_000):  # the cap is 65,536 octets
            await wire.command(f"MAIL FROM:<app@{DOMAIN}>")
            await wire.command("RCPT TO:<ada@example.com>")
            await wire.command("DATA")
            await wire.send(body("long", "") + line + b"\r\n.\r\n")
            replies.append(await wire.reply())
        wire.close()
        assert "Queued as" in replies[0]
        assert replies[1].startswith("500 5.5.2")
        assert len(await rows(db, sender.workspace_id)) == 1

    async def test_data_before_rcpt_and_rcpt_before_mail_are_503(
        self, trusted: SubmissionServer
    ) -> None:
        wire = await Wire.open(trusted.port)
        mail_first = await wire.command(f"MAIL FROM:<app@{DOMAIN}>")
        await wire.command("EHLO client")
        rcpt = await wire.command("RCPT TO:<ada@example.com>")
        await wire.command(f"MAIL FROM:<app@{DOMAIN}>")
        nested = await wire.command(f"MAIL FROM:<app@{DOMAIN}>")
        data = await wire.command("DATA")
        wire.close()
        assert mail_first.startswith("503 5.5.1")
        assert rcpt.startswith("503 5.5.1")
        assert nested.startswith("503 5.5.1")
        assert data.startswith("503 5.5.1")


class TestCommands:
    async def test_unknown_long_and_malformed_commands(self, trusted: SubmissionServer) -> None:
        wire = await Wire.open(trusted.port)
        await wire.command("EHLO client")
        unknown = await wire.command("FROB")
        expn = await wire.command("EXPN staff")
        too_long = await wire.command("NOOP " + "x" * 1200)
        bad_mail = await wire.command("MAIL TO:<a@b.example>")
        bad_param = await wire.command(f"MAIL FROM:<app@{DOMAIN}> COLOUR=blue")
        still = await wire.command("NOOP")
        wire.close()
        assert unknown.startswith("500 5.5.2")
        assert expn.startswith("502 5.5.1")
        assert too_long.startswith("500 5.5.2")
        assert bad_mail.startswith("501 5.5.4")
        assert bad_param.startswith("555 5.5.4")
        assert still.startswith("250")

    async def test_rset_vrfy_help_and_quit(self, trusted: SubmissionServer) -> None:
        wire = await Wire.open(trusted.port)
        helo = await wire.command("HELO client")
        await wire.command(f"MAIL FROM:<app@{DOMAIN}>")
        rset = await wire.command("RSET")
        rcpt_after_rset = await wire.command("RCPT TO:<ada@example.com>")
        vrfy = await wire.command("VRFY ada")
        help_ = await wire.command("HELP")
        quit_ = await wire.command("QUIT")
        assert await wire.closed()
        assert helo == "250 relay.test"
        assert rset.startswith("250")
        assert rcpt_after_rset.startswith("503")
        assert vrfy.startswith("252")
        assert help_.startswith("214")
        assert "STARTTLS" in help_
        assert quit_.startswith("221")

    async def test_idle_connection_gets_421_and_is_closed(
        self, start_relay: StartRelay, login: dict[str, Any]
    ) -> None:
        relay = await start_relay(submission_timeout=0.3)
        wire = await Wire.open(relay.port)
        reply = await wire.reply()
        assert reply.startswith("421 4.4.2")
        assert await wire.closed()

    async def test_stop_answers_421_to_open_connections(self, start_relay: StartRelay) -> None:
        relay = await start_relay()
        wire = await Wire.open(relay.port)
        await wire.command("EHLO client")
        await relay.stop()
        assert (await wire.reply()).startswith("421 4.3.2")
        assert await wire.closed()


class TestTls:
    async def test_commands_pipelined_after_starttls_in_clear_are_dropped(
        self, start_relay: StartRelay, login: dict[str, Any]
    ) -> None:
        relay = await start_relay()
        wire = await Wire.open(relay.port)
        await wire.command("EHLO client")
        # CVE-2011-0411: whatever follows STARTTLS in the same clear packet
        # must not be executed inside the TLS session.
        await wire.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<x@evil.example>\r\n")
        assert (await wire.reply()).startswith("220 ")
        await wire.writer.start_tls(client_context())
        # Had MAIL been kept, the next would be a nested MAIL (503), and an
        # injected reply would come before EHLO's.
        ehlo = await wire.command("EHLO client")
        assert ehlo.startswith("250-relay.test")
        assert "AUTH PLAIN LOGIN" in ehlo
        assert "STARTTLS" not in ehlo
        auth = await wire.command(
            f"AUTH LOGIN {base64.b64encode(login['username'].encode()).decode()}"
        )
        assert auth == "334 UGFzc3dvcmQ6"
        done = await wire.command(base64.b64encode(login["password"].encode()).decode())
        mail = await wire.command(f"MAIL FROM:<app@{DOMAIN}>")
        wire.close()
        assert done.startswith("235 2.7.0")
        assert mail.startswith("250 2.1.0")

    async def test_auth_plain_in_two_steps_and_a_cancelled_exchange(
        self, start_relay: StartRelay, login: dict[str, Any]
    ) -> None:
        relay = await start_relay()
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", relay.tls_port, ssl=client_context(), server_hostname="relay.test"
        )
        wire = Wire(reader, writer)
        assert (await wire.reply()).startswith("220 ")
        await wire.command("EHLO client")
        cancelled = [await wire.command("AUTH LOGIN"), await wire.command("*")]
        challenge = await wire.command("AUTH PLAIN")
        token = base64.b64encode(f"\0{login['username']}\0{login['password']}".encode())
        done = await wire.command(token.decode())
        again = await wire.command("AUTH PLAIN " + token.decode())
        wire.close()
        assert cancelled == ["334 VXNlcm5hbWU6", "501 5.7.0 Authentication aborted"]
        assert challenge == "334 "
        assert done.startswith("235")
        assert again.startswith("503 5.5.1")
