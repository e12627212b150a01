"""Opening an authenticated IMAP session for a mailbox: the host vetted,
TLS verified, then LOGIN (password) or XOAUTH2.

OAuth2: with a token URL and a refresh token, the access token is obtained
with the refresh token (RFC 6749 6) when there is none, when it expires
within a minute, or when the server refused it (AUTHENTICATIONFAILED: it
was revoked or expired early); the new token (and a rotated refresh token)
is saved encrypted at once, in its own transaction, so a refresh is never
lost. Without a token URL the stored access token is used as it is.

Host vetting: like webhook URLs (webhooks/ssrf.py), a mailbox's host and
token URL must resolve to public addresses unless
`bounces.imap_allow_private_hosts`; the IMAP connection goes to the vetted
address, while TLS checks the certificate against the host name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx

from sendstream.bounces.imap_client import ImapAuthenticationFailed, ImapClient, ImapError
from sendstream.core import secrets
from sendstream.core.settings import Settings
from sendstream.models.imap_mailbox import ImapMailbox
from sendstream.webhooks.ssrf import forbidden_reason

# An access token this close to its expiry is refreshed before use.
TOKEN_MARGIN = timedelta(seconds=60)
TOKEN_TIMEOUT_SECONDS = 20.0


def secret_context(column: str, mailbox_id: uuid.UUID) -> str:
    return f"imap_mailboxes.{column}:{mailbox_id}"


class ImapSetupError(ImapError):
    """The mailbox's settings cannot work as they are (no credentials, a
    forbidden host, a token endpoint that refuses): an operator must act."""


@dataclass(frozen=True, slots=True)
class MailboxConfig:
    """A mailbox row's settings, detached from any session."""

    id: uuid.UUID
    workspace_id: uuid.UUID | None
    host: str
    port: int
    tls: str
    ca_certificates: str | None
    username: str
    auth: str
    password_encrypted: bytes | None
    oauth_token_url: str | None
    oauth_client_id: str | None
    oauth_client_secret_encrypted: bytes | None
    oauth_refresh_token_encrypted: bytes | None
    oauth_scope: str | None
    access_token_encrypted: bytes | None
    access_token_expires_at: datetime | None
    folder: str
    processed_action: str
    processed_folder: str | None
    processed_flag: str | None
    mode: str
    poll_interval: int
    uidvalidity: int | None
    last_uid: int

    @classmethod
    def of(cls, row: ImapMailbox) -> MailboxConfig:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})

    def secret(self, column: str, token: bytes | None, settings: Settings) -> str | None:
        if token is None:
            return None
        return secrets.decrypt(token, secret_context(column, self.id), settings=settings).decode()


# Saves (access token encrypted, expiry, rotated refresh token encrypted or None).
SaveTokens = Callable[[bytes, datetime | None, bytes | None], Awaitable[None]]


def ssl_context(config: MailboxConfig) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if config.ca_certificates:
        context.load_verify_locations(cadata=config.ca_certificates)
    return context


async def vetted_address(host: str, port: int, settings: Settings) -> str:
    """An address of `host` the deployment allows connecting to."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ImapError(f"cannot resolve {host}: {exc}") from exc
    reasons: list[str] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        reason = None if settings.bounces.imap_allow_private_hosts else forbidden_reason(address)
        if reason is None:
            return str(address)
        reasons.append(f"{address} ({reason})")
    raise ImapSetupError(
        f"{host} resolves only to addresses mailboxes may not reach: {', '.join(reasons)} "
        "(bounces.imap_allow_private_hosts allows them)"
    )


async def refresh_access_token(config: MailboxConfig, settings: Settings, save: SaveTokens) -> str:
    url = config.oauth_token_url
    assert url is not None  # noqa: S101  checked by the caller
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ImapSetupError(f"the OAuth2 token URL {url!r} is not an http(s) URL")
    await vetted_address(parts.hostname, parts.port or 443, settings)
    refresh = config.secret(
        "oauth_refresh_token_encrypted", config.oauth_refresh_token_encrypted, settings
    )
    form = {"grant_type": "refresh_token", "refresh_token": refresh or ""}
    if config.oauth_client_id:
        form["client_id"] = config.oauth_client_id
    client_secret = config.secret(
        "oauth_client_secret_encrypted", config.oauth_client_secret_encrypted, settings
    )
    if client_secret:
        form["client_secret"] = client_secret
    if config.oauth_scope:
        form["scope"] = config.oauth_scope
    try:
        async with httpx.AsyncClient(timeout=TOKEN_TIMEOUT_SECONDS) as http:
            response = await http.post(url, data=form, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise ImapError(f"the OAuth2 token endpoint could not be reached: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
        error = body.get("error") if isinstance(body, dict) else None
        raise ImapSetupError(
            f"the OAuth2 token endpoint refused the refresh token: HTTP {response.status_code}"
            + (f" {error}" if error else "")
        )
    token = str(body["access_token"])
    expires_in = body.get("expires_in")
    expires_at = (
        datetime.now(UTC) + timedelta(seconds=float(expires_in))
        if isinstance(expires_in, int | float | str) and str(expires_in).replace(".", "").isdigit()
        else None
    )
    rotated = body.get("refresh_token")
    await save(
        secrets.encrypt(token.encode(), secret_context("access_token_encrypted", config.id)),
        expires_at,
        secrets.encrypt(
            str(rotated).encode(), secret_context("oauth_refresh_token_encrypted", config.id)
        )
        if rotated and rotated != refresh
        else None,
    )
    return token


async def access_token(
    config: MailboxConfig, settings: Settings, save: SaveTokens, *, force_refresh: bool
) -> tuple[str, bool]:
    """(token, whether it came from the refresh just now)."""
    can_refresh = bool(config.oauth_token_url and config.oauth_refresh_token_encrypted)
    cached = config.secret("access_token_encrypted", config.access_token_encrypted, settings)
    fresh = config.access_token_expires_at is None or (
        config.access_token_expires_at - TOKEN_MARGIN > datetime.now(UTC)
    )
    if cached and (not can_refresh or (fresh and not force_refresh)):
        return cached, False
    if not can_refresh:
        raise ImapSetupError("the mailbox has no OAuth2 access token and no way to get one")
    return await refresh_access_token(config, settings, save), True


async def open_session(
    config: MailboxConfig, settings: Settings, save_tokens: SaveTokens
) -> ImapClient:
    """A connected, authenticated client (folder not selected yet)."""
    address = await vetted_address(config.host, config.port, settings)
    bounces = settings.bounces
    force = False
    for _attempt in range(2):
        client = ImapClient(
            config.host,
            config.port,
            tls=config.tls,
            ssl_context=ssl_context(config),
            timeout=bounces.imap_command_timeout,
            max_literal=bounces.imap_max_message_bytes + 65536,
            address=address,
        )
        try:
            await client.connect()
            if config.auth == "password":
                password = config.secret("password_encrypted", config.password_encrypted, settings)
                if password is None:
                    raise ImapSetupError("the mailbox has no password")
                await client.login(config.username, password)
                return client
            token, refreshed = await access_token(
                config, settings, save_tokens, force_refresh=force
            )
            try:
                await client.xoauth2(config.username, token)
                return client
            except ImapAuthenticationFailed:
                if refreshed or not (
                    config.oauth_token_url and config.oauth_refresh_token_encrypted
                ):
                    raise
                force = True  # the cached token was refused: refresh it and try once more
            await client.close()
        except BaseException:
            await client.close()
            raise
    raise ImapError("XOAUTH2 was refused with a freshly refreshed token")  # pragma: no cover
