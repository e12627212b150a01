"""One claimed batch in the delivery loop: what it needs from the database
(loaded once per batch, some of it cached per process) and, per message,
the way from row to envelope and from SMTP answer to outcome.

- Suppression is checked again at send time: a `to` suppressed since
  queueing fails the message (`recipient_suppressed`, no SMTP); a suppressed
  `cc` or `bcc` is dropped from the message and the envelope.
- Compiled templates (by version) and DKIM keys (by workspace and From
  domain) are reused for `renderer_cache_seconds` / `signing_key_cache_seconds`;
  a refusal (domain not verified, template gone) is remembered just as long.
- A marketing message with a `list_id` whose recipient unsubscribed from
  that list since queueing fails (`recipient_unsubscribed_from_list`, no
  SMTP).
- A message that cannot be built fails on its own, with the code in
  `last_response`; the rest of the batch goes on.
- Templates render with `contact` = the message's contact (linked at queue
  time by address), loaded for the whole batch in two queries.
- The message's state follows its `to` recipient's SMTP outcome; cc and bcc
  ride along in the same transaction. When `to` is deferred, the copies the
  relay accepted are named in the `message.deferred` event
  (`copies_accepted`) and left out of the retry's envelope (they are still
  shown in the Cc header: it is the same message).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.contacts.addresses import InvalidAddress, normalize_address
from sendstream.contacts.service import contact_document
from sendstream.core.errors import SendstreamError
from sendstream.core.settings import Settings
from sendstream.delivery import compose, mime
from sendstream.delivery.compose import ComposeError, Outgoing
from sendstream.delivery.dkim import DkimKey
from sendstream.delivery.domain_service import domain_service
from sendstream.delivery.message_repository import COPIES_ACCEPTED, message_repository
from sendstream.delivery.send_rules import blocks, retry_at, suppressed_reasons
from sendstream.delivery.transport import DeliveryResult, Envelope, RecipientResult
from sendstream.delivery.worker_sql import Outcome, attachments_for
from sendstream.templates.render import CompiledTemplate
from sendstream.templates.service import template_service

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Values kept for `seconds` (monotonic clock), then asked for again."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._items: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        found = self._items.get(key)
        if found is None:
            return None
        if found[0] < time.monotonic():
            del self._items[key]
            return None
        return found[1]

    def put(self, key: K, value: V) -> None:
        if len(self._items) > 10_000:
            self._items.clear()
        self._items[key] = (time.monotonic() + self.seconds, value)


@dataclass(slots=True)
class BatchContext:
    # workspace -> matching key -> suppression reason
    suppressed: dict[uuid.UUID, dict[str, str]] = field(default_factory=dict)
    renderers: dict[tuple[uuid.UUID, uuid.UUID], CompiledTemplate | ComposeError] = field(
        default_factory=dict
    )
    keys: dict[tuple[uuid.UUID, str], list[DkimKey] | ComposeError] = field(default_factory=dict)
    attachments: dict[uuid.UUID, list[mime.Attachment]] = field(default_factory=dict)
    # contact id -> the contact as templates see it (`contact.*`); {} when gone
    contacts: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    # workspace -> (matching key, list id) -> subscription status refusing mail
    list_refusals: dict[uuid.UUID, dict[tuple[str, uuid.UUID], str]] = field(default_factory=dict)
    # message id -> copies (lower case) accepted on an earlier, deferred attempt
    copies_accepted: dict[uuid.UUID, set[str]] = field(default_factory=dict)


def _key(email: str) -> str:
    try:
        return normalize_address(email).key
    except InvalidAddress:
        return email.strip().lower()


def sender_domain(m: Outgoing) -> str:
    return m.from_email.rpartition("@")[2].lower()


class BatchPreparer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._renderers: TtlCache[tuple[uuid.UUID, uuid.UUID], CompiledTemplate | ComposeError] = (
            TtlCache(settings.delivery.renderer_cache_seconds)
        )
        self._keys: TtlCache[tuple[uuid.UUID, str], list[DkimKey] | ComposeError] = TtlCache(
            settings.delivery.signing_key_cache_seconds
        )

    async def prepare(
        self,
        session: AsyncSession,
        batch: Sequence[Outgoing],
        with_attachments: Collection[uuid.UUID] | None = None,
    ) -> BatchContext:
        """What `batch` needs, loaded once. `with_attachments` names the
        messages that have attachments when the caller knows (the claim
        says); None looks them up for every message."""
        ctx = BatchContext()
        keys_by_workspace: dict[uuid.UUID, set[str]] = {}
        for m in batch:
            wanted = keys_by_workspace.setdefault(m.workspace_id, set())
            wanted.add(m.to_email_key or _key(m.to_email))
            wanted.update(_key(str(c["email"])) for c in (*m.cc, *m.bcc))
        for workspace_id, wanted in keys_by_workspace.items():
            ctx.suppressed[workspace_id] = await suppressed_reasons(
                session, workspace_id, sorted(wanted)
            )
        for m in batch:
            if m.template_version_id is not None:
                versioned = (m.workspace_id, m.template_version_id)
                if versioned not in ctx.renderers:
                    ctx.renderers[versioned] = await self._renderer(session, *versioned)
            signed = (m.workspace_id, sender_domain(m))
            if signed not in ctx.keys:
                ctx.keys[signed] = await self._signing_keys(session, *signed)
        await self._recipients(session, batch, ctx)
        ctx.attachments = await attachments_for(
            session,
            [m.id for m in batch if with_attachments is None or m.id in with_attachments],
        )
        return ctx

    async def _recipients(
        self, session: AsyncSession, batch: Sequence[Outgoing], ctx: BatchContext
    ) -> None:
        """Contacts, list unsubscribes and copies already delivered: a query
        per workspace and kind, and none for a batch that needs none (the
        common transactional batch)."""
        contacts: dict[uuid.UUID, set[uuid.UUID]] = {}
        listed: dict[uuid.UUID, tuple[set[str], set[uuid.UUID]]] = {}
        retried: dict[uuid.UUID, list[uuid.UUID]] = {}
        for m in batch:
            if m.contact_id is not None:
                contacts.setdefault(m.workspace_id, set()).add(m.contact_id)
            if m.list_id is not None and m.stream == "marketing":
                keys, lists = listed.setdefault(m.workspace_id, (set(), set()))
                keys.add(m.to_email_key or _key(m.to_email))
                lists.add(m.list_id)
            if m.attempts > 1 and (m.cc or m.bcc):
                retried.setdefault(m.workspace_id, []).append(m.id)
        for workspace_id, ids in contacts.items():
            found = await message_repository.contacts(session, workspace_id, ids=sorted(ids))
            for contact, external in found:
                ctx.contacts[contact.id] = contact_document(contact, external)
            for gone in ids - ctx.contacts.keys():
                ctx.contacts[gone] = {}
        for workspace_id, (keys, lists) in listed.items():
            ctx.list_refusals[workspace_id] = await message_repository.list_refusals(
                session, workspace_id, sorted(keys), sorted(lists)
            )
        for workspace_id, message_ids in retried.items():
            ctx.copies_accepted.update(
                await message_repository.copies_accepted(session, workspace_id, message_ids)
            )

    async def _renderer(
        self, session: AsyncSession, workspace_id: uuid.UUID, version_id: uuid.UUID
    ) -> CompiledTemplate | ComposeError:
        found = self._renderers.get((workspace_id, version_id))
        if found is None:
            try:
                found = await template_service.get_version_renderer(
                    session, workspace_id, version_id
                )
            except SendstreamError as exc:
                found = ComposeError(exc.code, exc.message)
            self._renderers.put((workspace_id, version_id), found)
        return found

    async def _signing_keys(
        self, session: AsyncSession, workspace_id: uuid.UUID, domain: str
    ) -> list[DkimKey] | ComposeError:
        found = self._keys.get((workspace_id, domain))
        if found is None:
            try:
                found = await domain_service.signing_keys(session, workspace_id, domain)
            except SendstreamError as exc:
                found = ComposeError(exc.code, exc.message)
            self._keys.put((workspace_id, domain), found)
        return found


def failed(m: Outgoing, code: str, message: str, *, reason: str) -> Outcome:
    """A message that fails without an SMTP answer (suppressed, cannot be built)."""
    response = f"{code}: {message}"[:2000]
    return Outcome(
        workspace_id=m.workspace_id,
        message_id=m.id,
        attempt=m.attempts,
        status="failed",
        code=None,
        response=response,
        event={
            "message_id": str(m.id),
            "to": m.to_email,
            "contact_id": _text(m.contact_id),
            "attempt": m.attempts,
            "reason": reason,
            "code": code,
            "response": response,
        },
    )


def retry_later(m: Outgoing, why: str, settings: Settings) -> Outcome:
    """`deferred` without an SMTP answer (a fault of ours, not the
    message's): tried again on the usual schedule, failed when it runs out."""
    now = datetime.now(UTC)
    again = retry_at(settings.delivery, m.attempts, m.first_due or now, now)
    if again is None:
        return failed(m, "retries_exhausted", why, reason="retries_exhausted")
    return Outcome(
        workspace_id=m.workspace_id,
        message_id=m.id,
        attempt=m.attempts,
        status="deferred",
        code=None,
        response=why[:2000],
        event={
            "message_id": str(m.id),
            "to": m.to_email,
            "contact_id": _text(m.contact_id),
            "attempt": m.attempts,
            "response": why[:2000],
            "next_attempt_at": again.isoformat(),
        },
        next_attempt_at=again,
    )


def envelope_for(
    m: Outgoing, ctx: BatchContext, settings: Settings, *, date: datetime | None = None
) -> Envelope | Outcome:
    """The signed message and its envelope, or the `failed` outcome saying why not."""
    suppressed = ctx.suppressed.get(m.workspace_id, {})
    reason = suppressed.get(m.to_email_key or _key(m.to_email))
    if reason is not None and blocks(reason, m.stream):
        return failed(
            m,
            "recipient_suppressed",
            f"{m.to_email} was suppressed ({reason}) after the message was queued",
            reason="suppressed",
        )
    if m.list_id is not None and m.stream == "marketing":
        refusals = ctx.list_refusals.get(m.workspace_id, {})
        status = refusals.get((m.to_email_key or _key(m.to_email), m.list_id))
        if status is not None:
            return failed(
                m,
                "recipient_unsubscribed_from_list",
                f"{m.to_email} is {status} on list {m.list_id} since the message was queued",
                reason="unsubscribed_from_list",
            )

    def kept(copies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for copy in copies:
            why = suppressed.get(_key(str(copy["email"])))
            if why is None or not blocks(why, m.stream):
                out.append(copy)
        return out

    cc, bcc = kept(m.cc), kept(m.bcc)
    try:
        renderer = None
        if m.template_version_id is not None:
            found = ctx.renderers[(m.workspace_id, m.template_version_id)]
            if isinstance(found, ComposeError):
                raise found
            renderer = found
        keys = ctx.keys[(m.workspace_id, sender_domain(m))]
        if isinstance(keys, ComposeError):
            raise keys
        tracking = compose.tracking_context(m, settings)
        contact = ctx.contacts.get(m.contact_id) if m.contact_id is not None else None
        content = compose.render(m, renderer, settings, contact=contact, tracking=tracking)
        raw = compose.build(
            m,
            content,
            settings,
            attachments=ctx.attachments.get(m.id, ()),
            cc=cc,
            tracking=tracking,
            date=date,
        )
        done = ctx.copies_accepted.get(m.id)
        if done:
            # The Cc header stays as it was; only the envelope skips them.
            cc = [c for c in cc if str(c["email"]).lower() not in done]
            bcc = [c for c in bcc if str(c["email"]).lower() not in done]
        return compose.envelope(m, compose.sign(raw, keys), settings, cc=cc, bcc=bcc)
    except ComposeError as exc:
        return failed(m, exc.code, exc.message, reason="compose")


def _primary(envelope: Envelope, result: DeliveryResult) -> RecipientResult | None:
    """The `to` recipient's result (the envelope's first recipient)."""
    wanted = envelope.recipients[0].lower()
    for item in result.results:
        if item.recipient.lower() == wanted:
            return item
    return result.results[0] if result.results else None


def _copies_accepted(
    envelope: Envelope, result: DeliveryResult, primary: RecipientResult
) -> list[str]:
    """The copies this attempt delivered (not the `to` recipient). None when
    the connection broke before the final reply: then nobody is known to
    have it, and everyone gets the retry."""
    if result.uncertain:
        return []
    return [r.recipient for r in result.results if r is not primary and r.outcome == "sent"]


def _text(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None


def outcome_of(
    m: Outgoing,
    envelope: Envelope,
    result: DeliveryResult,
    settings: Settings,
    now: datetime | None = None,
) -> Outcome:
    """sent, deferred (with the next try) or failed, from the SMTP answer."""
    now = now or datetime.now(UTC)
    primary = _primary(envelope, result)
    if primary is None:
        primary = RecipientResult(envelope.recipients[0], "deferred", None, None, "no answer")
    code = primary.code
    # A relay's text goes into a PostgreSQL text column: no NUL, bounded.
    reply = primary.response.replace("\x00", "")
    response = ((f"{code} " if code is not None else "") + reply)[:2000]
    event: dict[str, Any] = {
        "message_id": str(m.id),
        "to": m.to_email,
        "contact_id": _text(m.contact_id),
        "attempt": m.attempts,
        "smtp_code": code,
        "enhanced": primary.enhanced,
        "response": response,
        "relay": result.relay,
    }
    status = primary.outcome
    next_attempt_at = None
    if status == "sent":
        event |= {"size_bytes": len(envelope.data), "sent_at": now.isoformat()}
    elif status == "deferred":
        next_attempt_at = retry_at(settings.delivery, m.attempts, m.first_due or now, now)
        if next_attempt_at is not None:
            event |= {"next_attempt_at": next_attempt_at.isoformat(), "uncertain": result.uncertain}
            accepted = _copies_accepted(envelope, result, primary)
            if accepted:
                event[COPIES_ACCEPTED] = accepted
        else:
            status = "failed"
            hours = settings.delivery.max_retry_hours
            response = f"gave up after {m.attempts} attempts in {hours:g} h: {response}"[:2000]
            event |= {"reason": "retries_exhausted", "code": "retries_exhausted"}
            event["response"] = response
    else:
        event |= {"reason": "smtp", "code": "smtp_rejected"}
    return Outcome(
        workspace_id=m.workspace_id,
        message_id=m.id,
        attempt=m.attempts,
        status=status,
        code=code,
        response=response,
        event=event,
        next_attempt_at=next_attempt_at,
        relay=result.relay,
        size=len(envelope.data) if status == "sent" else None,
        sent_at=now if status == "sent" else None,
    )
