"""The rules of SMTP credentials, the logins of the submission relay.

- Created through the API: a generated password (256 random bits) shown once
  and stored only as a SHA-256 hash, like API keys (no dictionary to guess
  from, so a slow hash would only cost CPU on every AUTH); the username is
  generated (`ss-smtp-<12 hex>`) or chosen, unique across the installation
  and compared case-insensitively.
- Scoped like API keys: `messages:send`, which the creating key must hold
  itself; optionally limited to some streams.
- `authenticate` is what AUTH PLAIN/LOGIN calls; `live_ids` is checked again
  in the transaction that queues a message, so a credential revoked while a
  connection is open sends nothing more.
- Revoking is at once and final; the row stays for the audit trail.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.pagination import PageParams, cursor_uuid, trim_page
from sendstream.delivery.smtp_credential_errors import (
    InvalidSmtpCredential,
    SmtpCredentialNotFound,
    SmtpUsernameTaken,
    UnknownSmtpScope,
)
from sendstream.delivery.smtp_credential_repository import smtp_credential_repository
from sendstream.delivery.smtp_credential_schemas import SmtpCredentialCreate
from sendstream.models.smtp_credential import SmtpCredential
from sendstream.workspaces import scopes as scope_rules
from sendstream.workspaces.errors import ScopeEscalation

# The scopes an SMTP login can use; sending is all it does.
SMTP_SCOPES: tuple[str, ...] = ("messages:send",)
SEND_SCOPE = "messages:send"
USERNAME_PREFIX = "ss-smtp-"
# `last_used_at` is advisory: at most one write per credential per interval.
LAST_USED_INTERVAL = timedelta(minutes=1)
# Compared against when the username is unknown, so both failures cost the same.
_NO_HASH = "0" * 64


def _utcnow() -> datetime:
    return datetime.now(UTC)


def hash_smtp_password(username: str, password: str) -> str:
    # The username is part of what is hashed, so a hash copied onto another
    # row does not log that row in.
    return hashlib.sha256(f"{username}\x00{password}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SmtpLogin:
    """An authenticated SMTP session's identity."""

    credential_id: uuid.UUID
    workspace_id: uuid.UUID
    username: str
    scopes: frozenset[str]
    allowed_streams: frozenset[str] | None
    last_used_at: datetime | None

    def may_send(self) -> bool:
        return scope_rules.grants(self.scopes, SEND_SCOPE)

    def may_use_stream(self, stream: str) -> bool:
        return self.allowed_streams is None or stream in self.allowed_streams


class LoginRefused(Exception):
    """AUTH failed; `reason` is `invalid`, `revoked` or `expired`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SmtpCredentialService:
    async def create_credential(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        body: SmtpCredentialCreate,
        *,
        granted_by: Sequence[str] | None = None,
    ) -> tuple[SmtpCredential, str]:
        """The new credential and its password, which exists only in this
        return value. `granted_by`: the creating key's scopes (None: an
        operator on the CLI)."""
        unknown = sorted({s for s in body.scopes if s not in SMTP_SCOPES})
        if unknown:
            raise UnknownSmtpScope(unknown, SMTP_SCOPES)
        wanted = [s for s in SMTP_SCOPES if s in set(body.scopes)]
        if granted_by is not None:
            missing = scope_rules.ungranted(granted_by, wanted)
            if missing:
                raise ScopeEscalation(missing)
        expires_at = body.expires_at
        if expires_at is not None:
            if expires_at.tzinfo is None:
                expires_at = expires_at.replace(tzinfo=UTC)
            if expires_at <= _utcnow():
                raise InvalidSmtpCredential(
                    "expires_at: must be in the future.", code="invalid_expiry"
                )
        if body.username is not None:
            username = body.username.lower()
            if username.startswith(USERNAME_PREFIX):
                raise InvalidSmtpCredential(
                    f"username: names starting with {USERNAME_PREFIX!r} are generated ones; "
                    "choose another or leave `username` out.",
                    code="invalid_username",
                )
            if await smtp_credential_repository.username_taken(session, username):
                raise SmtpUsernameTaken(username)
        else:
            username = USERNAME_PREFIX + secrets.token_hex(6)
        password = secrets.token_urlsafe(32)
        streams = body.allowed_streams
        credential = SmtpCredential(
            workspace_id=workspace_id,
            name=body.name,
            username=username,
            secret_hash=hash_smtp_password(username, password),
            scopes=wanted,
            allowed_streams=sorted(set(streams)) if streams is not None else None,
            expires_at=expires_at,
        )
        try:
            async with session.begin_nested():
                session.add(credential)
                await session.flush()
        except IntegrityError:
            raise SmtpUsernameTaken(username) from None
        await session.refresh(credential)
        return credential, password

    async def get_credential(
        self, session: AsyncSession, workspace_id: uuid.UUID, credential_id: uuid.UUID
    ) -> SmtpCredential:
        found = await smtp_credential_repository.get(session, workspace_id, credential_id)
        if found is None:
            raise SmtpCredentialNotFound(str(credential_id))
        return found

    async def list_credentials(
        self, session: AsyncSession, workspace_id: uuid.UUID, page: PageParams
    ) -> tuple[list[SmtpCredential], str | None]:
        rows = await smtp_credential_repository.page(
            session, workspace_id, after=cursor_uuid(page.cursor), limit=page.limit + 1
        )
        return trim_page(rows, page.limit, lambda row: {"id": str(row.id)})

    async def revoke_credential(
        self, session: AsyncSession, workspace_id: uuid.UUID, credential_id: uuid.UUID
    ) -> SmtpCredential:
        """Revoke at once; revoking a revoked credential changes nothing."""
        credential = await self.get_credential(session, workspace_id, credential_id)
        if credential.revoked_at is None:
            credential.revoked_at = _utcnow()
            await session.flush()
            await session.refresh(credential)
        return credential

    # --- the relay

    async def authenticate(
        self,
        session: AsyncSession,
        username: str,
        password: str,
        *,
        now: datetime | None = None,
    ) -> SmtpLogin:
        """The login for a username and password, or `LoginRefused`."""
        username = username.strip().lower()
        found = None
        if 3 <= len(username) <= 64:
            found = await smtp_credential_repository.find_by_username(session, username)
        presented = hash_smtp_password(username, password)
        # Constant-time either way, so timing does not tell a known username.
        matches = hmac.compare_digest(presented, found.secret_hash if found else _NO_HASH)
        if found is None or not matches:
            raise LoginRefused("invalid")
        return self._checked(found, now or _utcnow())

    async def find_login(
        self, session: AsyncSession, username: str, *, now: datetime | None = None
    ) -> SmtpLogin:
        """The login of a trusted network (no password: see
        `smtp.submission_trusted_networks`), or `LoginRefused`."""
        found = await smtp_credential_repository.find_by_username(session, username.lower())
        if found is None:
            raise LoginRefused("invalid")
        return self._checked(found, now or _utcnow())

    def _checked(self, found: SmtpCredential, now: datetime) -> SmtpLogin:
        if found.revoked_at is not None:
            raise LoginRefused("revoked")
        if found.expires_at is not None and found.expires_at <= now:
            raise LoginRefused("expired")
        return SmtpLogin(
            credential_id=found.id,
            workspace_id=found.workspace_id,
            username=found.username,
            scopes=frozenset(found.scopes),
            allowed_streams=(
                frozenset(found.allowed_streams) if found.allowed_streams is not None else None
            ),
            last_used_at=found.last_used_at,
        )

    def needs_touch(self, login: SmtpLogin, now: datetime) -> bool:
        return login.last_used_at is None or now - login.last_used_at >= LAST_USED_INTERVAL

    async def record_use(
        self, session: AsyncSession, login: SmtpLogin, *, ip: str | None, now: datetime
    ) -> None:
        await smtp_credential_repository.touch(
            session, login.credential_id, ip=ip, now=now, min_interval=LAST_USED_INTERVAL
        )

    async def live_ids(
        self, session: AsyncSession, workspace_id: uuid.UUID, ids: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        return await smtp_credential_repository.live_ids(session, workspace_id, ids, _utcnow())


smtp_credential_service = SmtpCredentialService()
