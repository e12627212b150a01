"""The rules of workspaces, users, API keys and the audit log.

Services never commit: the HTTP unit of work or the CLI's edge session does.
Every tenant-owned call takes `workspace_id` first, and an id that belongs to
another workspace is reported as not found, exactly like one that does not
exist, so ids never leak across tenants.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core import security
from sendstream.core.errors import InvalidInput
from sendstream.core.pagination import PageParams, cursor_uuid, encode_cursor
from sendstream.models.api_key import ApiKey
from sendstream.models.audit import AuditLogEntry
from sendstream.models.user import User
from sendstream.models.workspace import Workspace
from sendstream.workspaces import scopes as scope_rules
from sendstream.workspaces.errors import (
    ApiKeyExpired,
    ApiKeyNotFound,
    ApiKeyRevoked,
    InvalidApiKey,
    InvalidExpiry,
    InvalidSlug,
    LastOwner,
    ScopeEscalation,
    UserExists,
    UserNotFound,
    WorkspaceExists,
    WorkspaceNotFound,
)
from sendstream.workspaces.repository import (
    api_key_repository,
    audit_repository,
    user_repository,
    workspace_repository,
)

ROLES = ("owner", "admin", "member")
_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Deliberately loose: one @, something on each side, no spaces. Deliverability
# is the verification domain's job, not the user directory's.
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# `last_used_at` is advisory: writing it on every request would turn every
# read into a row update, so a key records at most one use per interval.
LAST_USED_INTERVAL = timedelta(minutes=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63].strip("-")
    return slug or "workspace"


def normalise_email(email: str) -> tuple[str, str]:
    """(address as given minus surrounding space, lower-cased uniqueness key)."""
    cleaned = email.strip()
    if len(cleaned) > 320 or not _EMAIL_RE.match(cleaned):
        raise InvalidInput(f"email: {email!r} is not an email address.", code="invalid_email")
    return cleaned, cleaned.lower()


async def _flush_unique(session: AsyncSession, row: object, conflict: Exception) -> None:
    """Insert `row`; a unique violation (a concurrent twin) becomes `conflict`.
    The savepoint keeps the surrounding transaction usable after the error."""
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        raise conflict from None


class WorkspaceService:
    async def create_workspace(
        self, session: AsyncSession, name: str, slug: str | None = None
    ) -> Workspace:
        name = name.strip()
        if not name:
            raise InvalidInput("name: must not be empty.")
        slug = slug if slug is not None else slugify(name)
        if not _SLUG_RE.match(slug):
            raise InvalidSlug(slug)
        if await workspace_repository.slug_taken(session, slug):
            raise WorkspaceExists(slug)
        workspace = Workspace(name=name, slug=slug)
        await _flush_unique(session, workspace, WorkspaceExists(slug))
        return workspace

    async def get_workspace(self, session: AsyncSession, workspace_id: uuid.UUID) -> Workspace:
        workspace = await workspace_repository.get(session, workspace_id)
        if workspace is None:
            raise WorkspaceNotFound(str(workspace_id))
        return workspace

    async def find_workspace_by_slug(self, session: AsyncSession, slug: str) -> Workspace | None:
        return await workspace_repository.find_by_slug(session, slug)

    async def get_workspace_by_slug(self, session: AsyncSession, slug: str) -> Workspace:
        workspace = await workspace_repository.find_by_slug(session, slug)
        if workspace is None:
            raise WorkspaceNotFound(repr(slug))
        return workspace

    async def list_workspaces(self, session: AsyncSession) -> Sequence[Workspace]:
        return await workspace_repository.list(session)

    async def count_workspaces(self, session: AsyncSession) -> int:
        return await workspace_repository.count(session)

    async def update_workspace(
        self, session: AsyncSession, workspace_id: uuid.UUID, *, name: str | None = None
    ) -> Workspace:
        workspace = await self.get_workspace(session, workspace_id)
        if name is not None:
            name = name.strip()
            if not name:
                raise InvalidInput("name: must not be empty.")
            workspace.name = name
        await session.flush()
        await session.refresh(workspace)
        return workspace


class UserService:
    async def create_user(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        email: str,
        name: str | None = None,
        role: str = "member",
        password: str | None = None,
    ) -> User:
        _check_role(role)
        address, key = normalise_email(email)
        if await user_repository.find_by_email_key(session, workspace_id, key) is not None:
            raise UserExists(address)
        user = User(
            workspace_id=workspace_id,
            email=address,
            email_key=key,
            name=name,
            role=role,
            password_hash=security.hash_password(password) if password is not None else None,
        )
        await _flush_unique(session, user, UserExists(address))
        return user

    async def get_user(
        self, session: AsyncSession, workspace_id: uuid.UUID, user_id: uuid.UUID
    ) -> User:
        user = await user_repository.get(session, workspace_id, user_id)
        if user is None:
            raise UserNotFound(str(user_id))
        return user

    async def list_users(
        self, session: AsyncSession, workspace_id: uuid.UUID, page: PageParams
    ) -> tuple[Sequence[User], str | None]:
        rows = await user_repository.page(
            session, workspace_id, after=cursor_uuid(page.cursor), limit=page.limit + 1
        )
        return _paged(rows, page.limit)

    async def update_user(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        user_id: uuid.UUID,
        *,
        name: str | None = None,
        role: str | None = None,
        password: str | None = None,
        disabled: bool | None = None,
    ) -> User:
        if role is not None:
            _check_role(role)
        may_lose_owner = (role is not None and role != "owner") or disabled is True
        owners = await self._lock_owners(session, workspace_id) if may_lose_owner else []
        user = await user_repository.get_for_update(session, workspace_id, user_id)
        if user is None:
            raise UserNotFound(str(user_id))
        if may_lose_owner and owners == [user.id]:
            raise LastOwner()
        if name is not None:
            user.name = name
        if role is not None:
            user.role = role
        if password is not None:
            user.password_hash = security.hash_password(password)
        if disabled is True and user.disabled_at is None:
            user.disabled_at = utcnow()
        elif disabled is False:
            user.disabled_at = None
        await session.flush()
        await session.refresh(user)
        return user

    async def delete_user(
        self, session: AsyncSession, workspace_id: uuid.UUID, user_id: uuid.UUID
    ) -> None:
        owners = await self._lock_owners(session, workspace_id)
        user = await user_repository.get_for_update(session, workspace_id, user_id)
        if user is None:
            raise UserNotFound(str(user_id))
        if owners == [user.id]:
            raise LastOwner()
        await session.delete(user)
        await session.flush()

    async def authenticate_password(
        self, session: AsyncSession, workspace_id: uuid.UUID, email: str, password: str
    ) -> User | None:
        """The active user with this email and password, or None."""
        _, key = normalise_email(email)
        user = await user_repository.find_by_email_key(session, workspace_id, key)
        if user is None or user.password_hash is None or user.disabled_at is not None:
            return None
        if not security.verify_password(user.password_hash, password):
            return None
        if security.password_needs_rehash(user.password_hash):
            user.password_hash = security.hash_password(password)
        return user

    async def _lock_owners(self, session: AsyncSession, workspace_id: uuid.UUID) -> list[uuid.UUID]:
        # The active owners' rows are locked before the target row, always in id
        # order, so two requests removing owners queue up instead of deadlocking
        # and the second sees the first one's result.
        return await user_repository.lock_active_owner_ids(session, workspace_id)


class ApiKeyService:
    async def create_key(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        name: str,
        scopes: Iterable[str],
        expires_at: datetime | None = None,
        *,
        granted_by: Iterable[str] | None = None,
        created_by_user_id: uuid.UUID | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its full secret string, which exists only in this
        return value: the database keeps its hash.

        `granted_by` is the creating principal's scopes (None for operators on
        the CLI); a key can never hold a scope its creator lacks."""
        wanted = scope_rules.validate_scopes(scopes)
        if not wanted:
            raise InvalidInput("scopes: give at least one scope.", code="unknown_scope")
        if granted_by is not None:
            missing = scope_rules.ungranted(granted_by, wanted)
            if missing:
                raise ScopeEscalation(missing)
        if expires_at is not None:
            if expires_at.tzinfo is None:
                expires_at = expires_at.replace(tzinfo=UTC)
            if expires_at <= utcnow():
                raise InvalidExpiry()
        generated = security.generate_api_key()
        key = ApiKey(
            workspace_id=workspace_id,
            name=name,
            prefix=generated.prefix,
            secret_hash=generated.secret_hash,
            scopes=wanted,
            created_by_user_id=created_by_user_id,
            expires_at=expires_at,
        )
        session.add(key)
        await session.flush()
        await session.refresh(key)
        return key, generated.key

    async def authenticate(
        self, session: AsyncSession, presented: str, *, now: datetime | None = None
    ) -> ApiKey:
        """The live key for a presented secret, or the reason it is refused."""
        parsed = security.parse_api_key(presented)
        if parsed is None:
            raise InvalidApiKey()
        key = await api_key_repository.find_by_prefix(session, parsed.prefix)
        # The hash is compared even for a known prefix, so a guessed prefix
        # with a wrong secret is as invalid as an unknown key.
        if key is None or not security.api_key_matches(parsed.key, key.secret_hash):
            raise InvalidApiKey()
        if key.revoked_at is not None:
            raise ApiKeyRevoked(key.prefix)
        if key.expires_at is not None and key.expires_at <= (now or utcnow()):
            raise ApiKeyExpired(key.prefix)
        return key

    def needs_touch(self, key: ApiKey, now: datetime) -> bool:
        return key.last_used_at is None or now - key.last_used_at >= LAST_USED_INTERVAL

    async def record_use(
        self, session: AsyncSession, key_id: uuid.UUID, *, ip: str | None, now: datetime
    ) -> bool:
        return await api_key_repository.touch(
            session, key_id, ip=ip, now=now, min_interval=LAST_USED_INTERVAL
        )

    async def get_key(
        self, session: AsyncSession, workspace_id: uuid.UUID, key_id: uuid.UUID
    ) -> ApiKey:
        key = await api_key_repository.get(session, workspace_id, key_id)
        if key is None:
            raise ApiKeyNotFound(str(key_id))
        return key

    async def find_key(
        self, session: AsyncSession, workspace_id: uuid.UUID, prefix_or_id: str
    ) -> ApiKey:
        """By id or by the public prefix an operator sees (`ss_0123456789ab`)."""
        try:
            key_id = uuid.UUID(prefix_or_id)
        except ValueError:
            found = await api_key_repository.find_in_workspace_by_prefix(
                session, workspace_id, prefix_or_id
            )
        else:
            found = await api_key_repository.get(session, workspace_id, key_id)
        if found is None:
            raise ApiKeyNotFound(prefix_or_id)
        return found

    async def list_keys(
        self, session: AsyncSession, workspace_id: uuid.UUID, page: PageParams
    ) -> tuple[Sequence[ApiKey], str | None]:
        rows = await api_key_repository.page(
            session, workspace_id, after=cursor_uuid(page.cursor), limit=page.limit + 1
        )
        return _paged(rows, page.limit)

    async def list_all_keys(
        self, session: AsyncSession, workspace_id: uuid.UUID
    ) -> Sequence[ApiKey]:
        return await api_key_repository.page(session, workspace_id, after=None, limit=100_000)

    async def revoke_key(
        self, session: AsyncSession, workspace_id: uuid.UUID, key_id: uuid.UUID
    ) -> ApiKey:
        """Revoke at once; revoking a revoked key changes nothing."""
        key = await self.get_key(session, workspace_id, key_id)
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            await session.flush()
            await session.refresh(key)
        return key


class AuditService:
    def record(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        actor_type: str,
        actor_id: str | None,
        action: str,
        target: str | None = None,
        status: int | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        request_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditLogEntry:
        entry = AuditLogEntry(
            workspace_id=workspace_id,
            actor_type=actor_type,
            actor_id=actor_id,
            action=action[:200],
            target=target[:400] if target else None,
            status=status,
            ip=ip,
            user_agent=user_agent[:400] if user_agent else None,
            request_id=request_id,
            details=details or {},
        )
        audit_repository.add(session, entry)
        return entry

    async def list_entries(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        page: PageParams,
        *,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[Sequence[AuditLogEntry], str | None]:
        before: int | None = None
        if page.cursor is not None:
            value = page.cursor.get("id")
            # bool is an int subclass; an id beyond bigint would be a database error.
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**63:
                raise InvalidInput(
                    "cursor: not a cursor this list issued; pass back `next_cursor` unchanged.",
                    code="invalid_cursor",
                )
            before = value
        rows = await audit_repository.page(
            session,
            workspace_id,
            before_id=before,
            limit=page.limit + 1,
            actor=actor,
            action=action,
            since=since,
            until=until,
        )
        return _paged(rows, page.limit)


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidInput(
            f"role: {role!r} is not a role; use one of {', '.join(ROLES)}.", code="invalid_role"
        )


Row = TypeVar("Row", User, ApiKey, AuditLogEntry)


def _paged(rows: Sequence[Row], limit: int) -> tuple[Sequence[Row], str | None]:
    if len(rows) <= limit:
        return rows, None
    kept = rows[:limit]
    last_id: Any = kept[-1].id
    return kept, encode_cursor({"id": last_id if isinstance(last_id, int) else str(last_id)})


workspace_service = WorkspaceService()
user_service = UserService()
api_key_service = ApiKeyService()
audit_service = AuditService()
