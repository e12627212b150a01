"""The rules of IMAP bounce mailboxes (configuration through the API).

- A workspace's mailbox acts only on that workspace's messages (the intake
  is given its `workspace_id`). Deployment-wide mailboxes (workspace NULL)
  are not managed through the API.
- Secrets (password, OAuth2 client secret, refresh token, access token) are
  `core.secrets` tokens bound to `imap_mailboxes.<column>:<id>` and never
  returned. The settings must be able to work: `password` needs a password,
  `xoauth2` an access token or a token URL with a refresh token; `move`
  cannot target the folder it reads.
- Saving bumps `updated_at`, which the worker's runner takes as "restart
  this mailbox with the new settings". Changing the host, user or folder
  forgets the position (UIDVALIDITY and last UID); the processed keys keep
  mail already handed over from being handed over again.
- `check_mailbox` connects now (host vetted, TLS verified, login, SELECT)
  and records the outcome as the runner would.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.bounces.imap_client import ImapError
from sendstream.bounces.imap_errors import ImapMailboxNotFound, InvalidImapMailbox
from sendstream.bounces.imap_repository import imap_repository
from sendstream.bounces.imap_schemas import (
    BounceMailboxCheck,
    BounceMailboxCounters,
    BounceMailboxCreate,
    BounceMailboxRead,
    BounceMailboxUpdate,
)
from sendstream.bounces.imap_session import MailboxConfig, open_session, secret_context
from sendstream.core import secrets
from sendstream.core.ids import uuid7
from sendstream.core.pagination import PageParams, cursor_uuid, trim_page
from sendstream.core.settings import get_settings
from sendstream.models.imap_mailbox import ImapMailbox

# Seconds a check may take in all (connect, TLS, login, SELECT).
CHECK_TIMEOUT_SECONDS = 30.0
_SECRETS = {
    "password": "password_encrypted",
    "oauth_client_secret": "oauth_client_secret_encrypted",
    "oauth_refresh_token": "oauth_refresh_token_encrypted",
    "access_token": "access_token_encrypted",
}
_PLAIN = (
    "name",
    "host",
    "port",
    "tls",
    "ca_certificates",
    "username",
    "auth",
    "oauth_token_url",
    "oauth_client_id",
    "oauth_scope",
    "folder",
    "processed_action",
    "processed_folder",
    "processed_flag",
    "mode",
    "poll_interval",
    "enabled",
)
# Changing one of these points the position at another folder.
_WHERE = ("host", "port", "username", "folder")


def _validate(mailbox: ImapMailbox) -> None:
    if mailbox.ca_certificates:
        try:
            ssl.create_default_context().load_verify_locations(cadata=mailbox.ca_certificates)
        except (ssl.SSLError, ValueError, TypeError) as exc:
            raise InvalidImapMailbox("ca_certificates", f"not PEM certificates: {exc}") from exc
    if mailbox.auth == "password" and not mailbox.password_encrypted:
        raise InvalidImapMailbox("password", "auth `password` needs a password")
    if mailbox.auth == "xoauth2" and not mailbox.access_token_encrypted:
        if not (mailbox.oauth_token_url and mailbox.oauth_refresh_token_encrypted):
            raise InvalidImapMailbox(
                "access_token",
                "auth `xoauth2` needs an access_token, or an oauth_token_url with an "
                "oauth_refresh_token",
            )
    if mailbox.processed_action == "move":
        target = mailbox.processed_folder or "Processed"
        if target.casefold() == mailbox.folder.casefold():
            raise InvalidImapMailbox(
                "processed_folder", "processed mail cannot be moved to the folder that is read"
            )


class ImapMailboxService:
    def describe(self, mailbox: ImapMailbox, counts: dict[str, int]) -> BounceMailboxRead:
        return BounceMailboxRead(
            **{name: getattr(mailbox, name) for name in _PLAIN},
            id=mailbox.id,
            password_set=mailbox.password_encrypted is not None,
            oauth_client_secret_set=mailbox.oauth_client_secret_encrypted is not None,
            oauth_refresh_token_set=mailbox.oauth_refresh_token_encrypted is not None,
            access_token_set=mailbox.access_token_encrypted is not None,
            uidvalidity=mailbox.uidvalidity,
            last_uid=mailbox.last_uid,
            last_error=mailbox.last_error,
            last_error_at=mailbox.last_error_at,
            last_checked_at=mailbox.last_checked_at,
            counters=BounceMailboxCounters(
                accepted=counts.get("accepted", 0),
                duplicates=counts.get("duplicate", 0),
                oversized=counts.get("oversized", 0),
            ),
            created_at=mailbox.created_at,
            updated_at=mailbox.updated_at,
        )

    async def read(self, session: AsyncSession, mailbox: ImapMailbox) -> BounceMailboxRead:
        return self.describe(mailbox, await imap_repository.counts(session, mailbox.id))

    def _set_secret(self, mailbox: ImapMailbox, field: str, value: str | None) -> None:
        column = _SECRETS[field]
        setattr(
            mailbox,
            column,
            None
            if value is None
            else secrets.encrypt(value.encode(), secret_context(column, mailbox.id)),
        )
        if field in ("access_token", "oauth_refresh_token", "oauth_client_secret"):
            # A token given by hand has no known expiry; a new refresh token
            # or client makes the cached access token suspect.
            mailbox.access_token_expires_at = None
            if field != "access_token" and value is not None:
                mailbox.access_token_encrypted = None

    async def create_mailbox(
        self, session: AsyncSession, workspace_id: uuid.UUID, body: BounceMailboxCreate
    ) -> ImapMailbox:
        mailbox = ImapMailbox(
            id=uuid7(),
            workspace_id=workspace_id,
            **{name: getattr(body, name) for name in _PLAIN},
            last_uid=0,
        )
        for field in _SECRETS:
            value = getattr(body, field)
            if value is not None:
                self._set_secret(mailbox, field, value)
        _validate(mailbox)
        return await imap_repository.add(session, mailbox)

    async def get_mailbox(
        self, session: AsyncSession, workspace_id: uuid.UUID, mailbox_id: uuid.UUID
    ) -> ImapMailbox:
        mailbox = await imap_repository.get(session, workspace_id, mailbox_id)
        if mailbox is None:
            raise ImapMailboxNotFound(mailbox_id)
        return mailbox

    async def list_mailboxes(
        self, session: AsyncSession, workspace_id: uuid.UUID, page: PageParams
    ) -> tuple[list[ImapMailbox], str | None]:
        rows = await imap_repository.page(
            session, workspace_id, after=cursor_uuid(page.cursor), limit=page.limit + 1
        )
        return trim_page(list(rows), page.limit, lambda m: {"id": str(m.id)})

    async def update_mailbox(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        mailbox_id: uuid.UUID,
        body: BounceMailboxUpdate,
    ) -> ImapMailbox:
        mailbox = await imap_repository.get(session, workspace_id, mailbox_id, for_update=True)
        if mailbox is None:
            raise ImapMailboxNotFound(mailbox_id)
        given = body.model_fields_set
        moved = False
        for name in _PLAIN:
            if name not in given:
                continue
            value = getattr(body, name)
            if value is None and name not in (
                "ca_certificates",
                "oauth_token_url",
                "oauth_client_id",
                "oauth_scope",
                "processed_folder",
                "processed_flag",
            ):
                raise InvalidImapMailbox(name, "cannot be null")
            if name in _WHERE and value != getattr(mailbox, name):
                moved = True
            setattr(mailbox, name, value)
        for field in _SECRETS:
            if field in given:
                self._set_secret(mailbox, field, getattr(body, field))
        if moved:
            mailbox.uidvalidity = None
            mailbox.last_uid = 0
        if "enabled" in given or given - {"name"}:
            mailbox.last_error = None
        _validate(mailbox)
        mailbox.updated_at = datetime.now(UTC)
        return await imap_repository.save(session, mailbox)

    async def delete_mailbox(
        self, session: AsyncSession, workspace_id: uuid.UUID, mailbox_id: uuid.UUID
    ) -> None:
        await self.get_mailbox(session, workspace_id, mailbox_id)
        await imap_repository.delete(session, workspace_id, mailbox_id)

    async def check_mailbox(
        self, session: AsyncSession, workspace_id: uuid.UUID, mailbox_id: uuid.UUID
    ) -> BounceMailboxCheck:
        """Connect, log in and open the folder now; the outcome is recorded
        on the mailbox (`last_error`, `last_checked_at`) like the runner's."""
        mailbox = await self.get_mailbox(session, workspace_id, mailbox_id)
        config = MailboxConfig.of(mailbox)
        settings = get_settings()

        async def save_tokens(
            token: bytes, expires_at: datetime | None, refresh: bytes | None
        ) -> None:
            await imap_repository.save_tokens(
                session,
                mailbox.id,
                access_token_encrypted=token,
                expires_at=expires_at,
                refresh_token_encrypted=refresh,
            )

        async def attempt() -> BounceMailboxCheck:
            client = await open_session(config, settings, save_tokens)
            try:
                selected = await client.select(config.folder)
                return BounceMailboxCheck(
                    ok=True,
                    error=None,
                    capabilities=sorted(client.capabilities),
                    uidvalidity=selected.uidvalidity,
                    messages=selected.exists,
                )
            finally:
                await client.logout()

        try:
            result = await asyncio.wait_for(attempt(), CHECK_TIMEOUT_SECONDS)
        except (ImapError, OSError) as exc:
            result = BounceMailboxCheck(
                ok=False, error=str(exc)[:500], capabilities=[], uidvalidity=None, messages=None
            )
        except TimeoutError:
            result = BounceMailboxCheck(
                ok=False,
                error=f"no answer within {CHECK_TIMEOUT_SECONDS:g} s",
                capabilities=[],
                uidvalidity=None,
                messages=None,
            )
        await imap_repository.record_check(session, mailbox.id, result.error)
        return result


imap_mailbox_service = ImapMailboxService()
