"""One SMTP connection to a relay: opened, secured and logged into by
aiosmtplib, then handed to `SmtpWire` for the mail transactions.

Why the hand-over: aiosmtplib 5 reads exactly one reply per command it
writes and drops replies that arrive together with an earlier one, so it
cannot pipeline (RFC 2920). Pipelining halves the round trips of a message
(MAIL, RCPT... and DATA go in one write), which is what bounds a pool's rate
to a distant relay, and against Postfix's smtp-sink on loopback it saves
about a quarter of the client's CPU per message; reading replies here also
skips the per-command work of aiosmtplib's `sendmail` (address re-parsing,
regex passes over the message), about a third of the CPU of that path in
all (bench/smtp_pool.py). So aiosmtplib does what it does well (connect,
implicit TLS or STARTTLS, EHLO, AUTH) and the connection's transport is then
given to `SmtpWire` (`transport.set_protocol`), which keeps every reply that
arrives, in order.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections import deque
from dataclasses import dataclass, field

import aiosmtplib

from sendstream.delivery.smtp_relays import RelayConfig

# A reply longer than this (or with more lines) is a broken or hostile peer.
MAX_REPLY_BYTES = 65_536
MAX_REPLY_LINES = 200
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")


def enhanced_code(text: str) -> str | None:
    """The RFC 3463 status code at the start of a reply text ("5.1.1")."""
    match = _ENHANCED.match(text.lstrip())
    return ".".join(match.groups()) if match else None


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    # The text after the code; lines of a multi-line reply joined by "\n".
    text: str


class ConnectionBroken(Exception):
    """The connection closed, timed out or spoke nonsense: no reply to read."""


class RelayFailure(Exception):
    """The relay could not take the message and nothing was delivered, so
    the envelope may go to another relay (or a fresh connection).

    `stale`: a reused connection failed before the transaction got anywhere
    (the relay had dropped it while idle); a fresh connection to the same
    relay should be tried before blaming the relay. `config_error`: our side
    is wrong (credentials, TLS settings) and an operator must act."""

    def __init__(
        self,
        reason: str,
        *,
        code: int | None = None,
        reply_text: str | None = None,
        stale: bool = False,
        config_error: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        # The relay's reply that caused it, when there was one.
        self.code = code
        self.enhanced = enhanced_code(reply_text) if reply_text else None
        self.stale = stale
        self.config_error = config_error


class SmtpWire(asyncio.Protocol):
    """Replies of one connection, parsed as they arrive and queued in order.
    The owner says how many replies each write asks for; a reply nobody
    asked for (a 421 sent by a relay that times out an idle connection)
    marks the connection `broken`, so the pool drops it instead of pairing
    that reply with the next command."""

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._lines: list[str] = []
        self._replies: deque[Reply] = deque()
        self._owed = 0
        self._waiter: asyncio.Future[None] | None = None
        self._lost: str | None = None
        self.broken = False

    # -- asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = bytes(buffer[start:end]).rstrip(b"\r")
            start = end + 1
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in (b"", b" ", b"-"):
                self._fail(f"the relay sent a malformed reply line: {line[:80]!r}")
                return
            self._lines.append(line[4:].decode("utf-8", "replace"))
            if line[3:4] == b"-":
                if len(self._lines) > MAX_REPLY_LINES:
                    self._fail("the relay sent a reply of too many lines")
                    return
                continue
            reply = Reply(int(line[:3]), "\n".join(self._lines))
            self._lines = []
            if self._owed > 0:
                self._owed -= 1
            else:
                self.broken = True
            self._replies.append(reply)
        if start:
            del buffer[:start]
        if len(buffer) > MAX_REPLY_BYTES:
            self._fail("the relay sent an over-long reply")
            return
        self._wake()

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost is None:
            self._lost = "the relay closed the connection" + (f" ({exc})" if exc else "")
        self._wake()

    # -- used by the transaction

    @property
    def usable(self) -> bool:
        return (
            self._lost is None
            and not self.broken
            and self._owed == 0
            and not self._transport.is_closing()
        )

    def send(self, data: bytes, replies: int) -> None:
        """Write `data`, which asks for `replies` replies."""
        if self._lost is not None:
            raise ConnectionBroken(self._lost)
        if self._transport.is_closing():
            raise ConnectionBroken("the connection is closed")
        self._owed += replies
        self._transport.write(data)  # type: ignore[attr-defined]

    async def read(self, within: float) -> Reply:
        """The next reply; `ConnectionBroken` when the connection ends first or
        no reply comes `within` seconds (the connection is then
        closed, since a late reply would be taken for the next one)."""
        if self._replies:
            return self._replies.popleft()
        if self._lost is not None:
            raise ConnectionBroken(self._lost)
        waiter = self._loop.create_future()
        self._waiter = waiter
        timer = self._loop.call_later(within, self._timed_out, waiter, within)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self._replies:
            return self._replies.popleft()
        raise ConnectionBroken(self._lost or "the connection ended")

    def close(self, *, quit: bool = True) -> None:
        """Close without waiting: QUIT is written (politeness, not waited
        for) when the connection is still in step."""
        if not self._transport.is_closing():
            if quit and self.usable:
                self._transport.write(b"QUIT\r\n")  # type: ignore[attr-defined]
            self._transport.close()
        if self._lost is None:
            self._lost = "the connection was closed"

    # -- internals

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _timed_out(self, waiter: asyncio.Future[None], timeout: float) -> None:
        if not waiter.done():
            self._fail(f"no reply from the relay within {timeout:g} s")

    def _fail(self, reason: str) -> None:
        self._lost = reason
        self.broken = True
        self._transport.close()
        self._wake()


@dataclass(slots=True, eq=False)
class SmtpConnection:
    relay: RelayConfig
    smtp: aiosmtplib.SMTP
    wire: SmtpWire
    pipelining: bool
    # Largest message the relay takes (EHLO SIZE), None when not announced.
    size_limit: int | None
    eightbitmime: bool
    smtputf8: bool
    opened_at: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    transactions: int = 0
    # A transaction ended without the relay resetting itself: RSET first.
    dirty: bool = False
    # Taken from the pool's idle connections (not opened for this message).
    reused: bool = False

    @property
    def usable(self) -> bool:
        return self.wire.usable

    def close(self, *, quit: bool = True) -> None:
        self.wire.close(quit=quit)
        self.smtp.close()  # releases aiosmtplib's connect lock; the transport is already closing


async def open_connection(
    relay: RelayConfig,
    tls_context: ssl.SSLContext,
    *,
    helo_name: str,
    connect_timeout: float,
    command_timeout: float,
) -> SmtpConnection:
    """Connect, greet, secure and log in; `RelayFailure` when the relay cannot
    be used (refused, silent, TLS or AUTH failure), with the reason."""
    smtp = aiosmtplib.SMTP(
        hostname=relay.host,
        port=relay.port,
        local_hostname=helo_name,
        timeout=command_timeout,
        use_tls=relay.implicit_tls,
        start_tls={"auto": None, "always": True, "never": False}[relay.starttls],
        tls_context=tls_context,
    )
    name = relay.name
    try:
        await smtp.connect(timeout=connect_timeout)
        if smtp.is_ehlo_or_helo_needed:
            try:
                await smtp.ehlo()
            except aiosmtplib.SMTPHeloError:
                await smtp.helo()
        if relay.username is not None:
            secure = smtp.get_transport_info("sslcontext") is not None
            if not secure and not relay.on_loopback:
                raise RelayFailure(
                    f"refusing to send the password for {name} unencrypted: the relay did not "
                    "offer STARTTLS (use smtps:// or a relay that offers it)",
                    config_error=True,
                )
            await _login(smtp, relay)
    except RelayFailure:
        smtp.close()
        raise
    except aiosmtplib.SMTPAuthenticationError as exc:
        smtp.close()
        raise RelayFailure(
            f"{name} refused our credentials: {exc.code} {exc.message}", config_error=True
        ) from exc
    except aiosmtplib.SMTPConnectTimeoutError as exc:
        smtp.close()
        raise RelayFailure(f"{name} did not greet within {connect_timeout:g} s") from exc
    except aiosmtplib.SMTPConnectResponseError as exc:
        smtp.close()
        raise RelayFailure(
            f"{name} refused the connection: {exc.code} {exc.message}",
            code=exc.code,
            reply_text=exc.message,
        ) from exc
    except aiosmtplib.SMTPConnectError as exc:
        smtp.close()
        if isinstance(exc.__cause__, ssl.SSLError):
            await _let_close_finish()
            raise RelayFailure(
                f"TLS with {name} failed: {exc.__cause__}", config_error=True
            ) from exc
        raise RelayFailure(f"cannot connect to {name}: {exc.__cause__ or exc}") from exc
    except aiosmtplib.SMTPTimeoutError as exc:
        smtp.close()
        raise RelayFailure(f"{name} did not answer within {command_timeout:g} s") from exc
    except aiosmtplib.SMTPServerDisconnected as exc:
        smtp.close()
        raise RelayFailure(f"{name} closed the connection while we logged in") from exc
    except aiosmtplib.SMTPResponseException as exc:
        smtp.close()
        raise RelayFailure(
            f"{name} refused the session: {exc.code} {exc.message}",
            code=exc.code,
            reply_text=exc.message,
        ) from exc
    except aiosmtplib.SMTPException as exc:
        # STARTTLS required but not offered, AUTH not offered, ...
        smtp.close()
        raise RelayFailure(f"{name}: {exc}", config_error=True) from exc
    except ssl.SSLError as exc:
        smtp.close()
        await _let_close_finish()
        raise RelayFailure(f"TLS with {name} failed: {exc}", config_error=True) from exc
    except (OSError, TimeoutError) as exc:
        smtp.close()
        raise RelayFailure(f"connection to {name} failed: {exc!r}") from exc
    except BaseException:
        smtp.close()
        raise

    extensions = smtp.esmtp_extensions
    transport = smtp.transport
    if transport is None:  # connect() returned, so aiosmtplib holds a transport
        raise RelayFailure(f"{name} closed the connection while we logged in")
    wire = SmtpWire(transport)
    transport.set_protocol(wire)
    size = extensions.get("size", "").strip()
    return SmtpConnection(
        relay=relay,
        smtp=smtp,
        wire=wire,
        pipelining="pipelining" in extensions,
        size_limit=int(size) if size.isdigit() and int(size) > 0 else None,
        eightbitmime="8bitmime" in extensions,
        smtputf8="smtputf8" in extensions,
    )


async def _login(smtp: aiosmtplib.SMTP, relay: RelayConfig) -> None:
    username = relay.username or ""
    password = relay.password or ""
    if relay.auth == "plain":
        await smtp.auth_plain(username, password)
    elif relay.auth == "login":
        await smtp.auth_login(username, password)
    elif relay.auth == "cram-md5":
        await smtp.auth_crammd5(username, password)
    else:
        await smtp.login(username, password)


async def _let_close_finish() -> None:
    """After a failed TLS handshake the plain socket transport under it is
    only *closing*; one turn of the loop lets its close finish, so it is not
    left for the garbage collector (an unclosed-transport warning)."""
    await asyncio.sleep(0)
