"""A lean SMTP server protocol (RFC 5321) for the submission relay: one
`asyncio.Protocol` per connection, a bytearray buffer, no reader/writer
streams, no task per command (a reply that waits is a future with a
callback) and the replies to pipelined commands in one write. aiosmtpd cost
~0.7 ms of CPU a message in the relay benchmark's floor run (the whole
budget for 1,000 msg/s); this costs ~0.13 ms (docs/benchmarks.md, "SMTP
relay").

What a subclass decides (`on_connect`, `on_tls_started`, `on_auth`,
`on_mail`, `on_rcpt`, `on_data`) it answers with a reply line, or with a
future of one when the answer needs the database: the connection then reads
no further command until the reply is written (pipelined commands wait in
the buffer, in order). A 2xx reply to MAIL or RCPT records the address; a
235 to AUTH logs the connection in.

The protocol itself:
- EHLO/HELO, PIPELINING, SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES,
  STARTTLS (`loop.start_tls` on the same connection; whatever the client
  pipelined after STARTTLS in clear is dropped, CVE-2011-0411), AUTH PLAIN
  and LOGIN (with or without an initial response), RSET, NOOP, QUIT,
  VRFY (252), HELP; EXPN and BDAT are not offered (502).
- A command line is at most 1,000 octets with its CRLF (an AUTH exchange
  12,288, RFC 4954); longer: 500 5.5.2 and the line is skipped.
- DATA ends at CRLF.CRLF only (no bare-LF end: the SMTP smuggling class);
  dot-stuffing is undone; past the size limit the rest is read and dropped
  and the answer is 552 5.3.4; a text line longer than `DATA_LINE_CAP` gets
  500 5.5.2 at the end.
- Out-of-order commands 503, bad arguments 501, unknown commands 500,
  unknown parameters 555; idle connections get 421 4.4.2 after `timeout`
  seconds and `shutdown()` answers 421 4.3.2 and closes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger("sendstream.delivery.smtp_server")

# RFC 5321 4.5.3.1.4: 512 octets for a command line; 1,000 is the line
# limit of 4.5.3.1.6 that common clients stay within (long parameters).
COMMAND_LINE_LIMIT = 1000
# RFC 4954 4: an AUTH command line (with its initial response) up to 12,288.
AUTH_LINE_LIMIT = 12288
# RFC 5322 wants at most 998 characters a line; many HTML mailers write
# longer ones, so DATA tolerates them up to this many octets.
DATA_LINE_CAP = 65536
# Bytes a busy connection (waiting on the database) buffers before it stops
# reading from the socket.
PAUSE_AT = 256 * 1024

Reply = str | asyncio.Future[str]

_COMMAND, _DATA, _AUTH, _BUSY, _TLS, _CLOSED = range(6)
_BEFORE_TLS = frozenset({"EHLO", "HELO", "NOOP", "QUIT", "STARTTLS"})
# `<path>` (a quoted local part may hold anything but an unescaped quote)
# or a bare path, then the ESMTP parameters.
_PATH = re.compile(r'\s*(?:<((?:"(?:[^"\\]|\\.)*"|[^<>\s"])*)>|([^<>\s]+))(.*)', re.S)
_LONG_DATA_LINE = re.compile(rb"[^\n]{%d}" % (DATA_LINE_CAP + 1))
_HELP = (
    "214 2.0.0 Supported commands: AUTH DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET STARTTLS VRFY"
)


@dataclass(slots=True)
class SmtpConfig:
    hostname: str
    ident: str
    data_size_limit: int
    timeout: float
    # For STARTTLS (None: not offered). Implicit TLS is the listener's.
    tls_context: ssl.SSLContext | None = None


class SmtpServerProtocol(asyncio.Protocol):
    def __init__(self, config: SmtpConfig, *, implicit_tls: bool = False) -> None:
        self.config = config
        self.transport: asyncio.Transport | None = None
        self.secure = implicit_tls
        # Set by the subclass in on_connect/on_tls_started.
        self.require_starttls = False
        self.auth_offered = True
        self.authenticated = False
        self.peer_ip = ""
        self.helo: str | None = None
        self.mail_from: str | None = None
        self.mail_params: dict[str, str | None] = {}
        self.rcpt_tos: list[str] = []
        self._buffer = bytearray()
        self._state = _COMMAND
        self._out: list[bytes] = []
        self._skip_line = False
        self._paused = False
        self._drop = False
        self._tls_begun = False
        self._tls_task: asyncio.Future[None] | None = None
        # DATA: bytes dropped past the limit, where the CRLF.CRLF scan resumes.
        self._data_fresh = False
        self._dropped = 0
        self._scan = 0
        # AUTH: mechanism and what was given so far.
        self._auth_mechanism = ""
        self._auth_login: bytes | None = None
        self._loop = asyncio.get_running_loop()
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # --- hooks

    def on_connect(self) -> None:
        """Set the connection's policy (`require_starttls`, `auth_offered`,
        `authenticated`) from `peer_ip` and `secure`."""

    def on_tls_started(self) -> None:
        """STARTTLS done: the session starts over, logged out (RFC 3207)."""
        self.on_connect()

    def on_auth(self, mechanism: str, login: bytes, password: bytes) -> Reply:
        return "535 5.7.8 Authentication credentials invalid"

    def on_mail(self, address: str, params: dict[str, str | None]) -> Reply:
        return "250 2.1.0 Ok"

    def on_rcpt(self, address: str) -> Reply:
        return "250 2.1.5 Ok"

    def on_data(self, mail_from: str, rcpt_tos: list[str], content: bytes) -> Reply:
        return "250 2.0.0 Ok"

    def on_close(self) -> None:
        pass

    # --- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer_ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self._last = self._loop.time()
        self._timer = self._loop.call_later(self.config.timeout, self._idle)
        self.on_connect()
        self._write(f"220 {self.config.hostname} ESMTP {self.config.ident}")
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._state = _CLOSED
        self._buffer.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.on_close()

    def data_received(self, data: bytes) -> None:
        state = self._state
        if state == _CLOSED:
            return
        self._last = self._loop.time()
        if state == _TLS and not self._tls_begun:
            return  # pipelined in clear after STARTTLS: never a command
        self._buffer += data
        if state == _BUSY or state == _TLS:
            if len(self._buffer) > PAUSE_AT and not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()
            return
        self._process()
        self._flush()

    def eof_received(self) -> bool | None:
        return False

    # --- output

    def _write(self, line: str) -> None:
        self._out.append(line.encode("utf-8", "surrogateescape") + b"\r\n")

    def _flush(self) -> None:
        if self._out and self.transport is not None and self._state != _CLOSED:
            out = self._out
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        self._out = []
        if self._drop:
            self.close()

    def close(self) -> None:
        self._state = _CLOSED
        if self.transport is not None:
            self.transport.close()

    def drop(self) -> None:
        """Close once the pending replies are written."""
        self._drop = True

    def shutdown(self) -> None:
        if self._state == _CLOSED:
            return
        self._out.append(f"421 4.3.2 {self.config.hostname} Service shutting down\r\n".encode())
        self._drop = True
        self._flush()

    def _idle(self) -> None:
        self._timer = None
        if self._state == _CLOSED:
            return
        idle = self._loop.time() - self._last
        if self._state == _BUSY or idle < self.config.timeout:
            self._timer = self._loop.call_later(max(self.config.timeout - idle, 1.0), self._idle)
            return
        self._write(f"421 4.4.2 {self.config.hostname} Error: timeout exceeded")
        self._drop = True
        self._flush()

    # --- input

    def _process(self) -> None:
        buffer = self._buffer
        while buffer and self._state in (_COMMAND, _DATA, _AUTH):
            if self._state == _DATA:
                if not self._read_data():
                    return
                continue
            end = buffer.find(b"\n")
            if end < 0:
                if len(buffer) > AUTH_LINE_LIMIT:
                    buffer.clear()
                    self._skip_line = True
                    self._too_long()
                return
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if self._skip_line:
                self._skip_line = False
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            if self._state == _AUTH:
                self._auth_step(line)
            else:
                self._command(line, end + 1)

    def _too_long(self) -> None:
        if self._state == _AUTH:
            self._state = _COMMAND
        self._write("500 5.5.2 Error: line too long")

    def _command(self, raw: bytes, length: int) -> None:
        text = raw.decode("utf-8", "surrogateescape")
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        arg = arg.strip()
        if length > COMMAND_LINE_LIMIT and (verb != "AUTH" or length > AUTH_LINE_LIMIT):
            self._write("500 5.5.2 Error: line too long")
            return
        if self.require_starttls and not self.secure and verb not in _BEFORE_TLS:
            self._write("530 5.7.0 Must issue a STARTTLS command first")
            return
        handler = _COMMANDS.get(verb)
        if handler is None:
            if verb in ("EXPN", "BDAT", "TURN", "ETRN"):
                self._write(f"502 5.5.1 {verb} not implemented")
            else:
                self._write(f'500 5.5.2 Error: command "{verb[:20]}" not recognized')
            return
        handler(self, arg)

    # --- commands

    def _ehlo(self, arg: str) -> None:
        if not arg:
            self._write("501 5.5.4 Syntax: EHLO hostname")
            return
        self.helo = arg
        self._reset()
        lines = [
            self.config.hostname,
            f"SIZE {self.config.data_size_limit}",
            "8BITMIME",
            "SMTPUTF8",
            "PIPELINING",
        ]
        if self.config.tls_context is not None and not self.secure:
            lines.append("STARTTLS")
        if self.auth_offered:
            lines.append("AUTH PLAIN LOGIN")
        lines += ["ENHANCEDSTATUSCODES", "HELP"]
        for line in lines[:-1]:
            self._write("250-" + line)
        self._write("250 " + lines[-1])

    def _helo(self, arg: str) -> None:
        if not arg:
            self._write("501 5.5.4 Syntax: HELO hostname")
            return
        self.helo = arg
        self._reset()
        self._write(f"250 {self.config.hostname}")

    def _noop(self, arg: str) -> None:
        self._write("250 2.0.0 Ok")

    def _rset(self, arg: str) -> None:
        if arg:
            self._write("501 5.5.4 Syntax: RSET")
            return
        self._reset()
        self._write("250 2.0.0 Ok")

    def _quit(self, arg: str) -> None:
        if arg:
            self._write("501 5.5.4 Syntax: QUIT")
            return
        self._write("221 2.0.0 Bye")
        self._drop = True
        self._buffer.clear()
        self._state = _BUSY  # nothing after QUIT is read

    def _vrfy(self, arg: str) -> None:
        if not arg:
            self._write("501 5.5.4 Syntax: VRFY <address>")
            return
        self._write("252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery")

    def _help(self, arg: str) -> None:
        self._write(_HELP)

    def _starttls(self, arg: str) -> None:
        if arg:
            self._write("501 5.5.4 Syntax: STARTTLS")
        elif self.secure:
            self._write("503 5.5.1 Already using TLS")
        elif self.config.tls_context is None:
            self._write("454 4.7.0 TLS not available")
        elif self.helo is None:
            self._write("503 5.5.1 Error: send EHLO first")
        else:
            self._write("220 2.0.0 Ready to start TLS")
            self._buffer.clear()
            self._state = _TLS
            self._tls_begun = False
            self._flush()
            self._tls_task = asyncio.ensure_future(self._start_tls(self.config.tls_context))

    async def _start_tls(self, context: ssl.SSLContext) -> None:
        transport = self.transport
        if transport is None or self._state == _CLOSED:
            return
        self._tls_begun = True
        try:
            upgraded = await self._loop.start_tls(transport, self, context, server_side=True)
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError) as exc:
            log.info("smtp_server.tls_failed", ip=self.peer_ip, error=str(exc)[:200])
            self.close()
            return
        if upgraded is None or self._state == _CLOSED:
            return
        self.transport = upgraded
        self.secure = True
        self.helo = None
        self.authenticated = False
        self._reset()
        self.on_tls_started()
        self._resume()

    def _auth(self, arg: str) -> None:
        if self.helo is None:
            self._write("503 5.5.1 Error: send EHLO first")
            return
        if self.authenticated:
            self._write("503 5.5.1 Already authenticated")
            return
        if self.mail_from is not None:
            self._write("503 5.5.1 Error: AUTH not allowed during a mail transaction")
            return
        if not self.auth_offered:
            self._write("538 5.7.11 Encryption required for requested authentication mechanism")
            return
        mechanism, _, initial = arg.partition(" ")
        mechanism = mechanism.upper()
        initial = initial.strip()
        if mechanism not in ("PLAIN", "LOGIN"):
            self._write("504 5.5.4 Unrecognized authentication type")
            return
        self._auth_mechanism = mechanism
        self._auth_login = None
        if not initial:
            self._state = _AUTH
            self._write("334 " if mechanism == "PLAIN" else "334 VXNlcm5hbWU6")
            return
        self._auth_step(initial.encode("ascii", "replace"))

    def _auth_step(self, line: bytes) -> None:
        self._state = _COMMAND
        if line.strip() == b"*":
            self._write("501 5.7.0 Authentication aborted")
            return
        try:
            decoded = b"" if line.strip() == b"=" else base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            self._write("501 5.5.2 Cannot decode response")
            return
        if self._auth_mechanism == "LOGIN" and self._auth_login is None:
            self._auth_login = decoded
            self._state = _AUTH
            self._write("334 UGFzc3dvcmQ6")
            return
        if self._auth_mechanism == "LOGIN":
            login, password = self._auth_login or b"", decoded
        else:
            parts = decoded.split(b"\0")
            if len(parts) != 3:
                self._write("501 5.5.2 Cannot decode response")
                return
            login, password = parts[1], parts[2]
        self._answer(self.on_auth(self._auth_mechanism, login, password), self._authed)

    def _authed(self, reply: str) -> None:
        if reply.startswith("235"):
            self.authenticated = True

    def _mail(self, arg: str) -> None:
        if self.helo is None:
            self._write("503 5.5.1 Error: send HELO first")
            return
        if self.mail_from is not None:
            self._write("503 5.5.1 Error: nested MAIL command")
            return
        found = _path(arg, "FROM:")
        if found is None:
            self._write("501 5.5.4 Syntax: MAIL FROM:<address>")
            return
        address, rest = found
        params: dict[str, str | None] = {}
        for param in rest.split():
            key, eq, given = param.partition("=")
            params[key.upper()] = given if eq else None
        for name, value in params.items():
            if name == "SIZE":
                if value is None or not value.isdigit():
                    self._write("501 5.5.4 Syntax: SIZE=<digits>")
                    return
                if int(value) > self.config.data_size_limit:
                    self._write("552 5.3.4 Message size exceeds fixed maximum message size")
                    return
            elif name == "BODY":
                if (value or "").upper() not in ("7BIT", "8BITMIME"):
                    self._write("501 5.5.4 BODY must be 7BIT or 8BITMIME")
                    return
            elif name == "SMTPUTF8":
                if value is not None:
                    self._write("501 5.5.4 SMTPUTF8 takes no value")
                    return
            elif name != "AUTH":  # RFC 4954 5: AUTH=<mailbox> may be ignored
                self._write("555 5.5.4 MAIL FROM parameters not recognized or not implemented")
                return
        self.mail_params = params

        def accept(reply: str) -> None:
            if reply.startswith("2"):
                self.mail_from = address

        self._answer(self.on_mail(address, params), accept)

    def _rcpt(self, arg: str) -> None:
        if self.mail_from is None:
            self._write("503 5.5.1 Error: need MAIL command")
            return
        found = _path(arg, "TO:")
        if found is None or not found[0]:
            self._write("501 5.5.4 Syntax: RCPT TO:<address>")
            return
        address, rest = found
        if rest.strip():
            self._write("555 5.5.4 RCPT TO parameters not recognized or not implemented")
            return

        def accept(reply: str) -> None:
            if reply.startswith("2"):
                self.rcpt_tos.append(address)

        self._answer(self.on_rcpt(address), accept)

    def _data(self, arg: str) -> None:
        if arg:
            self._write("501 5.5.4 Syntax: DATA")
        elif self.mail_from is None:
            self._write("503 5.5.1 Error: need MAIL command")
        elif not self.rcpt_tos:
            self._write("503 5.5.1 Error: need RCPT command")
        else:
            self._state = _DATA
            self._data_fresh = True
            self._dropped = 0
            self._scan = 0
            self._write("354 End data with <CR><LF>.<CR><LF>")

    # --- DATA

    def _read_data(self) -> bool:
        """Consume DATA from the buffer: True once the message ended."""
        buffer = self._buffer
        if self._data_fresh:
            if len(buffer) < 3 and b".\r\n".startswith(buffer):
                return False
            self._data_fresh = False
            if buffer[:3] == b".\r\n":
                del buffer[:3]
                self._end_data(b"")
                return True
        end = buffer.find(b"\r\n.\r\n", max(0, self._scan - 4))
        if end < 0:
            self._scan = len(buffer)
            if self._dropped + len(buffer) > self.config.data_size_limit and len(buffer) > 4:
                # Past the limit: keep only what the end marker may start in.
                self._dropped += len(buffer) - 4
                del buffer[:-4]
                self._scan = 4
            return False
        content = bytes(buffer[: end + 2])
        del buffer[: end + 5]
        self._end_data(content)
        return True

    def _end_data(self, content: bytes) -> None:
        self._state = _COMMAND
        mail_from, rcpt_tos = self.mail_from or "", self.rcpt_tos
        self._reset()
        if self._dropped or len(content) > self.config.data_size_limit:
            self._write(
                f"552 5.3.4 Message too big: at most {self.config.data_size_limit} bytes "
                "are accepted"
            )
            return
        if len(content) > DATA_LINE_CAP and _LONG_DATA_LINE.search(content):
            self._write(f"500 5.5.2 Line too long: at most {DATA_LINE_CAP} octets a line")
            return
        if b"\n." in content or content.startswith(b"."):
            if content.startswith(b".."):
                content = content[1:]
            content = content.replace(b"\r\n..", b"\r\n.")
        self._answer(self.on_data(mail_from, rcpt_tos, content), None)

    # --- replies that may wait

    def _answer(self, reply: Reply, then: Callable[[str], None] | None) -> None:
        if isinstance(reply, str):
            if then is not None:
                then(reply)
            self._write(reply)
            return
        self._state = _BUSY
        reply.add_done_callback(lambda done: self._answered(done, then))

    def _answered(self, done: asyncio.Future[str], then: Callable[[str], None] | None) -> None:
        if self._state == _CLOSED:
            return
        try:
            reply = done.result()
        except Exception:
            log.exception("smtp_server.hook_failed", ip=self.peer_ip)
            reply = "451 4.3.0 Internal error; try again later"
        if then is not None:
            then(reply)
        self._write(reply)
        if self._state == _BUSY:
            self._resume()
        else:
            self._flush()

    def _resume(self) -> None:
        self._state = _COMMAND
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        self._process()
        self._flush()

    def _reset(self) -> None:
        self.mail_from = None
        self.mail_params = {}
        self.rcpt_tos = []


def _path(arg: str, keyword: str) -> tuple[str, str] | None:
    """(address, parameters) of `FROM:<a@b> SIZE=1` / `TO:<a@b>`; `<>` is ''."""
    if arg[: len(keyword)].upper() != keyword:
        return None
    found = _PATH.fullmatch(arg, len(keyword))
    if found is None:
        return None
    angle, bare, rest = found.groups()
    if rest and not rest[0].isspace():
        return None
    return (angle if angle is not None else bare), rest


_COMMANDS: dict[str, Callable[[SmtpServerProtocol, str], None]] = {
    "EHLO": SmtpServerProtocol._ehlo,
    "HELO": SmtpServerProtocol._helo,
    "NOOP": SmtpServerProtocol._noop,
    "RSET": SmtpServerProtocol._rset,
    "QUIT": SmtpServerProtocol._quit,
    "VRFY": SmtpServerProtocol._vrfy,
    "HELP": SmtpServerProtocol._help,
    "STARTTLS": SmtpServerProtocol._starttls,
    "AUTH": SmtpServerProtocol._auth,
    "MAIL": SmtpServerProtocol._mail,
    "RCPT": SmtpServerProtocol._rcpt,
    "DATA": SmtpServerProtocol._data,
}


def then_reply(future: asyncio.Future[Any], reply: Callable[[Any], str]) -> asyncio.Future[str]:
    """A future of the reply `reply(result)` once `future` is done (an
    exception passes through), without a task."""
    out: asyncio.Future[str] = future.get_loop().create_future()

    def done(inner: asyncio.Future[Any]) -> None:
        if out.done():
            return
        if inner.cancelled():
            out.cancel()
            return
        exc = inner.exception()
        if exc is not None:
            out.set_exception(exc)
            return
        try:
            out.set_result(reply(inner.result()))
        except Exception as error:
            out.set_exception(error)

    future.add_done_callback(done)
    return out
