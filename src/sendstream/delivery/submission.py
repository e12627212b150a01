"""The SMTP submission relay: applications that only speak SMTP (WordPress,
Django, monitoring) hand mail to Sendstream, and it goes through the same
pipeline as an API send (docs/smtp-relay.md).

    server = SubmissionServer(settings)
    await server.start()        # returns once both ports listen
    ...
    await server.stop()         # stops listening, finishes queued writes

Two listeners on the running event loop (aiosmtpd's `SMTP` protocol, no
thread): `smtp.submission_port` (587-style: STARTTLS, required before
anything but EHLO/NOOP/QUIT) and `smtp.submission_tls_port` (465-style:
implicit TLS). AUTH PLAIN or LOGIN with an SMTP credential is required
before MAIL (530 5.7.0) and offered only over TLS (538 5.7.11 otherwise),
unless `smtp.submission_allow_plaintext_loopback` allows it on loopback;
`smtp.submission_trusted_networks` (loopback only) logs a connection in as
one credential without AUTH. Bad credentials: 535 5.7.8; after
`submission_auth_failure_limit` failures from one IP address within the
window: 454 4.7.0 and the connection is closed.

RCPT: a malformed address 553 5.1.3; past `submission_max_recipients`
452 4.5.3; an address suppressed for a reason that stops every stream
(bounced, complained, manual ...) 550 5.7.1 at once (an `unsubscribed`
address is refused at DATA when the message is marketing, as the API does).
DATA: over SIZE 552 5.3.4; parsed (submission_parse.py) and queued in a
group transaction (submission_writer.py); 250 with the message ids only
after the commit; the API's refusals mapped to 5xx; database away 451 4.3.0.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import structlog
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword
from aiosmtpd.smtp import Session as SmtpSession

# Every table registered: a process running only the relay inserts messages,
# whose foreign keys SQLAlchemy resolves against the whole metadata.
import sendstream.models.all  # noqa: F401
from sendstream.contacts.addresses import InvalidAddress, normalize_address
from sendstream.core.db import Database, get_database
from sendstream.core.settings import Settings, SmtpSettings, get_settings
from sendstream.delivery.send_rules import blocks
from sendstream.delivery.smtp_credential_service import (
    LoginRefused,
    SmtpLogin,
    smtp_credential_service,
)
from sendstream.delivery.submission_parse import Refused, parse_submission, smtp_reply
from sendstream.delivery.submission_writer import (
    TRANSIENT_ERRORS,
    UNAVAILABLE,
    SubmissionWriter,
    SuppressionLookup,
)

log = structlog.get_logger("sendstream.delivery.submission")

# aiosmtpd's own replies that lack an enhanced status code (RFC 3463).
_REWORDED = {
    "530 Must issue a STARTTLS command first": "530 5.7.0 Must issue a STARTTLS command first",
    "503 Already authenticated": "503 5.5.1 Already authenticated",
}
_TOO_BIG = ("552 Error: Too much mail data", "552 Error: message size exceeds fixed maximum")
_LOGIN_REFUSED = {
    "invalid": "535 5.7.8 Authentication credentials invalid",
    "revoked": "535 5.7.8 This SMTP credential has been revoked; create a new one",
    "expired": "535 5.7.8 This SMTP credential has expired; create a new one",
}
_THROTTLED = "454 4.7.0 Too many failed authentication attempts; try again later"
# `<local@domain>` with nothing unusual in it, then the parameters: the
# common MAIL/RCPT argument, read without aiosmtpd's full RFC 5322 parser.
_PLAIN_PATH = re.compile(r"<([^<>\s\"(),:;\\@\[\]]+@[^<>\s\"(),:;\\@\[\]]+)>((?:\s.*)?)", re.S)


def _capture(
    server: SMTP, session: SmtpSession, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    """aiosmtpd's authenticator is synchronous; the check needs the
    database, so this only hands the decoded login on (see `_verify`)."""
    return AuthResult(success=True, handled=False, auth_data=data)


class AuthThrottle:
    """Failed AUTH attempts per IP address, in a sliding window (per process)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, ip: str, now: float) -> deque[float]:
        found = self._failures.get(ip)
        if found is None:
            return deque()
        while found and found[0] <= now - self.window:
            found.popleft()
        if not found:
            del self._failures[ip]
        return found

    def blocked(self, ip: str) -> bool:
        return len(self._recent(ip, time.monotonic())) >= self.limit

    def fail(self, ip: str) -> None:
        now = time.monotonic()
        if len(self._failures) > 100_000:  # a flood of addresses: forget the stale ones
            for known in list(self._failures):
                self._recent(known, now)
        self._failures.setdefault(ip, deque()).append(now)


class SubmissionSMTP(SMTP):
    """One connection. Per-connection policy (TLS, trusted network) is set
    in `connection_made`, which runs again after STARTTLS (RFC 3207: the
    session starts over, logged out)."""

    def __init__(
        self, relay: SubmissionServer, handler: SubmissionHandler, implicit_tls: bool, **kw: Any
    ) -> None:
        super().__init__(handler, **kw)
        self.relay = relay
        self.implicit_tls = implicit_tls
        self.login: SmtpLogin | None = None
        self.trusted = False
        self.client_ip = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.session is None:  # never: aiosmtpd made it above
            return
        self.login = None
        peer = self.session.peer
        self.client_ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self.relay._connections.add(self)
        loopback = _is_loopback(self.client_ip)
        self.trusted = self.relay.is_trusted(self.client_ip)
        plaintext_ok = self.trusted or (
            loopback and self.relay.smtp.submission_allow_plaintext_loopback
        )
        secure = self.implicit_tls or self._tls_protocol is not None
        self._auth_require_tls = not (secure or plaintext_ok)
        self.require_starttls = bool(self.tls_context) and not secure and not plaintext_ok
        if self.trusted:
            self.session.authenticated = True

    def connection_lost(self, error: Exception | None) -> None:
        self.relay._connections.discard(self)
        super().connection_lost(error)

    async def push(self, status: Any) -> None:
        if isinstance(status, str):
            if status.startswith(_TOO_BIG):
                status = smtp_reply(
                    552,
                    "5.3.4",
                    f"Message too big: at most {self.data_size_limit} bytes are accepted",
                )
            else:
                status = _REWORDED.get(status, status)
        await super().push(status)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        plain = _PLAIN_PATH.fullmatch(arg.strip())
        if plain is not None:
            return plain.group(1), plain.group(2)
        return super()._getaddr(arg)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._verify(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._verify(await super().auth_LOGIN(_, args))

    async def _verify(self, captured: AuthResult) -> AuthResult:
        data = captured.auth_data
        if not captured.success or not isinstance(data, LoginPassword):
            return captured
        throttle = self.relay.throttle
        if throttle.blocked(self.client_ip):
            log.warning("submission.auth_throttled", ip=self.client_ip)
            await self.push(_THROTTLED)
            if self.transport is not None:
                self.transport.close()
            return AuthResult(success=False, handled=True)
        username = data.login.decode("utf-8", "replace")
        password = data.password.decode("utf-8", "replace")
        now = datetime.now(UTC)
        try:
            async with self.relay.database.session() as session:
                login = await smtp_credential_service.authenticate(
                    session, username, password, now=now
                )
                if smtp_credential_service.needs_touch(login, now):
                    await smtp_credential_service.record_use(
                        session, login, ip=self.client_ip, now=now
                    )
        except LoginRefused as refused:
            throttle.fail(self.client_ip)
            log.info("submission.auth_failed", ip=self.client_ip, reason=refused.reason)
            return AuthResult(success=False, handled=False, message=_LOGIN_REFUSED[refused.reason])
        except TRANSIENT_ERRORS:
            return AuthResult(
                success=False, handled=False, message="454 4.7.0 Temporary authentication failure"
            )
        self.login = login
        return AuthResult(success=True, auth_data=login.username)


class SubmissionHandler:
    """aiosmtpd hooks: what each command means for the relay."""

    def __init__(self, relay: SubmissionServer) -> None:
        self.relay = relay

    async def handle_EHLO(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        responses.insert(len(responses) - 1, "250-ENHANCEDSTATUSCODES")
        return responses

    async def handle_MAIL(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        server = cast(SubmissionSMTP, server)
        if server.login is None and server.trusted:
            username = self.relay.smtp.submission_trusted_username or ""
            try:
                async with self.relay.database.session() as db:
                    server.login = await smtp_credential_service.find_login(db, username)
            except LoginRefused as refused:
                log.error("submission.trusted_login_refused", reason=refused.reason)
                return "454 4.7.0 The trusted network's SMTP credential cannot be used"
            except TRANSIENT_ERRORS:
                return UNAVAILABLE
        login = server.login
        if login is None:
            return "530 5.7.0 Authentication required"
        if not login.may_send():
            return "550 5.7.1 This SMTP credential lacks the messages:send scope"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        server = cast(SubmissionSMTP, server)
        login = server.login
        if login is None:
            return "530 5.7.0 Authentication required"
        if len(envelope.rcpt_tos) >= self.relay.smtp.submission_max_recipients:
            return (
                f"452 4.5.3 Too many recipients: at most "
                f"{self.relay.smtp.submission_max_recipients} per message"
            )
        try:
            key = normalize_address(address).key
        except InvalidAddress as exc:
            return smtp_reply(553, "5.1.3", f"<{address[:320]}> is not an address: {exc}")
        try:
            reason = await self.relay.suppressions.reason(login.workspace_id, key)
        except TRANSIENT_ERRORS:
            return UNAVAILABLE
        # Transactional mail still reaches an unsubscribed address; the
        # stream is known only at DATA, where the API's check decides.
        if reason is not None and blocks(reason, "transactional"):
            return smtp_reply(
                550,
                "5.7.1",
                f"recipient_suppressed: <{address}> is on the workspace's suppression list "
                f"({reason})",
            )
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        server = cast(SubmissionSMTP, server)
        login = server.login
        if login is None:
            return "530 5.7.0 Authentication required"
        raw = envelope.original_content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        try:
            submission = parse_submission(
                raw, [str(r) for r in envelope.rcpt_tos], str(envelope.mail_from or "")
            )
        except Refused as refused:
            return refused.reply
        except Exception:
            log.exception("submission.parse_failed", size=len(raw))
            return smtp_reply(554, "5.6.0", "The message could not be read as MIME")
        if submission.stream in ("transactional", "marketing") and not login.may_use_stream(
            submission.stream
        ):
            return smtp_reply(
                550,
                "5.7.1",
                f"stream_not_allowed: this SMTP credential may not send {submission.stream} mail",
            )
        return await self.relay.writer.submit(login, submission)


class SubmissionServer:
    """The relay's listeners, its group writer and its RCPT-time lookups,
    all on the running event loop."""

    def __init__(self, settings: Settings | None = None, *, database: Database | None = None):
        self.settings = settings or get_settings()
        self.smtp: SmtpSettings = self.settings.smtp
        self._database = database
        self._servers: list[asyncio.Server] = []
        self._connections: set[SubmissionSMTP] = set()
        self._trusted = _loopback_networks(self.smtp.submission_trusted_networks)
        if self._trusted and not self.smtp.submission_trusted_username:
            raise ValueError(
                "smtp.submission_trusted_networks needs smtp.submission_trusted_username"
            )
        self.throttle = AuthThrottle(
            self.smtp.submission_auth_failure_limit, self.smtp.submission_auth_failure_window
        )
        # Bound after start() (a configured 0 becomes the port picked).
        self.port: int | None = None
        self.tls_port: int | None = None
        self._writer: SubmissionWriter | None = None
        self._suppressions: SuppressionLookup | None = None

    @property
    def database(self) -> Database:
        if self._database is None:
            self._database = get_database()
        return self._database

    @property
    def writer(self) -> SubmissionWriter:
        if self._writer is None:
            raise RuntimeError("start() the submission server first")
        return self._writer

    @property
    def suppressions(self) -> SuppressionLookup:
        if self._suppressions is None:
            raise RuntimeError("start() the submission server first")
        return self._suppressions

    def is_trusted(self, ip: str) -> bool:
        if not self._trusted or not ip:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self._trusted)

    async def start(self) -> None:
        """Listen on the configured ports; returns once both accept connections."""
        # aiosmtpd logs every command and address at INFO: costly per message
        # and personal data in the logs. Ours say what matters.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        smtp = self.smtp
        loop = asyncio.get_running_loop()
        tls = _tls_context(smtp)
        self._writer = SubmissionWriter(self.settings, self.database)
        self._writer.start()
        self._suppressions = SuppressionLookup(self.database)
        handler = SubmissionHandler(self)
        hostname = smtp.hostname or socket.gethostname()
        common: dict[str, Any] = {
            "data_size_limit": smtp.submission_max_message_bytes,
            "enable_SMTPUTF8": True,
            "hostname": hostname,
            "ident": "Sendstream submission",
            "timeout": smtp.submission_timeout,
            "auth_required": True,
            "auth_require_tls": True,
            "authenticator": _capture,
            "loop": loop,
        }

        def factory(implicit: bool) -> Callable[[], SubmissionSMTP]:
            context = None if implicit else tls
            return lambda: SubmissionSMTP(
                self, handler, implicit, tls_context=context, require_starttls=True, **common
            )

        try:
            if smtp.submission_port is not None:
                server = await loop.create_server(
                    factory(False),
                    host=smtp.submission_host,
                    port=smtp.submission_port,
                    reuse_port=smtp.submission_reuse_port or None,
                )
                self._servers.append(server)
                self.port = server.sockets[0].getsockname()[1]
            if smtp.submission_tls_port is not None:
                if tls is None:
                    log.warning("submission.no_tls", reason="smtp.tls_cert_file is not set")
                else:
                    server = await loop.create_server(
                        factory(True),
                        host=smtp.submission_host,
                        port=smtp.submission_tls_port,
                        ssl=tls,
                        reuse_port=smtp.submission_reuse_port or None,
                    )
                    self._servers.append(server)
                    self.tls_port = server.sockets[0].getsockname()[1]
        except BaseException:
            await self.stop()
            raise
        log.info("submission.listening", port=self.port, tls_port=self.tls_port)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop listening; write (and answer) what was accepted, for up to
        `grace` seconds; then close the connections. Messages arriving
        meanwhile get 421 4.3.2 (the client tries again later)."""
        for server in self._servers:
            server.close()
        if self._writer is not None:
            await self._writer.stop(grace)
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), grace)
        self._servers.clear()
        if self._suppressions is not None:
            await self._suppressions.stop()
        self._writer = None
        self._suppressions = None


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def _loopback_networks(
    networks: list[str],
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = []
    for text in networks:
        network = ipaddress.ip_network(text, strict=False)
        if not (network.network_address.is_loopback and network.broadcast_address.is_loopback):
            raise ValueError(
                f"smtp.submission_trusted_networks: {text} is not a loopback network; "
                "connections from elsewhere must authenticate"
            )
        out.append(network)
    return out


def _tls_context(smtp: SmtpSettings) -> ssl.SSLContext | None:
    if smtp.tls_cert_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(smtp.tls_cert_file, smtp.tls_key_file)
    return context
