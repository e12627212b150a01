"""Unsubscribing: RFC 8058 one-click, the preference page, and the mailto
address of List-Unsubscribe.

* Scope: the one-click POST (and the mailto address) unsubscribes from the
  message's list; a message without a list (or whose list is gone)
  unsubscribes from everything. The page lets the person choose: this list,
  everything, or their subscriptions to the workspace's public lists.
* "Everything" sets the contact's global status `unsubscribed` and adds the
  address to the suppression list with reason `unsubscribed`; a recipient
  who is no contact only gets the suppression entry. A list unsubscribe
  changes that list's subscription only (other lists keep mailing).
* Every change goes through the contacts services, which write the consent
  record (source `unsubscribe_link`, or `form` for a subscription made on
  the page) and emit `contact.unsubscribed` / `contact.subscribed`. The
  message gets `message.unsubscribed` when something changed; repeating a
  one-click POST changes nothing and emits nothing.
* The token is the credential: whoever holds the mail can manage its
  recipient's subscriptions, and nobody else can (no cookies, so no CSRF).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.contacts.consent import ConsentContext, ConsentSource
from sendstream.contacts.errors import ContactNotFound, ListNotFound
from sendstream.contacts.lists import subscription_service
from sendstream.contacts.schemas import ContactUpdate
from sendstream.contacts.service import contact_service
from sendstream.contacts.suppression import address_hash, suppress
from sendstream.contacts.suppression_service import Target, suppression_service
from sendstream.core.outbox import emit
from sendstream.tracking import tokens
from sendstream.tracking.repository import (
    ContactView,
    ListChoice,
    MessageView,
    tracking_repository,
)
from sendstream.tracking.service import HitContext
from sendstream.tracking.tokens import Claim, Kind

Method = Literal["one_click", "preference_page", "mailto"]
Scope = Literal["list", "all"]
# States in which a person gets a list's mail (or is about to).
RECEIVING = frozenset({"subscribed", "unconfirmed"})


@dataclass(frozen=True)
class Preferences:
    """What the preference page shows."""

    workspace_name: str
    # The recipient's address with most of its local part hidden.
    masked_email: str | None
    # Global state of the contact (`active`, `unsubscribed` ...); None when
    # the recipient is no contact (only "unsubscribe from everything" then).
    contact_status: str | None
    # The list the message was sent for, if any.
    message_list: ListChoice | None
    # The workspace's public lists (and the message's list), by name.
    lists: list[ListChoice] = field(default_factory=list)
    # Set after a change: what was done, in words for the page.
    notice: str | None = None

    def receives(self, choice: ListChoice) -> bool:
        """Whether the person gets this list's mail now (a global unsubscribe
        stops every list, whatever the list's own state says)."""
        return choice.status in RECEIVING and self.contact_status != "unsubscribed"


@dataclass(frozen=True, slots=True)
class _Target:
    claim: Claim
    message: MessageView | None
    contact: ContactView | None


class UnsubscribeService:
    # --- one-click and mailto

    async def one_click(self, session: AsyncSession, token: str, hit: HitContext) -> bool:
        """RFC 8058: unsubscribe from the message's list (or everything).
        True when something changed. Raises `TrackingLinkInvalid`."""
        target = await self._target(session, tokens.read_token(token, Kind.UNSUBSCRIBE))
        return await self._unsubscribe(session, target, "list", "one_click", hit, text=None)

    async def by_mailto(self, session: AsyncSession, local_part: str, hit: HitContext) -> bool:
        """A mail to the List-Unsubscribe mailto address (for the inbound MX):
        same effect as one-click. False when the address is not a valid one."""
        parsed = tokens.read_mailto_local_part(local_part)
        if parsed is None:
            return False
        message_id, mac = parsed
        message = await tracking_repository.find_message_anywhere(session, message_id)
        if message is None or not tokens.check_mailto(message.workspace_id, message_id, mac):
            return False
        claim = Claim(
            Kind.UNSUBSCRIBE, message.workspace_id, message.id, message.contact_id, message.list_id
        )
        target = _Target(claim, message, await self._contact(session, claim))
        return await self._unsubscribe(session, target, "list", "mailto", hit, text=None)

    # --- the preference page

    async def preferences(self, session: AsyncSession, token: str) -> Preferences:
        """What the page shows; reads only (a GET: scanners open links)."""
        target = await self._target(session, tokens.read_token(token, Kind.UNSUBSCRIBE))
        return await self._preferences(session, target, notice=None)

    async def apply(
        self,
        session: AsyncSession,
        token: str,
        *,
        action: str,
        wanted: Collection[str],
        hit: HitContext,
    ) -> Preferences:
        """Apply the page's form: `unsubscribe_list`, `unsubscribe_all`, or
        `update` (subscribed to exactly the `wanted` list ids among those the
        page shows). Unknown actions and list ids change nothing."""
        target = await self._target(session, tokens.read_token(token, Kind.UNSUBSCRIBE))
        page = await self._preferences(session, target, notice=None)
        name = page.workspace_name
        if action == "unsubscribe_list" and page.message_list is not None:
            text = f"Unsubscribe me from {page.message_list.name}."
            await self._unsubscribe(session, target, "list", "preference_page", hit, text=text)
            notice = f"You are unsubscribed from {page.message_list.name}."
        elif action == "unsubscribe_all":
            text = f"Unsubscribe me from all email from {name}."
            await self._unsubscribe(session, target, "all", "preference_page", hit, text=text)
            notice = f"You will get no more email from {name}."
        elif action == "update" and target.contact is not None:
            await self._update_lists(session, target, page, set(wanted), hit)
            notice = "Your choices are saved."
        else:
            return page
        return await self._preferences(session, target, notice=notice)

    # --- the work

    async def _target(self, session: AsyncSession, claim: Claim) -> _Target:
        message = await tracking_repository.find_message(
            session, claim.workspace_id, claim.message_id
        )
        return _Target(claim, message, await self._contact(session, claim))

    async def _contact(self, session: AsyncSession, claim: Claim) -> ContactView | None:
        if claim.contact_id is None:
            return None
        return await tracking_repository.find_contact(session, claim.workspace_id, claim.contact_id)

    async def _preferences(
        self, session: AsyncSession, target: _Target, notice: str | None
    ) -> Preferences:
        claim, contact = target.claim, target.contact
        name = await tracking_repository.workspace_name(session, claim.workspace_id) or ""
        lists: list[ListChoice] = []
        if contact is not None:
            lists = await tracking_repository.list_choices(
                session, claim.workspace_id, contact.id, claim.list_id
            )
        message_list = next((c for c in lists if c.id == claim.list_id), None)
        return Preferences(
            workspace_name=name,
            masked_email=mask_email(contact.email) if contact is not None else None,
            contact_status=contact.status if contact is not None else None,
            message_list=message_list,
            lists=lists,
            notice=notice,
        )

    async def _unsubscribe(
        self,
        session: AsyncSession,
        target: _Target,
        scope: Scope,
        method: Method,
        hit: HitContext,
        *,
        text: str | None,
    ) -> bool:
        claim, contact = target.claim, target.contact
        context = _context("unsubscribe_link", hit, text)
        changed = False
        applied: Scope = scope
        if scope == "list":
            if claim.list_id is not None and contact is not None:
                try:
                    changed = await self._leave_list(
                        session, claim.workspace_id, contact, claim.list_id, context
                    )
                except (ContactNotFound, ListNotFound):
                    applied = "all"  # the list is gone: nothing narrower to leave
            else:
                applied = "all"
        if applied == "all":
            changed = await self._leave_everything(session, target, context)
        if changed:
            emit(
                session,
                claim.workspace_id,
                "message.unsubscribed",
                {
                    "message_id": claim.message_id,
                    "contact_id": claim.contact_id,
                    "list_id": claim.list_id if applied == "list" else None,
                    "scope": applied,
                    "method": method,
                },
                subject_type="message",
                subject_id=claim.message_id,
                occurred_at=hit.now,
            )
        return changed

    async def _leave_list(
        self,
        session: AsyncSession,
        ws: uuid.UUID,
        contact: ContactView,
        list_id: uuid.UUID,
        context: ConsentContext,
    ) -> bool:
        state = await tracking_repository.list_state(session, ws, contact.id, list_id)
        if state is None:
            raise ListNotFound(list_id)
        # Bounced or complained stay as they are: they say more than "unsubscribed".
        if state.status is not None and state.status not in RECEIVING:
            return False
        await subscription_service.set_subscription(
            session, ws, contact.id, list_id, "unsubscribed", context
        )
        return True

    async def _leave_everything(
        self, session: AsyncSession, target: _Target, context: ConsentContext
    ) -> bool:
        claim, contact, message = target.claim, target.contact, target.message
        ws = claim.workspace_id
        changed = False
        if contact is not None and contact.status == "active":
            await contact_service.update_contact(
                session, ws, contact.id, ContactUpdate(status="unsubscribed"), context
            )
            changed = True
        key = shown = None
        if contact is not None:
            key, shown = contact.email_key, contact.email
        elif message is not None:
            key, shown = message.to_email_key, message.to_email
        if key is not None:
            if await tracking_repository.suppression_reason(session, ws, address_hash(key)) is None:
                changed = True
            await suppress(
                session, ws, key, "unsubscribed", source="unsubscribe_link", address=shown
            )
        return changed

    async def _update_lists(
        self,
        session: AsyncSession,
        target: _Target,
        page: Preferences,
        wanted: set[str],
        hit: HitContext,
    ) -> None:
        """Subscribed to exactly the wanted lists among those shown. Choosing
        a list after "unsubscribe from everything" is fresh consent: the
        contact is active again and its `unsubscribed` suppression goes."""
        contact = target.contact
        if contact is None:
            return
        ws = target.claim.workspace_id
        welcome_back = False
        for choice in page.lists:
            want = str(choice.id) in wanted
            if want and not page.receives(choice):
                welcome_back = True
                if choice.status in RECEIVING:
                    continue  # still on the list: only the global state stopped it
                context = _context("form", hit, f"Subscribe me to {choice.name}.")
                await subscription_service.set_subscription(
                    session, ws, contact.id, choice.id, "subscribed", context
                )
            elif page.receives(choice) and not want:
                context = _context("unsubscribe_link", hit, f"Unsubscribe me from {choice.name}.")
                await subscription_service.set_subscription(
                    session, ws, contact.id, choice.id, "unsubscribed", context
                )
        if welcome_back and contact.status == "unsubscribed":
            names = ", ".join(c.name for c in page.lists if str(c.id) in wanted)
            context = _context("form", hit, f"Subscribe me again to {names}.")
            # Unchanged (and silent) when a list subscription above already did it.
            await contact_service.update_contact(
                session, ws, contact.id, ContactUpdate(status="active"), context
            )
        if welcome_back:
            await _lift_unsubscribe(session, ws, contact)


async def _lift_unsubscribe(session: AsyncSession, ws: uuid.UUID, contact: ContactView) -> None:
    """Fresh consent to a list lifts an earlier "unsubscribe from everything"
    (the contacts service sets the contact `active` again); its suppression
    entry goes with it. Any other reason (bounce, complaint, manual, erased)
    stays."""
    key_hash = address_hash(contact.email_key)
    if await tracking_repository.suppression_reason(session, ws, key_hash) == "unsubscribed":
        await suppression_service.remove(session, ws, Target(key_hash, contact.email, None))


def _context(source: ConsentSource, hit: HitContext, text: str | None) -> ConsentContext:
    return ConsentContext(
        source=source, actor="contact", ip=hit.ip, user_agent=hit.user_agent, text=text
    )


def mask_email(email: str) -> str:
    """`a***@example.com`: enough for the reader to recognise the address,
    not enough to learn it from a forwarded mail's link."""
    local, at, domain = email.rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


unsubscribe_service = UnsubscribeService()
