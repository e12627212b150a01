"""Acting on what a bounce, complaint or auto-reply says about one recipient
(docs/bounces.md, "What happens to a bounce"). Every channel ends here: the
MX and IMAP mailbox through `bounces.process` (intake.py), ESP webhooks
through `bounce_service.apply`.

- Hard bounce: the address is suppressed (`bounced`, source `bounce`), the
  contact and its list subscriptions become `bounced`, the message
  `bounced`; `message.bounced` (and `contact.bounced`) are emitted.
- Complaint: suppressed (`complained`), contact and lists `complained`, the
  message `complained`; `message.complained` (and `contact.complained`).
- Soft bounce: `message.bounced` with `hard: false`; the message keeps its
  state. Soft bounces that say something about the address (mailbox full,
  expired retries, an unreachable host ...; not spam blocks, policy or rate
  limits, which are about the message or the sender) count per address; at
  `bounces.soft_bounce_limit` within `bounces.soft_bounce_window_days` the
  address is suppressed (`bounced`, source `soft_bounce_policy`).
- Delay ("still trying" DSN): `message.delayed`, nothing else.
- Auto-reply or challenge: `message.auto_replied`; never suppresses.
- Unsubscribe (ARF opt-out, a provider's unsubscribe event): as the
  message's List-Unsubscribe mailto address would (tracking/unsubscribe.py).
- Delivered (an ESP's delivery event): a `sent` message becomes `delivered`,
  `message.delivered`.

Every verdict but `delivered` is kept as a `bounce_records` row whose
`dedup_key` makes acting idempotent: the same verdict acted on again (a job
re-run, a provider retrying its webhook) changes and emits nothing.

Only the workspace given is ever read or changed: the message is looked up
by id within it, and a recipient that is none of the message's own is
recorded, never acted on (`not_a_recipient`), so a report cannot suppress
addresses a workspace never mailed through someone else's message.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.bounces.repository import MessageFacts, bounce_repository
from sendstream.bounces.verdict import Reason, RecipientVerdict
from sendstream.contacts.addresses import InvalidAddress, normalize_address
from sendstream.contacts.consent import ConsentContext, ConsentSource, record_consent
from sendstream.contacts.schemas import ContactUpdate
from sendstream.contacts.service import contact_service
from sendstream.contacts.suppression import address_hash
from sendstream.contacts.suppression_service import Target, suppression_service
from sendstream.core.outbox import emit
from sendstream.core.settings import get_settings
from sendstream.tracking.service import HitContext
from sendstream.tracking.tokens import mailto_local_part
from sendstream.tracking.unsubscribe import unsubscribe_service

SUBJECT_MESSAGE: Final = "message"
SUBJECT_CONTACT: Final = "contact"
# Soft-bounce reasons that say the address itself is in trouble; only these
# count toward the soft-bounce policy.
ADDRESS_REASONS: Final = frozenset(
    {
        Reason.mailbox_full,
        Reason.expired,
        Reason.network,
        Reason.host_unknown,
        Reason.user_unknown,
        Reason.suspended,
        Reason.unknown,
    }
)
# Contact and list states, weakest first: a bounce or complaint only ever
# strengthens a state (as suppression reasons do, contacts/suppression.py).
_CONTACT_RANK: Final = ("active", "unsubscribed", "bounced", "complained")
_LIST_RANK: Final = ("subscribed", "unconfirmed", "unsubscribed", "bounced", "complained")
# Message states a hard bounce or a complaint may end (a message being sent
# right now is its worker's; `failed` was refused by our relay already).
_BOUNCEABLE: Final = ("sent", "deferred", "delivered")
_COMPLAINABLE: Final = ("sent", "delivered")
# Column sizes of bounce_records (values from remote servers are cut, not refused).
_LIMITS: Final = {
    "recipient": 320,
    "status": 16,
    "remote_mta": 255,
    "feedback_type": 64,
    "reason": 32,
}


# Longest diagnostic kept (records and events); remote servers write essays.
MAX_DIAGNOSTIC: Final = 2000


def _cut(value: str | None, column: str) -> str | None:
    return value[: _LIMITS[column]] if value is not None else None


def _text(value: str | None, limit: int | None = None) -> str | None:
    """Text from a remote server as PostgreSQL can keep it (text and JSONB
    refuse NUL), trimmed to `limit`."""
    if value is None:
        return None
    clean = value.replace("\x00", "").strip()
    return clean[:limit] if limit is not None else clean


def _clean(verdict: RecipientVerdict) -> RecipientVerdict:
    return replace(
        verdict,
        recipient=_text(verdict.recipient),
        status=_text(verdict.status),
        diagnostic=_text(verdict.diagnostic, MAX_DIAGNOSTIC),
        remote_mta=_text(verdict.remote_mta),
    )


def _dedup_key(
    *,
    source: str,
    inbound_message_id: uuid.UUID | None,
    message_id: uuid.UUID | None,
    recipient: str,
    verdict: RecipientVerdict,
    occurred_at: datetime | None,
) -> str:
    """Identifies one verdict of one report. For inbound mail the mail's
    id does it; for ESP events the event's time (`occurred_at`) tells two
    bounces of one message apart."""
    parts = [
        source,
        str(inbound_message_id or ""),
        str(message_id or ""),
        recipient,
        verdict.kind,
        str(verdict.reason),
        str(verdict.hard),
        verdict.status or "",
        occurred_at.isoformat() if occurred_at is not None and inbound_message_id is None else "",
    ]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class BounceService:
    async def apply(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        verdict: RecipientVerdict,
        *,
        message_id: uuid.UUID | None,
        source: str,
        inbound_message_id: uuid.UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> None:
        """Act on a verdict that arrived already parsed (an ESP webhook).
        `message_id` names our message when the provider's event carries it;
        a message of another workspace (or none) is treated as unknown and
        only the address-level action (suppression, contact state) is taken
        in `workspace_id`. Idempotent: pass the provider's event time as
        `occurred_at` so a retried webhook is recognised."""
        message = None
        if message_id is not None:
            message = await bounce_repository.find_message(session, workspace_id, message_id)
        await self.act(
            session,
            workspace_id,
            verdict,
            message=message,
            source=source,
            inbound_message_id=inbound_message_id,
            occurred_at=occurred_at,
            sole=True,
        )

    async def act(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        verdict: RecipientVerdict,
        *,
        message: MessageFacts | None,
        source: str,
        inbound_message_id: uuid.UUID | None,
        occurred_at: datetime | None,
        sole: bool,
        feedback_type: str | None = None,
    ) -> str:
        """Act on one verdict about `message` (of `workspace_id`, or None);
        returns what was done (the record's `action`, or `duplicate`).
        `sole`: the verdict is its report's only one, so a recipient that is
        not the message's own (a forwarded address, a redacted complaint) is
        taken for the message's recipient."""
        if message is not None and message.workspace_id != workspace_id:
            message = None  # never act on another workspace's message
        verdict = _clean(verdict)
        feedback_type = _text(feedback_type)
        if verdict.kind == "delivered":
            return await self._delivered(session, workspace_id, verdict, message, source)
        recipient, key, action = self._recipient(verdict, message, sole)
        when = occurred_at or datetime.now(UTC)
        record_id = await bounce_repository.record(
            session,
            {
                "workspace_id": workspace_id,
                "message_id": message.id if message is not None else None,
                "inbound_message_id": inbound_message_id,
                "source": source[:16],
                "recipient": _cut(recipient or verdict.recipient, "recipient"),
                "recipient_key": _cut(key, "recipient"),
                "kind": verdict.kind,
                "hard": verdict.hard,
                "reason": _cut(str(verdict.reason), "reason"),
                "status": _cut(verdict.status, "status"),
                "diagnostic": verdict.diagnostic,
                "remote_mta": _cut(verdict.remote_mta, "remote_mta"),
                "feedback_type": _cut(feedback_type, "feedback_type"),
                "action": action or "recorded",
                "dedup_key": _dedup_key(
                    source=source,
                    inbound_message_id=inbound_message_id,
                    message_id=message.id if message is not None else None,
                    recipient=key or verdict.recipient or "",
                    verdict=verdict,
                    occurred_at=occurred_at,
                ),
                "occurred_at": when,
            },
        )
        if record_id is None:
            return "duplicate"
        if action is not None or recipient is None or key is None:
            return action or "recorded"
        act = _Act(workspace_id, verdict, message, recipient, key, source, when, feedback_type)
        if verdict.kind == "bounce" and verdict.hard:
            done = await self._hard(session, act)
        elif verdict.kind == "bounce":
            done = await self._soft(session, act)
        elif verdict.kind == "complaint":
            done = await self._complaint(session, act)
        elif verdict.kind == "delay":
            done = self._announce(session, act, "message.delayed")
        elif verdict.kind == "auto_reply":
            done = self._announce(session, act, "message.auto_replied")
        elif verdict.kind == "unsubscribe":
            done = await self._unsubscribe(session, act)
        else:
            done = "recorded"
        if done != "recorded":
            await bounce_repository.set_action(session, workspace_id, record_id, done)
        return done

    # --- whom a verdict is about

    def _recipient(
        self, verdict: RecipientVerdict, message: MessageFacts | None, sole: bool
    ) -> tuple[str | None, str | None, str | None]:
        """(address, matching key, action when nothing is to be done)."""
        if verdict.recipient is None or not verdict.recipient.strip():
            if message is None:
                return None, None, "no_recipient"
            return message.to_email, message.to_email_key, None
        try:
            address = normalize_address(verdict.recipient)
        except InvalidAddress:
            address = None
        if message is None:
            if address is None:
                return verdict.recipient, None, "invalid_recipient"
            return address.email, address.key, None
        if address is not None and address.key in _keys(message):
            return address.email, address.key, None
        if sole and not message.copies:
            # The report names another address for the message's only
            # recipient (forwarding, a redacted ARF report): the VERP return
            # path identified the recipient without guessing.
            return message.to_email, message.to_email_key, None
        return verdict.recipient, address.key if address else None, "not_a_recipient"

    # --- the actions

    async def _hard(self, session: AsyncSession, act: _Act) -> str:
        await self._suppress(session, act, "bounced", "bounce")
        contact_id = await self._contact_state(session, act, "bounced", "bounce")
        if act.is_to and act.message is not None:
            await bounce_repository.set_message_status(
                session, act.workspace_id, act.message.id, "bounced", when_in=_BOUNCEABLE
            )
        self._bounced_event(session, act, contact_id)
        return "suppressed"

    async def _soft(self, session: AsyncSession, act: _Act) -> str:
        settings = get_settings().bounces
        contact_id = act.message.contact_id if act.is_to and act.message else None
        done = "recorded"
        if settings.soft_bounce_limit > 0 and act.verdict.reason in ADDRESS_REASONS:
            await bounce_repository.lock_address(session, act.workspace_id, act.key)
            count = await bounce_repository.count_soft(
                session,
                act.workspace_id,
                act.key,
                since=act.occurred_at - timedelta(days=settings.soft_bounce_window_days),
                reasons=[str(r) for r in ADDRESS_REASONS],
            )
            done = "counted"
            if count >= settings.soft_bounce_limit:
                await self._suppress(session, act, "bounced", "soft_bounce_policy")
                found = await self._contact_state(session, act, "bounced", "bounce")
                contact_id = found or contact_id
                done = "suppressed_by_policy"
        self._bounced_event(session, act, contact_id)
        return done

    async def _complaint(self, session: AsyncSession, act: _Act) -> str:
        await self._suppress(session, act, "complained", "complaint")
        contact_id = await self._contact_state(session, act, "complained", "complaint")
        if act.is_to and act.message is not None:
            await bounce_repository.set_message_status(
                session, act.workspace_id, act.message.id, "complained", when_in=_COMPLAINABLE
            )
        emit(
            session,
            act.workspace_id,
            "message.complained",
            {
                "message_id": act.message_id,
                "contact_id": contact_id,
                "recipient": act.recipient,
                "feedback_type": act.feedback_type,
                "source": act.source,
            },
            subject_type=act.subject_type,
            subject_id=act.message_id,
        )
        return "suppressed"

    def _announce(self, session: AsyncSession, act: _Act, event_type: str) -> str:
        emit(
            session,
            act.workspace_id,
            "message.delayed" if event_type == "message.delayed" else "message.auto_replied",
            {
                "message_id": act.message_id,
                "contact_id": act.message.contact_id if act.is_to and act.message else None,
                "recipient": act.recipient,
                "reason": str(act.verdict.reason),
                "status": act.verdict.status,
                "diagnostic": act.verdict.diagnostic,
                "source": act.source,
            },
            subject_type=act.subject_type,
            subject_id=act.message_id,
        )
        return "recorded"

    async def _unsubscribe(self, session: AsyncSession, act: _Act) -> str:
        hit = HitContext("MAIL", None, None, act.occurred_at)
        if act.is_to and act.message is not None:
            # Exactly what the message's List-Unsubscribe mailto address does.
            local = mailto_local_part(act.workspace_id, act.message.id)
            changed = await unsubscribe_service.by_mailto(session, local, hit)
            return "unsubscribed" if changed else "unchanged"
        await suppression_service.add_suppression(
            session,
            act.workspace_id,
            Target(address_hash(act.key), act.recipient, None),
            reason="unsubscribed",
            source="unsubscribe_link",
        )
        contact = await bounce_repository.find_contact(session, act.workspace_id, act.key)
        if contact is not None and contact.status == "active":
            await contact_service.update_contact(
                session,
                act.workspace_id,
                contact.id,
                ContactUpdate(status="unsubscribed"),
                ConsentContext(source="unsubscribe_link", actor="system"),
            )
        return "unsubscribed"

    async def _delivered(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        verdict: RecipientVerdict,
        message: MessageFacts | None,
        source: str,
    ) -> str:
        if message is None:
            return "recorded"
        moved = await bounce_repository.set_message_status(
            session, workspace_id, message.id, "delivered", when_in=("sent",)
        )
        if not moved:
            return "duplicate"
        emit(
            session,
            workspace_id,
            "message.delivered",
            {
                "message_id": message.id,
                "contact_id": message.contact_id,
                "recipient": message.to_email,
                "diagnostic": verdict.diagnostic,
                "source": source,
            },
            subject_type=SUBJECT_MESSAGE,
            subject_id=message.id,
        )
        return "delivered"

    # --- shared steps

    async def _suppress(self, session: AsyncSession, act: _Act, reason: str, source: str) -> None:
        await suppression_service.add_suppression(
            session,
            act.workspace_id,
            Target(address_hash(act.key), act.recipient, None),
            reason=reason,
            source=source,
        )

    async def _contact_state(
        self, session: AsyncSession, act: _Act, status: str, source: ConsentSource
    ) -> uuid.UUID | None:
        """Strengthen the contact's global state and its list states to
        `status` (never weaken them), with a consent record per change and
        one `contact.bounced` / `contact.complained` when anything changed.
        Returns the contact's id (None when the address is no contact)."""
        contact = await bounce_repository.find_contact(session, act.workspace_id, act.key)
        if contact is None:
            return None
        context = ConsentContext(source=source, actor="system", text=act.verdict.diagnostic)
        previous = contact.status
        changed_global = _CONTACT_RANK.index(status) > _rank(_CONTACT_RANK, previous)
        if changed_global:
            await bounce_repository.set_contact_status(session, contact, status)
            record_consent(
                session,
                workspace_id=act.workspace_id,
                contact_id=contact.id,
                list_id=None,
                status=status,
                previous_status=previous,
                context=context,
            )
        weaker = _LIST_RANK[: _LIST_RANK.index(status)]
        lists = await bounce_repository.raise_list_states(
            session, act.workspace_id, contact.id, status, from_states=weaker
        )
        for list_id, was in lists:
            record_consent(
                session,
                workspace_id=act.workspace_id,
                contact_id=contact.id,
                list_id=list_id,
                status=status,
                previous_status=was,
                context=context,
            )
        if changed_global or lists:
            emit(
                session,
                act.workspace_id,
                "contact.bounced" if status == "bounced" else "contact.complained",
                {
                    "id": contact.id,
                    "email": contact.email,
                    "status": status,
                    "previous_status": previous,
                    "list_ids": [list_id for list_id, _ in lists],
                    "message_id": act.message_id,
                    "reason": str(act.verdict.reason),
                    "source": act.source,
                },
                subject_type=SUBJECT_CONTACT,
                subject_id=contact.id,
            )
        return contact.id

    def _bounced_event(
        self, session: AsyncSession, act: _Act, contact_id: uuid.UUID | None
    ) -> None:
        emit(
            session,
            act.workspace_id,
            "message.bounced",
            {
                "message_id": act.message_id,
                "contact_id": contact_id,
                "recipient": act.recipient,
                "hard": bool(act.verdict.hard),
                "reason": str(act.verdict.reason),
                "status": act.verdict.status,
                "diagnostic": act.verdict.diagnostic,
                "source": act.source,
            },
            subject_type=act.subject_type,
            subject_id=act.message_id,
        )


class _Act:
    """One verdict being acted on, with whom and what it is about."""

    __slots__ = (
        "feedback_type",
        "key",
        "message",
        "occurred_at",
        "recipient",
        "source",
        "verdict",
        "workspace_id",
    )

    def __init__(
        self,
        workspace_id: uuid.UUID,
        verdict: RecipientVerdict,
        message: MessageFacts | None,
        recipient: str,
        key: str,
        source: str,
        occurred_at: datetime,
        feedback_type: str | None,
    ) -> None:
        self.workspace_id = workspace_id
        self.verdict = verdict
        self.message = message
        self.recipient = recipient
        self.key = key
        self.source = source
        self.occurred_at = occurred_at
        self.feedback_type = feedback_type

    @property
    def message_id(self) -> uuid.UUID | None:
        return self.message.id if self.message is not None else None

    @property
    def is_to(self) -> bool:
        """The verdict is about the message's `to` recipient (its state is theirs)."""
        return self.message is not None and self.key == self.message.to_email_key

    @property
    def subject_type(self) -> str | None:
        """Events are the message's when there is one (its events list them)."""
        return SUBJECT_MESSAGE if self.message is not None else None


def _keys(message: MessageFacts) -> set[str]:
    keys = {message.to_email_key}
    for copy in message.copies:
        try:
            keys.add(normalize_address(copy).key)
        except InvalidAddress:
            continue
    return keys


def _rank(order: tuple[str, ...], state: str | None) -> int:
    return order.index(state) if state in order else -1


bounce_service = BounceService()
