"""Lists, subscriptions and the rules of consent.

- A list is `single` or `double` opt-in. Subscribing to a double opt-in list
  makes the subscription `unconfirmed` and queues `contacts.send_confirmation`;
  only following the link (`confirm`) makes it `subscribed`.
- Every change of a subscription's state writes a consent record and emits
  `contact.subscribed` (to `subscribed` or `unconfirmed`) or
  `contact.unsubscribed`, in the caller's transaction. A request that changes
  nothing writes nothing.
- `bounced` and `complained` are set by bounce and complaint handling only.
- A contact that unsubscribed globally and now subscribes to a list, with
  consent, is active again: the global change gets its own consent record and
  a `contact.subscribed` event with `list_id` null.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.contacts import optin
from sendstream.contacts.consent import ConsentContext, record_consent
from sendstream.contacts.errors import (
    ConfirmationLinkInvalid,
    ConfirmationNotPending,
    ContactNotFound,
    ListExists,
    ListNotFound,
    SubscriptionStatusNotSettable,
)
from sendstream.contacts.list_repository import list_repository, subscription_repository
from sendstream.core.errors import InvalidInput
from sendstream.core.jobs import enqueue
from sendstream.core.outbox import emit
from sendstream.core.pagination import PageParams, cursor_uuid, encode_cursor
from sendstream.models.consent import ConsentRecord
from sendstream.models.contact import Contact
from sendstream.models.contact_list import ContactList, Subscription

# States a client may ask for; the others come from bounce/complaint handling.
SETTABLE: Final = ("subscribed", "unsubscribed")
NOT_SETTABLE: Final = ("bounced", "complained")


@dataclass(frozen=True)
class ListWithCounts:
    list: ContactList
    # Subscriptions per state, every state present.
    counts: dict[str, int]


class ListService:
    async def create_list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        name: str,
        description: str | None,
        visibility: str,
        opt_in: str,
    ) -> ListWithCounts:
        created = await list_repository.insert(
            session,
            workspace_id,
            {"name": name, "description": description, "visibility": visibility, "opt_in": opt_in},
        )
        if created is None:
            raise ListExists(name)
        return ListWithCounts(created, await self._counts(session, workspace_id, created.id))

    async def list_lists(
        self, session: AsyncSession, workspace_id: uuid.UUID, page: PageParams
    ) -> tuple[list[ListWithCounts], str | None]:
        rows = list(
            await list_repository.page(
                session,
                workspace_id,
                after=cursor_uuid(page.cursor, "id"),
                limit=page.limit + 1,
            )
        )
        cursor = None
        if len(rows) > page.limit:
            rows = rows[: page.limit]
            cursor = encode_cursor({"id": str(rows[-1].id)})
        counts = await list_repository.counts(session, workspace_id, [r.id for r in rows])
        return [ListWithCounts(r, counts[r.id]) for r in rows], cursor

    async def get_list(
        self, session: AsyncSession, workspace_id: uuid.UUID, list_id: uuid.UUID
    ) -> ListWithCounts:
        found = await list_repository.get(session, workspace_id, list_id)
        if found is None:
            raise ListNotFound(list_id)
        return ListWithCounts(found, await self._counts(session, workspace_id, list_id))

    async def update_list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        list_id: uuid.UUID,
        changes: dict[str, Any],
    ) -> ListWithCounts:
        """`changes` holds only the fields the client sent. Switching a list
        from double to single opt-in leaves pending (`unconfirmed`)
        subscriptions as they are: nobody confirmed them."""
        found = await list_repository.get(session, workspace_id, list_id, for_update=True)
        if found is None:
            raise ListNotFound(list_id)
        new_name = changes.get("name")
        if new_name is not None and new_name != found.name:
            taken = await list_repository.find_by_name(session, workspace_id, new_name)
            if taken is not None:
                raise ListExists(new_name)
        for key, value in changes.items():
            setattr(found, key, value)
        try:
            async with session.begin_nested():
                await session.flush()
        except IntegrityError:
            # A concurrent rename took the name between the check and the flush.
            raise ListExists(str(new_name)) from None
        await session.refresh(found)
        return ListWithCounts(found, await self._counts(session, workspace_id, list_id))

    async def delete_list(
        self, session: AsyncSession, workspace_id: uuid.UUID, list_id: uuid.UUID
    ) -> None:
        found = await list_repository.get(session, workspace_id, list_id, for_update=True)
        if found is None:
            raise ListNotFound(list_id)
        await list_repository.delete(session, found)

    async def _counts(
        self, session: AsyncSession, workspace_id: uuid.UUID, list_id: uuid.UUID
    ) -> dict[str, int]:
        return (await list_repository.counts(session, workspace_id, [list_id]))[list_id]


@dataclass(frozen=True)
class Confirmation:
    contact: Contact
    list: ContactList
    # The subscription's state now.
    status: str
    # False when the link had been followed before: nothing changed this time.
    changed: bool


class SubscriptionService:
    async def subscribe(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        contact_id: uuid.UUID,
        list_ids: Sequence[uuid.UUID],
        context: ConsentContext,
    ) -> None:
        """Subscribe the contact to each list: `subscribed` on single opt-in
        lists, `unconfirmed` (and a confirmation mail queued) on double opt-in
        ones; a contact already subscribed stays so. Unknown list ids raise
        `ListNotFound`. Writes consent records and events."""
        wanted = list(dict.fromkeys(list_ids))
        if not wanted:
            return
        lists = await list_repository.get_many(session, workspace_id, wanted)
        for list_id in wanted:
            if list_id not in lists:
                raise ListNotFound(list_id)
        contact = await subscription_repository.find_contact(
            session, workspace_id, contact_id, for_update=True
        )
        if contact is None:
            raise ContactNotFound(contact_id)
        current = await subscription_repository.for_contact_lists(
            session, workspace_id, contact_id, wanted
        )
        for list_id in sorted(wanted):
            await self._change(
                session, contact, lists[list_id], current.get(list_id), "subscribed", context
            )

    async def set_subscription(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        contact_id: uuid.UUID,
        list_id: uuid.UUID,
        status: str,
        context: ConsentContext,
    ) -> Subscription:
        """What the client asked for, applied under the list's rules: on a
        double opt-in list "subscribed" gives `unconfirmed` until confirmed."""
        contact = await subscription_repository.find_contact(
            session, workspace_id, contact_id, for_update=True
        )
        if contact is None:
            raise ContactNotFound(contact_id)
        contact_list = await list_repository.get(session, workspace_id, list_id)
        if contact_list is None:
            raise ListNotFound(list_id)
        if status not in SETTABLE:
            raise SubscriptionStatusNotSettable(status)
        current = await subscription_repository.get(
            session, workspace_id, contact_id, list_id, for_update=True
        )
        return await self._change(session, contact, contact_list, current, status, context)

    async def list_members(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        list_id: uuid.UUID,
        page: PageParams,
        *,
        status: str | None,
    ) -> tuple[list[tuple[Subscription, str]], str | None]:
        if await list_repository.get(session, workspace_id, list_id) is None:
            raise ListNotFound(list_id)
        rows = await subscription_repository.members(
            session,
            workspace_id,
            list_id,
            status=status,
            after=cursor_uuid(page.cursor, "contact_id"),
            limit=page.limit + 1,
        )
        if len(rows) > page.limit:
            rows = rows[: page.limit]
            return rows, encode_cursor({"contact_id": str(rows[-1][0].contact_id)})
        return rows, None

    async def contact_subscriptions(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        contact_id: uuid.UUID,
        page: PageParams,
    ) -> tuple[list[tuple[Subscription, str]], str | None]:
        await self._require_contact(session, workspace_id, contact_id)
        rows = await subscription_repository.of_contact(
            session,
            workspace_id,
            contact_id,
            after=cursor_uuid(page.cursor, "list_id"),
            limit=page.limit + 1,
        )
        if len(rows) > page.limit:
            rows = rows[: page.limit]
            return rows, encode_cursor({"list_id": str(rows[-1][0].list_id)})
        return rows, None

    async def consent_records(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        contact_id: uuid.UUID,
        page: PageParams,
    ) -> tuple[list[ConsentRecord], str | None]:
        await self._require_contact(session, workspace_id, contact_id)
        before = None
        if page.cursor is not None:
            value = page.cursor.get("id")
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidInput(
                    "cursor: not a cursor this list issued; pass back `next_cursor` unchanged.",
                    code="invalid_cursor",
                )
            before = value
        rows = list(
            await subscription_repository.consent_page(
                session, workspace_id, contact_id, before=before, limit=page.limit + 1
            )
        )
        if len(rows) > page.limit:
            rows = rows[: page.limit]
            return rows, encode_cursor({"id": rows[-1].id})
        return rows, None

    # --- double opt-in

    async def preview_confirmation(self, session: AsyncSession, token: str) -> Confirmation:
        """What the link would confirm; reads only (a GET: mail scanners
        prefetch links, and a prefetch must not subscribe anyone)."""
        contact, contact_list, subscription = await self._load_confirmation(
            session, token, for_update=False
        )
        return Confirmation(contact, contact_list, subscription.status, changed=False)

    async def confirm(
        self, session: AsyncSession, token: str, *, ip: str | None, user_agent: str | None
    ) -> Confirmation:
        """Make the pending subscription `subscribed`; following the link
        again is harmless. A subscription that was unsubscribed meanwhile is
        not brought back by an old link."""
        contact, contact_list, subscription = await self._load_confirmation(
            session, token, for_update=True
        )
        if subscription.status == "subscribed":
            return Confirmation(contact, contact_list, "subscribed", changed=False)
        if subscription.status != "unconfirmed":
            raise ConfirmationNotPending(subscription.status)
        context = ConsentContext(
            source="confirmation",
            actor="contact",
            ip=ip,
            user_agent=user_agent,
            text=optin.confirmation_prompt(contact_list.name),
        )
        await self._apply(session, contact, contact_list, subscription, "subscribed", context)
        return Confirmation(contact, contact_list, "subscribed", changed=True)

    async def _load_confirmation(
        self, session: AsyncSession, token: str, *, for_update: bool
    ) -> tuple[Contact, ContactList, Subscription]:
        claim = optin.read_token(token)
        contact = await subscription_repository.find_contact(
            session, claim.workspace_id, claim.contact_id, for_update=for_update
        )
        contact_list = await list_repository.get(session, claim.workspace_id, claim.list_id)
        subscription = await subscription_repository.get(
            session, claim.workspace_id, claim.contact_id, claim.list_id, for_update=for_update
        )
        if contact is None or contact_list is None or subscription is None:
            raise ConfirmationLinkInvalid("the subscription it confirms no longer exists")
        return contact, contact_list, subscription

    # --- the one place a state changes

    async def _change(
        self,
        session: AsyncSession,
        contact: Contact,
        contact_list: ContactList,
        current: Subscription | None,
        wanted: str,
        context: ConsentContext,
    ) -> Subscription:
        before = current.status if current is not None else None
        if wanted == "subscribed":
            if before == "subscribed":
                return _unchanged(current)
            target = "unconfirmed" if contact_list.opt_in == "double" else "subscribed"
            if before == target == "unconfirmed":
                # Asked again while pending: send the link again, change nothing.
                await _queue_confirmation(session, contact, contact_list)
                return _unchanged(current)
        else:
            if before == wanted:
                return _unchanged(current)
            target = wanted
        return await self._apply(session, contact, contact_list, current, target, context)

    async def _apply(
        self,
        session: AsyncSession,
        contact: Contact,
        contact_list: ContactList,
        current: Subscription | None,
        target: str,
        context: ConsentContext,
    ) -> Subscription:
        ws = contact.workspace_id
        # Read before the upsert: it refreshes `current` (the same identity) in place.
        previous = current.status if current is not None else None
        row = await subscription_repository.set_status(
            session, ws, contact.id, contact_list.id, target
        )
        record_consent(
            session,
            workspace_id=ws,
            contact_id=contact.id,
            list_id=contact_list.id,
            status=target,
            previous_status=previous,
            context=context,
        )
        _emit_change(session, contact, contact_list.id, target, context)
        if target == "unconfirmed":
            await _queue_confirmation(session, contact, contact_list)
        if target == "subscribed" and contact.status == "unsubscribed":
            # Fresh, explicit consent to a list lifts the global unsubscribe.
            await subscription_repository.set_contact_status(session, contact, "active")
            record_consent(
                session,
                workspace_id=ws,
                contact_id=contact.id,
                list_id=None,
                status="active",
                previous_status="unsubscribed",
                context=context,
            )
            _emit_change(session, contact, None, "active", context)
        return row

    async def _require_contact(
        self, session: AsyncSession, workspace_id: uuid.UUID, contact_id: uuid.UUID
    ) -> Contact:
        contact = await subscription_repository.find_contact(session, workspace_id, contact_id)
        if contact is None:
            raise ContactNotFound(contact_id)
        return contact


def _unchanged(current: Subscription | None) -> Subscription:
    # Only called when a row exists (the state it already has is the one asked for).
    if current is None:
        raise RuntimeError("no subscription to leave unchanged")
    return current


def _emit_change(
    session: AsyncSession,
    contact: Contact,
    list_id: uuid.UUID | None,
    status: str,
    context: ConsentContext,
) -> None:
    event = "contact.unsubscribed" if status == "unsubscribed" else "contact.subscribed"
    emit(
        session,
        contact.workspace_id,
        event,
        {
            "id": contact.id,
            "email": contact.email,
            "list_id": list_id,
            "status": status,
            "source": context.source,
        },
        subject_type="contact",
        subject_id=contact.id,
    )


async def _queue_confirmation(
    session: AsyncSession, contact: Contact, contact_list: ContactList
) -> None:
    ws = contact.workspace_id
    await enqueue(
        session,
        optin.SEND_CONFIRMATION,
        {"workspace_id": str(ws), "contact_id": str(contact.id), "list_id": str(contact_list.id)},
        workspace_id=ws,
        # One live mail per pending subscription, however often it is asked for.
        unique_key=f"{optin.SEND_CONFIRMATION}:{ws}:{contact.id}:{contact_list.id}",
    )


list_service = ListService()
subscription_service = SubscriptionService()
