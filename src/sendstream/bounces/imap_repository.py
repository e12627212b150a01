"""Every query of IMAP bounce mailboxes and the messages read from them.

API queries are scoped by `workspace_id` (an id from another workspace
finds nothing; deployment-wide mailboxes, workspace NULL, are never seen
through the API). The runner's queries (`enabled`, `load`, the position and
the processed keys) go by mailbox id across workspaces: the runner serves
every mailbox of the deployment, like the webhook loop serves every
endpoint.

The runner's own state writes (position, errors, tokens) keep `updated_at`
as it was: the runner watches `updated_at` to notice configuration changes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.pagination import rows_after
from sendstream.models.imap_mailbox import ImapMailbox, ImapMessage

# Longest error text kept on a mailbox.
MAX_ERROR_CHARS = 2000


class ImapRepository:
    # --- configuration (API)

    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        mailbox_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> ImapMailbox | None:
        query = select(ImapMailbox).where(
            ImapMailbox.workspace_id == workspace_id, ImapMailbox.id == mailbox_id
        )
        if for_update:
            query = query.with_for_update().execution_options(populate_existing=True)
        return (await session.execute(query)).scalar_one_or_none()

    async def add(self, session: AsyncSession, mailbox: ImapMailbox) -> ImapMailbox:
        session.add(mailbox)
        await session.flush()
        await session.refresh(mailbox)
        return mailbox

    async def save(self, session: AsyncSession, mailbox: ImapMailbox) -> ImapMailbox:
        await session.flush()
        await session.refresh(mailbox)
        return mailbox

    async def page(
        self, session: AsyncSession, workspace_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
    ) -> Sequence[ImapMailbox]:
        query = select(ImapMailbox).where(ImapMailbox.workspace_id == workspace_id)
        return await rows_after(session, query, ImapMailbox.id, after=after, limit=limit)

    async def delete(
        self, session: AsyncSession, workspace_id: uuid.UUID, mailbox_id: uuid.UUID
    ) -> None:
        await session.execute(
            delete(ImapMailbox).where(
                ImapMailbox.workspace_id == workspace_id, ImapMailbox.id == mailbox_id
            )
        )

    async def counts(self, session: AsyncSession, mailbox_id: uuid.UUID) -> dict[str, int]:
        rows = await session.execute(
            select(ImapMessage.outcome, func.count())
            .where(ImapMessage.mailbox_id == mailbox_id)
            .group_by(ImapMessage.outcome)
        )
        return {str(outcome): int(n) for outcome, n in rows.all()}

    # --- the runner (by id, every workspace)

    async def enabled(self, session: AsyncSession) -> dict[uuid.UUID, datetime]:
        """Enabled mailboxes and their `updated_at` (a change means: restart)."""
        rows = await session.execute(
            select(ImapMailbox.id, ImapMailbox.updated_at).where(ImapMailbox.enabled.is_(True))
        )
        return {row.id: row.updated_at for row in rows}

    async def load(self, session: AsyncSession, mailbox_id: uuid.UUID) -> ImapMailbox | None:
        return await session.get(ImapMailbox, mailbox_id, populate_existing=True)

    async def _update(self, session: AsyncSession, mailbox_id: uuid.UUID, **values: object) -> None:
        await session.execute(
            update(ImapMailbox)
            .where(ImapMailbox.id == mailbox_id)
            .values(updated_at=ImapMailbox.updated_at, **values)
        )

    async def save_position(
        self, session: AsyncSession, mailbox_id: uuid.UUID, *, uidvalidity: int, last_uid: int
    ) -> None:
        await self._update(
            session,
            mailbox_id,
            uidvalidity=uidvalidity,
            last_uid=last_uid,
            last_checked_at=func.now(),
        )

    async def record_check(
        self, session: AsyncSession, mailbox_id: uuid.UUID, error: str | None
    ) -> None:
        """A check or sync ended: with `error`, or cleanly (clears the last error)."""
        values: dict[str, object] = {"last_checked_at": func.now()}
        if error is None:
            values["last_error"] = None
        else:
            values["last_error"] = error[:MAX_ERROR_CHARS]
            values["last_error_at"] = func.now()
        await self._update(session, mailbox_id, **values)

    async def save_tokens(
        self,
        session: AsyncSession,
        mailbox_id: uuid.UUID,
        *,
        access_token_encrypted: bytes,
        expires_at: datetime | None,
        refresh_token_encrypted: bytes | None,
    ) -> None:
        values: dict[str, object] = {
            "access_token_encrypted": access_token_encrypted,
            "access_token_expires_at": expires_at,
        }
        if refresh_token_encrypted is not None:
            values["oauth_refresh_token_encrypted"] = refresh_token_encrypted
        await self._update(session, mailbox_id, **values)

    # --- messages dealt with

    async def processed(
        self, session: AsyncSession, mailbox_id: uuid.UUID, uidvalidity: int, uids: Iterable[int]
    ) -> dict[int, str]:
        """Outcome by UID of those among `uids` dealt with already."""
        wanted = list(uids)
        if not wanted:
            return {}
        rows = await session.execute(
            select(ImapMessage.uid, ImapMessage.outcome).where(
                ImapMessage.mailbox_id == mailbox_id,
                ImapMessage.uidvalidity == uidvalidity,
                ImapMessage.uid.in_(wanted),
            )
        )
        return {int(uid): str(outcome) for uid, outcome in rows.all()}

    async def known_keys(
        self, session: AsyncSession, mailbox_id: uuid.UUID, keys: Iterable[str]
    ) -> set[str]:
        """Those of `keys` seen in this mailbox before (under any UIDVALIDITY)."""
        wanted = list(set(keys))
        if not wanted:
            return set()
        rows = await session.execute(
            select(ImapMessage.message_key)
            .where(ImapMessage.mailbox_id == mailbox_id, ImapMessage.message_key.in_(wanted))
            .distinct()
        )
        return {str(k) for k in rows.scalars().all() if k is not None}

    async def claim(
        self,
        session: AsyncSession,
        *,
        mailbox_id: uuid.UUID,
        uidvalidity: int,
        uid: int,
        message_key: str | None,
        outcome: str,
        size_bytes: int,
    ) -> bool:
        """Record a message as dealt with; False when it was already (the
        caller then does nothing more with it)."""
        result = await session.execute(
            insert(ImapMessage)
            .values(
                mailbox_id=mailbox_id,
                uidvalidity=uidvalidity,
                uid=uid,
                message_key=message_key,
                outcome=outcome,
                size_bytes=size_bytes,
            )
            .on_conflict_do_nothing()
            .returning(ImapMessage.uid)
        )
        return result.scalar_one_or_none() is not None

    async def link_inbound(
        self,
        session: AsyncSession,
        *,
        mailbox_id: uuid.UUID,
        uidvalidity: int,
        uid: int,
        inbound_message_id: uuid.UUID,
    ) -> None:
        await session.execute(
            update(ImapMessage)
            .where(
                ImapMessage.mailbox_id == mailbox_id,
                ImapMessage.uidvalidity == uidvalidity,
                ImapMessage.uid == uid,
            )
            .values(inbound_message_id=inbound_message_id)
        )


imap_repository = ImapRepository()
