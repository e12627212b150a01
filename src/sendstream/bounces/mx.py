"""The inbound MX of the bounce domain (aiosmtpd, on the running event loop).

It takes mail for exactly three kinds of address, and refuses every other
one at RCPT time (550 5.1.1), so the MX is no open relay and no spam sink:

* VERP return paths on `delivery.bounce_domain` whose token verifies
  (delivery/verp.py); a forged or mangled token is refused like an unknown
  user, before any data is read;
* List-Unsubscribe mailto addresses on `tracking.links.mailto_domain` (the
  MAC is checked when the request is processed, against the message);
* `postmaster@` and `abuse@` the bounce domain (and bare `postmaster`,
  RFC 5321 4.5.1): feedback-loop complaints arrive there;
* addresses on a workspace's inbound domain (verified, or unverified where
  `bounces.inbound_allow_unverified` allows) that match one of its enabled
  routes (inbound_routing.py; this kind needs the database: when it cannot
  be reached the answer is 451 4.3.0).

Mail for inbound addresses is stored apart from bounce mail, one row per
workspace (with our `Received:` trace header on top, which SPF reads back)
and processed by `inbound.process`, never by the bounce classifier.

DATA is stored with `inbound_service.accept` in its own transaction, and
250 is answered only after that commit; when the database cannot be
reached the answer is 451 4.3.0 and the sending MTA retries, so nothing is
lost. Limits: message size (SIZE advertised, bigger mail 552 5.3.4; data
past the limit is read and thrown away, never buffered), recipients per
message (452 4.5.3), connections at once (421 4.7.0), idle time per
command. STARTTLS is offered when `smtp.tls_cert_file` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
import weakref
from email.utils import formatdate
from typing import Any, Final

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from sendstream.bounces.inbound_mail import received_header
from sendstream.bounces.inbound_routing import inbound_routing_service
from sendstream.bounces.intake import inbound_service
from sendstream.core.db import Database, get_database
from sendstream.core.settings import Settings, get_settings
from sendstream.delivery.verp import parse_verp
from sendstream.tracking.links import mailto_domain
from sendstream.tracking.tokens import read_mailto_local_part

log = structlog.get_logger("sendstream.bounces.mx")

ROLE_ADDRESSES: Final = frozenset({"postmaster", "abuse"})
TOO_BIG: Final = "552 5.3.4 Message too big for this system"
UNKNOWN_USER: Final = "550 5.1.1 Recipient address rejected: no such user here"
TOO_MANY_RECIPIENTS: Final = "452 4.5.3 Too many recipients"
TOO_MANY_CONNECTIONS: Final = b"421 4.7.0 Too many connections; try again later\r\n"
TRY_LATER: Final = "451 4.3.0 Temporary failure storing the message; try again later"
LOOKUP_LATER: Final = "451 4.3.0 Temporary failure looking up the recipient; try again later"


def check_recipient(address: str, settings: Settings) -> str | None:
    """None when the MX takes mail for `address`, else the SMTP reply
    refusing it. No database: every accepted kind is known by its form or
    by a token that carries its own proof."""
    local, at, domain = address.rpartition("@")
    if not at:
        return None if address.lower() == "postmaster" else UNKNOWN_USER
    domain = domain.lower().rstrip(".")
    bounce_domain = settings.delivery.bounce_domain.lower()
    if domain == bounce_domain:
        if local.lower() in ROLE_ADDRESSES:
            return None
        if parse_verp(local, settings) is not None:
            return None
    if domain == mailto_domain(settings).lower() and read_mailto_local_part(local) is not None:
        return None
    return UNKNOWN_USER


class MxHandler:
    """aiosmtpd hooks: who may be mailed, and where mail goes."""

    def __init__(self, server: MxServer) -> None:
        self.server = server
        # Per transaction: recipients taken for an inbound route -> workspace.
        self._routed: weakref.WeakKeyDictionary[Envelope, dict[str, uuid.UUID]] = (
            weakref.WeakKeyDictionary()
        )

    async def handle_RCPT(
        self,
        smtp: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        settings = self.server.settings
        if len(envelope.rcpt_tos) >= settings.smtp.mx_max_recipients:
            return TOO_MANY_RECIPIENTS
        refused = check_recipient(address, settings)
        if refused == UNKNOWN_USER:
            try:
                async with self.server.database.session() as db:
                    found = await inbound_routing_service.route_for(db, address, settings)
            except Exception:
                log.exception("mx.route_lookup_failed", peer=_peer(session))
                return LOOKUP_LATER
            if found is not None:
                self._routed.setdefault(envelope, {})[address] = found[0].workspace_id
                refused = None
        if refused is not None:
            log.info("mx.rcpt_refused", rcpt=address[:320], peer=_peer(session))
            return refused
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        mail_from = envelope.mail_from
        routed = self._routed.pop(envelope, {})
        bounce_rcpts = [r for r in envelope.rcpt_tos if r not in routed]
        by_workspace: dict[uuid.UUID, list[str]] = {}
        for rcpt in envelope.rcpt_tos:
            if rcpt in routed:
                by_workspace.setdefault(routed[rcpt], []).append(rcpt)
        try:
            async with self.server.database.session() as db:
                ids: list[uuid.UUID] = []
                if bounce_rcpts:
                    ids.append(
                        await inbound_service.accept(
                            db, bytes(raw), source="mx", mail_from=mail_from, rcpt_to=bounce_rcpts
                        )
                    )
                if by_workspace:
                    trace = received_header(
                        session.host_name,
                        _peer(session),
                        self.server.settings.smtp.hostname
                        or self.server.settings.delivery.bounce_domain,
                        formatdate(usegmt=True),
                    )
                    for workspace_id, rcpts in by_workspace.items():
                        ids.append(
                            await inbound_service.accept_routed(
                                db,
                                trace + bytes(raw),
                                mail_from=mail_from,
                                rcpt_to=rcpts,
                                workspace_id=workspace_id,
                            )
                        )
                inbound_id = ids[0]
        except Exception:
            # The sender keeps the mail and tries again: nothing is lost.
            log.exception("mx.store_failed", peer=_peer(session), size=len(raw))
            return TRY_LATER
        log.info(
            "mx.accepted",
            inbound_message_id=str(inbound_id),
            size=len(raw),
            rcpt_count=len(envelope.rcpt_tos),
            peer=_peer(session),
        )
        return f"250 2.0.0 OK: queued as {inbound_id}"


class MxSMTP(SMTP):
    """One connection: counted against the connection limit (STARTTLS
    runs `connection_made` again on the same connection), and aiosmtpd's
    size refusals worded with their enhanced status code."""

    def __init__(self, server: MxServer, handler: MxHandler, **kw: Any) -> None:
        super().__init__(handler, **kw)
        self.mx = server
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        connections = self.mx._connections
        if self not in connections and len(connections) >= self.mx.settings.smtp.mx_max_connections:
            self._refused = True
            log.warning("mx.too_many_connections", limit=self.mx.settings.smtp.mx_max_connections)
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(TOO_MANY_CONNECTIONS)
            transport.close()
            return
        connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        self.mx._connections.discard(self)
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        return super().eof_received()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and status.startswith("552 Error"):
            status = TOO_BIG
        await super().push(status)


class MxServer:
    """The MX listener on the running event loop: `await start()` returns
    once it accepts connections (`port` is then the bound port), `await
    stop()` closes it and its connections."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        database: Database | None = None,
        port: int | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self._database = database
        self._port = self.settings.smtp.mx_port if port is None else port
        self._server: asyncio.Server | None = None
        self._connections: set[MxSMTP] = set()
        self.port: int | None = None

    @property
    def database(self) -> Database:
        if self._database is None:
            self._database = get_database()
        return self._database

    @property
    def host(self) -> str:
        return self.settings.smtp.mx_host

    async def start(self) -> None:
        smtp = self.settings.smtp
        loop = asyncio.get_running_loop()
        handler = MxHandler(self)
        tls = _tls_context(self.settings)
        hostname = smtp.hostname or self.settings.delivery.bounce_domain

        def factory() -> MxSMTP:
            return MxSMTP(
                self,
                handler,
                data_size_limit=smtp.mx_max_message_bytes,
                enable_SMTPUTF8=True,
                hostname=hostname,
                ident="Sendstream MX",
                tls_context=tls,
                require_starttls=False,
                timeout=smtp.mx_timeout,
                loop=loop,
            )

        self._server = await loop.create_server(factory, host=smtp.mx_host, port=self._port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("mx.listening", host=smtp.mx_host, port=self.port, starttls=tls is not None)

    async def stop(self, grace: float = 10.0) -> None:
        if self._server is None:
            return
        self._server.close()
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), grace)
        self._server = None
        self._connections.clear()


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    smtp = settings.smtp
    if smtp.tls_cert_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(smtp.tls_cert_file, smtp.tls_key_file)
    return context


def _peer(session: Session) -> str | None:
    peer = session.peer
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer) if peer else None
