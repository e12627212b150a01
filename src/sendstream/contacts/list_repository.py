"""Every query of lists, subscriptions and consent records, and of the GDPR
export and erasure. Each one is scoped by `workspace_id`: an id from another
workspace finds nothing."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.pagination import rows_after
from sendstream.models.consent import ConsentRecord
from sendstream.models.contact import Contact, ContactExternalId
from sendstream.models.contact_list import ContactList, Subscription
from sendstream.models.event import Event
from sendstream.models.field import Field

SUBSCRIPTION_STATES = ("subscribed", "unconfirmed", "unsubscribed", "bounced", "complained")


class ListRepository:
    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        list_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> ContactList | None:
        query = select(ContactList).where(
            ContactList.workspace_id == workspace_id, ContactList.id == list_id
        )
        if for_update:
            query = query.with_for_update()
        return (await session.execute(query)).scalar_one_or_none()

    async def get_many(
        self, session: AsyncSession, workspace_id: uuid.UUID, list_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, ContactList]:
        if not list_ids:
            return {}
        rows = await session.scalars(
            select(ContactList).where(
                ContactList.workspace_id == workspace_id, ContactList.id.in_(list(list_ids))
            )
        )
        return {row.id: row for row in rows}

    async def find_by_name(
        self, session: AsyncSession, workspace_id: uuid.UUID, name: str
    ) -> ContactList | None:
        return (
            await session.execute(
                select(ContactList).where(
                    ContactList.workspace_id == workspace_id, ContactList.name == name
                )
            )
        ).scalar_one_or_none()

    async def insert(
        self, session: AsyncSession, workspace_id: uuid.UUID, values: dict[str, Any]
    ) -> ContactList | None:
        """The new list, or None when the name is taken (even by a concurrent
        insert: ON CONFLICT waits for it and then skips)."""
        list_id = (
            await session.execute(
                insert(ContactList)
                .values(workspace_id=workspace_id, **values)
                .on_conflict_do_nothing(index_elements=["workspace_id", "name"])
                .returning(ContactList.id)
            )
        ).scalar_one_or_none()
        if list_id is None:
            return None
        return await self.get(session, workspace_id, list_id)

    async def page(
        self, session: AsyncSession, workspace_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
    ) -> Sequence[ContactList]:
        """Oldest first (ids are time-ordered UUIDv7)."""
        query = select(ContactList).where(ContactList.workspace_id == workspace_id)
        return await rows_after(session, query, ContactList.id, after=after, limit=limit)

    async def counts(
        self, session: AsyncSession, workspace_id: uuid.UUID, list_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, dict[str, int]]:
        """Subscriptions per list per state; every state present, zeros included."""
        counts = {list_id: dict.fromkeys(SUBSCRIPTION_STATES, 0) for list_id in list_ids}
        if not list_ids:
            return counts
        rows = await session.execute(
            select(Subscription.list_id, Subscription.status, func.count())
            .where(
                Subscription.workspace_id == workspace_id,
                Subscription.list_id.in_(list(list_ids)),
            )
            .group_by(Subscription.list_id, Subscription.status)
        )
        for list_id, status, count in rows.all():
            counts[list_id][status] = int(count)
        return counts

    async def delete(self, session: AsyncSession, contact_list: ContactList) -> None:
        # Subscriptions go with the list (FK cascade); consent records stay,
        # their list_id set to null, because consent history is never deleted.
        await session.execute(
            delete(ContactList).where(
                ContactList.workspace_id == contact_list.workspace_id,
                ContactList.id == contact_list.id,
            )
        )


class SubscriptionRepository:
    async def find_contact(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        contact_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Contact | None:
        query = select(Contact).where(
            Contact.workspace_id == workspace_id, Contact.id == contact_id
        )
        if for_update:
            query = query.with_for_update()
        return (await session.execute(query)).scalar_one_or_none()

    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        contact_id: uuid.UUID,
        list_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Subscription | None:
        query = select(Subscription).where(
            Subscription.workspace_id == workspace_id,
            Subscription.contact_id == contact_id,
            Subscription.list_id == list_id,
        )
        if for_update:
            query = query.with_for_update()
        return (await session.execute(query)).scalar_one_or_none()

    async def for_contact_lists(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        contact_id: uuid.UUID,
        list_ids: Collection[uuid.UUID],
    ) -> dict[uuid.UUID, Subscription]:
        """The contact's subscriptions on these lists, locked for update."""
        if not list_ids:
            return {}
        rows = await session.scalars(
            select(Subscription)
            .where(
                Subscription.workspace_id == workspace_id,
                Subscription.contact_id == contact_id,
                Subscription.list_id.in_(list(list_ids)),
            )
            .order_by(Subscription.list_id)
            .with_for_update()
        )
        return {row.list_id: row for row in rows}

    async def set_status(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        contact_id: uuid.UUID,
        list_id: uuid.UUID,
        status: str,
    ) -> Subscription:
        """Insert or update the row; returns it as stored (timestamps included)."""
        statement = insert(Subscription).values(
            workspace_id=workspace_id, contact_id=contact_id, list_id=list_id, status=status
        )
        upsert = statement.on_conflict_do_update(
            index_elements=["list_id", "contact_id"],
            set_={"status": statement.excluded.status, "updated_at": func.now()},
        ).returning(Subscription)
        row: Subscription = (
            await session.execute(upsert, execution_options={"populate_existing": True})
        ).scalar_one()
        return row

    async def members(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        list_id: uuid.UUID,
        *,
        status: str | None,
        after: uuid.UUID | None,
        limit: int,
    ) -> list[tuple[Subscription, str]]:
        """(subscription, contact email) ordered by contact id."""
        query = (
            select(Subscription, Contact.email)
            .join(Contact, Contact.id == Subscription.contact_id)
            .where(Subscription.workspace_id == workspace_id, Subscription.list_id == list_id)
        )
        if status is not None:
            query = query.where(Subscription.status == status)
        if after is not None:
            query = query.where(Subscription.contact_id > after)
        result = await session.execute(query.order_by(Subscription.contact_id).limit(limit))
        return [(sub, email) for sub, email in result.all()]

    async def of_contact(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        contact_id: uuid.UUID,
        *,
        after: uuid.UUID | None = None,
        limit: int | None = None,
    ) -> list[tuple[Subscription, str]]:
        """(subscription, list name) ordered by list id."""
        query = (
            select(Subscription, ContactList.name)
            .join(ContactList, ContactList.id == Subscription.list_id)
            .where(Subscription.workspace_id == workspace_id, Subscription.contact_id == contact_id)
        )
        if after is not None:
            query = query.where(Subscription.list_id > after)
        query = query.order_by(Subscription.list_id)
        if limit is not None:
            query = query.limit(limit)
        return [(sub, name) for sub, name in (await session.execute(query)).all()]

    async def consent_page(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        contact_id: uuid.UUID,
        *,
        before: int | None,
        limit: int | None,
    ) -> Sequence[ConsentRecord]:
        """Newest first."""
        query = select(ConsentRecord).where(
            ConsentRecord.workspace_id == workspace_id, ConsentRecord.contact_id == contact_id
        )
        if before is not None:
            query = query.where(ConsentRecord.id < before)
        query = query.order_by(ConsentRecord.id.desc())
        if limit is not None:
            query = query.limit(limit)
        return (await session.scalars(query)).all()

    async def set_contact_status(
        self, session: AsyncSession, contact: Contact, status: str
    ) -> None:
        await session.execute(
            update(Contact)
            .where(Contact.workspace_id == contact.workspace_id, Contact.id == contact.id)
            .values(status=status, updated_at=func.now())
        )
        contact.status = status


class GdprRepository:
    async def find_contact_by_key(
        self, session: AsyncSession, workspace_id: uuid.UUID, email_key: str
    ) -> Contact | None:
        return (
            await session.execute(
                select(Contact)
                .where(Contact.workspace_id == workspace_id, Contact.email_key == email_key)
                .with_for_update()
            )
        ).scalar_one_or_none()

    async def fields(
        self, session: AsyncSession, workspace_id: uuid.UUID, keys: Collection[str]
    ) -> Sequence[Field]:
        if not keys:
            return []
        return (
            await session.scalars(
                select(Field)
                .where(Field.workspace_id == workspace_id, Field.key.in_(list(keys)))
                .order_by(Field.key)
            )
        ).all()

    async def external_ids(
        self, session: AsyncSession, workspace_id: uuid.UUID, contact_id: uuid.UUID
    ) -> Sequence[ContactExternalId]:
        return (
            await session.scalars(
                select(ContactExternalId)
                .where(
                    ContactExternalId.workspace_id == workspace_id,
                    ContactExternalId.contact_id == contact_id,
                )
                .order_by(ContactExternalId.system)
            )
        ).all()

    async def timeline(
        self, session: AsyncSession, workspace_id: uuid.UUID, contact_id: uuid.UUID
    ) -> Sequence[Event]:
        """Every event whose subject is the contact, oldest first."""
        return (
            await session.scalars(
                select(Event)
                .where(
                    Event.workspace_id == workspace_id,
                    Event.subject_type == "contact",
                    Event.subject_id == str(contact_id),
                )
                .order_by(Event.position)
            )
        ).all()

    async def count_held(
        self, session: AsyncSession, workspace_id: uuid.UUID, contact_id: uuid.UUID
    ) -> dict[str, int]:
        """How many rows of each kind hold the contact's data (for the receipt)."""
        row = (
            await session.execute(
                text(
                    """
                    SELECT
                      (SELECT count(*) FROM subscriptions
                        WHERE workspace_id = :ws AND contact_id = :id) AS subscriptions,
                      (SELECT count(*) FROM consent_records
                        WHERE workspace_id = :ws AND contact_id = :id) AS consent_records,
                      (SELECT count(*) FROM contact_external_ids
                        WHERE workspace_id = :ws AND contact_id = :id) AS external_ids
                    """
                ),
                {"ws": workspace_id, "id": contact_id},
            )
        ).one()
        return {
            "subscriptions": int(row.subscriptions),
            "consent_records": int(row.consent_records),
            "external_ids": int(row.external_ids),
        }

    async def delete_contact(
        self, session: AsyncSession, workspace_id: uuid.UUID, contact_id: uuid.UUID
    ) -> None:
        # Subscriptions, consent records and external ids go by FK cascade.
        await session.execute(
            delete(Contact).where(Contact.workspace_id == workspace_id, Contact.id == contact_id)
        )

    async def redact_events(
        self, session: AsyncSession, workspace_id: uuid.UUID, contact_id: uuid.UUID
    ) -> int:
        result = await session.execute(
            update(Event)
            .where(
                Event.workspace_id == workspace_id,
                Event.subject_type == "contact",
                Event.subject_id == str(contact_id),
            )
            .values(data={"erased": True})
            .returning(Event.position)
        )
        return len(result.all())

    async def forget_idempotent_responses(
        self, session: AsyncSession, workspace_id: uuid.UUID, needles: Collection[str]
    ) -> int:
        """Stored create responses (replayed for `Idempotency-Key` retries)
        that mention the address: a retry after erasure must not hand it back.
        The table holds at most a day of creates, so the scan is short."""
        patterns = sorted({n.encode() for n in needles if n})
        if not patterns:
            return 0
        result = await session.execute(
            text(
                """
                DELETE FROM idempotency_keys
                WHERE workspace_id = :ws AND response_body IS NOT NULL
                  AND EXISTS (SELECT 1 FROM unnest(CAST(:needles AS bytea[])) AS n(needle)
                              WHERE position(n.needle IN response_body) > 0)
                RETURNING key
                """
            ),
            {"ws": workspace_id, "needles": patterns},
        )
        return len(result.all())


list_repository = ListRepository()
subscription_repository = SubscriptionRepository()
gdpr_repository = GdprRepository()
