"""Every query of the bounces domain: inbound mail, bounce records, and the
few reads and state changes of messages and contacts that acting on a
bounce needs. Each query is scoped by workspace, except the inbound
mailbox's own rows, which have no workspace until processing finds one.

The contact and message state changes live here rather than behind the
contacts or delivery services because neither offers them: `bounced` and
`complained` are states only bounce handling sets (contacts/lists.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.models.bounce_record import BounceRecord
from sendstream.models.contact import Contact
from sendstream.models.contact_list import Subscription
from sendstream.models.inbound_message import InboundMessage
from sendstream.models.message import Message


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What acting on a bounce needs to know about the message it names."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    status: str
    to_email: str
    to_email_key: str
    contact_id: uuid.UUID | None
    list_id: uuid.UUID | None
    # cc and bcc addresses as stored (not normalised).
    copies: tuple[str, ...]


_MESSAGE_COLUMNS = (
    Message.id,
    Message.workspace_id,
    Message.status,
    Message.to_email,
    Message.to_email_key,
    Message.contact_id,
    Message.list_id,
    Message.cc,
    Message.bcc,
)


def _facts(row: Any) -> MessageFacts:
    copies = tuple(
        str(c.get("email")) for c in [*(row.cc or []), *(row.bcc or [])] if c.get("email")
    )
    return MessageFacts(
        id=row.id,
        workspace_id=row.workspace_id,
        status=row.status,
        to_email=row.to_email,
        to_email_key=row.to_email_key,
        contact_id=row.contact_id,
        list_id=row.list_id,
        copies=copies,
    )


class InboundRepository:
    async def insert(
        self,
        session: AsyncSession,
        *,
        workspace_id: uuid.UUID | None,
        source: str,
        mail_from: str | None,
        rcpt_to: Sequence[str],
        raw: bytes,
    ) -> uuid.UUID:
        row = InboundMessage(
            workspace_id=workspace_id,
            source=source,
            mail_from=mail_from,
            rcpt_to=list(rcpt_to),
            size_bytes=len(raw),
            raw=raw,
        )
        session.add(row)
        await session.flush()
        return row.id

    async def lock(self, session: AsyncSession, inbound_id: uuid.UUID) -> InboundMessage | None:
        """The row, locked until the transaction ends: one processing run at a time."""
        found: InboundMessage | None = (
            await session.execute(
                select(InboundMessage)
                .where(InboundMessage.id == inbound_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).scalar_one_or_none()
        return found

    async def finish(
        self,
        session: AsyncSession,
        inbound_id: uuid.UUID,
        *,
        status: str,
        workspace_id: uuid.UUID | None,
        error: str | None,
    ) -> None:
        """Record the outcome of a run; only a row still `received` changes
        (a run that lost its lease cannot overwrite a newer outcome)."""
        await session.execute(
            update(InboundMessage)
            .where(InboundMessage.id == inbound_id, InboundMessage.status == "received")
            .values(
                status=status,
                workspace_id=func.coalesce(InboundMessage.workspace_id, workspace_id),
                error=error,
                attempts=InboundMessage.attempts + 1,
                processed_at=func.now(),
            )
        )

    async def prune(self, session: AsyncSession, *, older_than_seconds: float, limit: int) -> int:
        """Delete finished inbound mail past its retention, a bounded slice."""
        doomed = (
            select(InboundMessage.id)
            .where(
                InboundMessage.status != "received",
                InboundMessage.processed_at < func.now() - timedelta(seconds=older_than_seconds),
            )
            .limit(limit)
            .scalar_subquery()
        )
        result = await session.execute(delete(InboundMessage).where(InboundMessage.id.in_(doomed)))
        return int(result.rowcount)  # type: ignore[attr-defined]


class BounceRepository:
    # --- records

    async def record(self, session: AsyncSession, row: dict[str, Any]) -> uuid.UUID | None:
        """Insert a bounce record; None when one with the same `dedup_key`
        exists in the workspace (the verdict was acted on already). A
        concurrent insert of the same key waits for the other transaction
        and then yields None, so two runs never both act."""
        statement = (
            insert(BounceRecord)
            .values(**row)
            .on_conflict_do_nothing(index_elements=["workspace_id", "dedup_key"])
            .returning(BounceRecord.id)
        )
        inserted: uuid.UUID | None = (await session.execute(statement)).scalar_one_or_none()
        return inserted

    async def set_action(
        self, session: AsyncSession, workspace_id: uuid.UUID, record_id: uuid.UUID, action: str
    ) -> None:
        await session.execute(
            update(BounceRecord)
            .where(BounceRecord.workspace_id == workspace_id, BounceRecord.id == record_id)
            .values(action=action)
        )

    async def lock_address(self, session: AsyncSession, workspace_id: uuid.UUID, key: str) -> None:
        """Serialise the soft-bounce count of one address until commit, so two
        bounces arriving together cannot both count one short of the limit."""
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
            {"k": f"bounces:{workspace_id}:{key}"},
        )

    async def count_soft(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        key: str,
        *,
        since: datetime,
        reasons: Sequence[str],
    ) -> int:
        count = await session.scalar(
            select(func.count())
            .select_from(BounceRecord)
            .where(
                BounceRecord.workspace_id == workspace_id,
                BounceRecord.recipient_key == key,
                BounceRecord.occurred_at >= since,
                BounceRecord.kind == "bounce",
                BounceRecord.hard.is_not(True),
                BounceRecord.reason.in_(list(reasons)),
            )
        )
        return int(count or 0)

    # --- messages

    async def find_message(
        self, session: AsyncSession, workspace_id: uuid.UUID, message_id: uuid.UUID
    ) -> MessageFacts | None:
        row = (
            await session.execute(
                select(*_MESSAGE_COLUMNS).where(
                    Message.workspace_id == workspace_id, Message.id == message_id
                )
            )
        ).first()
        return _facts(row) if row is not None else None

    async def find_message_by_header(
        self, session: AsyncSession, workspace_id: uuid.UUID, message_id_header: str
    ) -> MessageFacts | None:
        """The workspace's message with this Message-ID (the newest, should
        two share one). Only ever within the one workspace."""
        row = (
            await session.execute(
                select(*_MESSAGE_COLUMNS)
                .where(
                    Message.workspace_id == workspace_id,
                    Message.message_id_header == message_id_header,
                )
                .order_by(Message.id.desc())
                .limit(1)
            )
        ).first()
        return _facts(row) if row is not None else None

    async def set_message_status(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        message_id: uuid.UUID,
        status: str,
        *,
        when_in: Sequence[str],
    ) -> bool:
        """Move the message to `status` if it is in one of `when_in`; True
        when it moved. A message being sent right now (`sending`) is left to
        its worker."""
        moved = await session.execute(
            update(Message)
            .where(
                Message.workspace_id == workspace_id,
                Message.id == message_id,
                Message.status.in_(list(when_in)),
            )
            .values(status=status, updated_at=func.now())
            .returning(Message.id)
        )
        return moved.first() is not None

    # --- contacts

    async def find_contact(
        self, session: AsyncSession, workspace_id: uuid.UUID, email_key: str
    ) -> Contact | None:
        """The contact with this matching key, locked until commit."""
        found: Contact | None = (
            await session.execute(
                select(Contact)
                .where(Contact.workspace_id == workspace_id, Contact.email_key == email_key)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).scalar_one_or_none()
        return found

    async def set_contact_status(
        self, session: AsyncSession, contact: Contact, status: str
    ) -> None:
        await session.execute(
            update(Contact)
            .where(Contact.workspace_id == contact.workspace_id, Contact.id == contact.id)
            .values(status=status, updated_at=func.now())
        )
        contact.status = status

    async def raise_list_states(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        contact_id: uuid.UUID,
        status: str,
        *,
        from_states: Sequence[str],
    ) -> list[tuple[uuid.UUID, str]]:
        """Set every subscription of the contact that is in one of
        `from_states` to `status`; returns (list id, previous state) of each
        changed, in list order."""
        old = (
            select(Subscription.list_id, Subscription.status)
            .where(
                Subscription.workspace_id == workspace_id,
                Subscription.contact_id == contact_id,
                Subscription.status.in_(list(from_states)),
            )
            .order_by(Subscription.list_id)
            .with_for_update()
            .cte("old")
        )
        rows = await session.execute(
            update(Subscription)
            .where(
                Subscription.contact_id == contact_id,
                Subscription.list_id == old.c.list_id,
            )
            .values(status=status, updated_at=func.now())
            .returning(Subscription.list_id, old.c.status)
        )
        return sorted((list_id, previous) for list_id, previous in rows)


inbound_repository = InboundRepository()
bounce_repository = BounceRepository()
