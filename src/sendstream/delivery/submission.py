"""The SMTP submission relay: applications that only speak SMTP (WordPress,
Django, monitoring) hand mail to Sendstream, and it goes through the same
pipeline as an API send (docs/smtp-relay.md).

    server = SubmissionServer(settings)
    await server.start()        # returns once both ports listen
    ...
    await server.stop()         # stops listening, finishes queued writes

Two listeners on the running event loop (`SubmissionProtocol`, on the lean
protocol of smtp_server.py; no thread): `smtp.submission_port` (587-style:
STARTTLS, required before anything but EHLO/HELO/NOOP/QUIT) and
`smtp.submission_tls_port` (465-style: implicit TLS). AUTH PLAIN or LOGIN
with an SMTP credential is required before MAIL (530 5.7.0) and offered
only over TLS (538 5.7.11 otherwise), unless
`smtp.submission_allow_plaintext_loopback` allows it on loopback;
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
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

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
from sendstream.delivery.smtp_server import Reply, SmtpConfig, SmtpServerProtocol, then_reply
from sendstream.delivery.submission_parse import Refused, parse_submission, smtp_reply
from sendstream.delivery.submission_writer import (
    TRANSIENT_ERRORS,
    UNAVAILABLE,
    SubmissionWriter,
    SuppressionLookup,
)

log = structlog.get_logger("sendstream.delivery.submission")

_LOGIN_REFUSED = {
    "invalid": "535 5.7.8 Authentication credentials invalid",
    "revoked": "535 5.7.8 This SMTP credential has been revoked; create a new one",
    "expired": "535 5.7.8 This SMTP credential has expired; create a new one",
}
_THROTTLED = "454 4.7.0 Too many failed authentication attempts; try again later"


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


class SubmissionProtocol(SmtpServerProtocol):
    """One connection. Its policy (TLS, trusted network) is set on connect
    and again after STARTTLS (RFC 3207: the session starts over, logged out)."""

    def __init__(self, relay: SubmissionServer, config: SmtpConfig, implicit_tls: bool) -> None:
        super().__init__(config, implicit_tls=implicit_tls)
        self.relay = relay
        self.login: SmtpLogin | None = None
        self.trusted = False

    def on_connect(self) -> None:
        self.login = None
        self.relay._connections.add(self)
        self.trusted = self.relay.is_trusted(self.peer_ip)
        plaintext_ok = self.trusted or (
            self.relay.smtp.submission_allow_plaintext_loopback and _is_loopback(self.peer_ip)
        )
        self.auth_offered = self.secure or plaintext_ok
        self.require_starttls = (
            self.config.tls_context is not None and not self.secure and not plaintext_ok
        )
        self.authenticated = self.trusted

    def on_close(self) -> None:
        self.relay._connections.discard(self)

    # --- AUTH

    def on_auth(self, mechanism: str, login: bytes, password: bytes) -> Reply:
        throttle = self.relay.throttle
        if throttle.blocked(self.peer_ip):
            log.warning("submission.auth_throttled", ip=self.peer_ip)
            self.drop()
            return _THROTTLED
        return asyncio.ensure_future(
            self._verify(login.decode("utf-8", "replace"), password.decode("utf-8", "replace"))
        )

    async def _verify(self, username: str, password: str) -> str:
        now = datetime.now(UTC)
        try:
            async with self.relay.database.session() as session:
                login = await smtp_credential_service.authenticate(
                    session, username, password, now=now
                )
                if smtp_credential_service.needs_touch(login, now):
                    await smtp_credential_service.record_use(
                        session, login, ip=self.peer_ip, now=now
                    )
        except LoginRefused as refused:
            self.relay.throttle.fail(self.peer_ip)
            log.info("submission.auth_failed", ip=self.peer_ip, reason=refused.reason)
            return _LOGIN_REFUSED[refused.reason]
        except TRANSIENT_ERRORS:
            return "454 4.7.0 Temporary authentication failure"
        self.login = login
        return "235 2.7.0 Authentication successful"

    # --- MAIL, RCPT, DATA

    def on_mail(self, address: str, params: dict[str, str | None]) -> Reply:
        if self.login is None and self.trusted:
            return asyncio.ensure_future(self._trusted_mail())
        return self._mail_reply()

    async def _trusted_mail(self) -> str:
        try:
            self.login = await self.relay.trusted_login()
        except LoginRefused as refused:
            log.error("submission.trusted_login_refused", reason=refused.reason)
            return "454 4.7.0 The trusted network's SMTP credential cannot be used"
        except TRANSIENT_ERRORS:
            return UNAVAILABLE
        return self._mail_reply()

    def _mail_reply(self) -> str:
        login = self.login
        if login is None:
            return "530 5.7.0 Authentication required"
        if not login.may_send():
            return "550 5.7.1 This SMTP credential lacks the messages:send scope"
        return "250 2.1.0 Ok"

    def on_rcpt(self, address: str) -> Reply:
        login = self.login
        if login is None:
            return "530 5.7.0 Authentication required"
        limit = self.relay.smtp.submission_max_recipients
        if len(self.rcpt_tos) >= limit:
            return f"452 4.5.3 Too many recipients: at most {limit} per message"
        try:
            key = normalize_address(address).key
        except InvalidAddress as exc:
            return smtp_reply(553, "5.1.3", f"<{address[:320]}> is not an address: {exc}")

        def verdict(reason: str | None) -> str:
            # Transactional mail still reaches an unsubscribed address; the
            # stream is known only at DATA, where the API's check decides.
            if reason is not None and blocks(reason, "transactional"):
                return smtp_reply(
                    550,
                    "5.7.1",
                    f"recipient_suppressed: <{address}> is on the workspace's suppression "
                    f"list ({reason})",
                )
            return "250 2.1.5 Ok"

        return then_reply(self.relay.suppressions.lookup(login.workspace_id, key), verdict)

    def on_data(self, mail_from: str, rcpt_tos: list[str], content: bytes) -> Reply:
        login = self.login
        if login is None:
            return "530 5.7.0 Authentication required"
        try:
            submission = parse_submission(content, rcpt_tos, mail_from)
        except Refused as refused:
            return refused.reply
        except Exception:
            log.exception("submission.parse_failed", size=len(content))
            return smtp_reply(554, "5.6.0", "The message could not be read as MIME")
        if submission.stream in ("transactional", "marketing") and not login.may_use_stream(
            submission.stream
        ):
            return smtp_reply(
                550,
                "5.7.1",
                f"stream_not_allowed: this SMTP credential may not send {submission.stream} mail",
            )
        return self.relay.writer.enqueue(login, submission)


class SubmissionServer:
    """The relay's listeners, its group writer and its RCPT-time lookups,
    all on the running event loop."""

    def __init__(self, settings: Settings | None = None, *, database: Database | None = None):
        self.settings = settings or get_settings()
        self.smtp: SmtpSettings = self.settings.smtp
        self._database = database
        self._servers: list[asyncio.Server] = []
        self._connections: set[SubmissionProtocol] = set()
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
        self._trusted_lookup: asyncio.Future[SmtpLogin] | None = None

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

    def trusted_login(self) -> asyncio.Future[SmtpLogin]:
        """The trusted network's login (`smtp.submission_trusted_username`),
        looked up anew for each MAIL, but MAILs that arrive while a lookup
        runs share it: with `smtp-source -d` style clients (a connection a
        message) that is one session and query for many messages, not one
        each. A lookup that starts after a revocation commits sees it."""
        running = self._trusted_lookup
        if running is None or running.done():
            running = asyncio.ensure_future(self._find_trusted_login())
            # Read here, so a refusal nobody waits for any more is not
            # reported as never retrieved.
            running.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._trusted_lookup = running
        # Shielded: one session dropping its connection must not cancel the
        # lookup the others wait for.
        return asyncio.shield(running)

    async def _find_trusted_login(self) -> SmtpLogin:
        username = self.smtp.submission_trusted_username or ""
        async with self.database.session() as db:
            return await smtp_credential_service.find_login(db, username)

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
        smtp = self.smtp
        loop = asyncio.get_running_loop()
        tls = _tls_context(smtp)
        self._writer = SubmissionWriter(self.settings, self.database)
        self._writer.start()
        self._suppressions = SuppressionLookup(self.database)
        hostname = smtp.hostname or socket.gethostname()

        def factory(implicit: bool) -> Callable[[], SubmissionProtocol]:
            config = SmtpConfig(
                hostname=hostname,
                ident="Sendstream submission",
                data_size_limit=smtp.submission_max_message_bytes,
                timeout=smtp.submission_timeout,
                tls_context=None if implicit else tls,
            )
            return lambda: SubmissionProtocol(self, config, implicit)

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
            # The replies of the last groups are in futures' callbacks: let
            # them write their 250s before the connections get 421.
            await asyncio.sleep(0)
        for connection in list(self._connections):
            connection.shutdown()
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
