"""The rules of the send API: queueing messages and reading them back.

A send request becomes one `messages` row per `to` address, in state
`queued`, with a `message.queued` event each, in the request's transaction;
the delivery loop (worker.py) does the rest. Everything that would make a
message fail for certain is refused now, with its own code, and nothing of
the request (or of that batch item) is queued:

- addresses, headers, attachments, content, scheduling (message_prepare.py);
- the template (`template_not_found`, `template_version_not_found` ...);
  every recipient is rendered once with its data, so a strict template
  missing a variable is refused (`template_undefined_variable`), and the
  first recipient's message is built into MIME (the result is dropped: the
  loop renders again when it sends; inline content the SMTP relay read from
  MIME gets its header section built, its bodies checked, not encoded);
- the sender's domain (`unknown_sending_domain`, `domain_not_verified`);
- suppressed recipients, `to`, `cc` and `bcc` alike (`recipient_suppressed`;
  transactional messages pass an `unsubscribed` entry, never the others);
- an unknown `list_id` (`list_not_found`); a marketing message with a
  `list_id` to a contact unsubscribed from that list
  (`recipient_unsubscribed_from_list`; the `to` address only).

A `to` address that matches a contact of the workspace (by matching key)
links the message to it (`messages.contact_id`, `contact_id` in its events),
and templates render with that contact as `contact`, at queue time (the
check) and at send time.

Template test-sends (`send_test`) render the template once per recipient at
queue time and queue the result as an inline, transactional message whose
subject starts with `[Test] `, tagged `test`; every rule above applies.

Template, list and sending-domain faults that are 404 or 409 on their own
routes are 422 here: the request names something unusable, it does not
address a missing resource.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.contacts.addresses import InvalidAddress, normalize_address
from sendstream.contacts.service import contact_document, contact_service
from sendstream.core.errors import InvalidInput, SendstreamError
from sendstream.core.ids import uuid7
from sendstream.core.outbox import json_default
from sendstream.core.pagination import PageParams, cursor_uuid, trim_page
from sendstream.core.settings import Settings, get_settings
from sendstream.delivery import compose, mime
from sendstream.delivery.errors import (
    InvalidMessage,
    MessageNotCaptured,
    MessageNotFound,
    RecipientSuppressed,
)
from sendstream.delivery.message_prepare import Draft, party, prepare, stored_address
from sendstream.delivery.message_repository import message_repository
from sendstream.delivery.message_schemas import (
    AddressInput,
    AddressRead,
    AttachmentRead,
    BatchItemResult,
    BatchQueued,
    MessageBatch,
    MessageCreate,
    MessageEvent,
    MessageRead,
    MessagesQueued,
    MessageSummary,
    QueuedMessage,
    TemplateTestSend,
)
from sendstream.delivery.send_rules import (
    blocks,
    check_sending_domain,
    suppressed_reasons,
    tracking_flags,
)
from sendstream.models.message import CapturedMessage, Message
from sendstream.templates.render import CompiledTemplate, RenderContext
from sendstream.templates.service import template_service

Result = list[QueuedMessage] | SendstreamError
# What marks a test-send in the inbox (Postmark and Mailchimp do the same).
TEST_SUBJECT_PREFIX = "[Test] "
TEST_TAG = "test"


@dataclass(frozen=True, slots=True)
class _TestSend:
    """A template test-send: rendered at queue time, for this contact."""

    contact: dict[str, Any] | None


@dataclass(slots=True)
class _Plan:
    """One accepted request item: its rows, ready to insert."""

    draft: Draft
    messages: list[compose.Outgoing]
    send_at: datetime | None
    test: bool = False


class MessageService:
    # --- queueing

    async def send_message(
        self, session: AsyncSession, workspace_id: uuid.UUID, body: MessageCreate
    ) -> MessagesQueued:
        settings = get_settings()
        (result,) = await self._queue(
            session, workspace_id, [prepare(body, settings.delivery)], settings
        )
        if isinstance(result, SendstreamError):
            raise result
        return MessagesQueued(messages=result)

    async def send_batch(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        batch: MessageBatch,
        *,
        from_mime: bool = False,
    ) -> BatchQueued:
        """Each item checked on its own: the valid ones are queued, the others
        answered with their code; one transaction for the lot.

        `from_mime`: the items were read from MIME messages (the SMTP relay),
        so their inline bodies are decoded text; the queue-time check builds
        the header section but does not encode the bodies again (see
        `_check_inline`). Every fault is refused as without it, same codes."""
        settings = get_settings()
        drafts: list[Draft | SendstreamError] = []
        for raw in batch.messages:
            try:
                drafts.append(prepare(MessageCreate.model_validate(raw), settings.delivery))
            except ValidationError as exc:
                drafts.append(InvalidInput(_first_error(exc)))
            except SendstreamError as exc:
                drafts.append(exc)
        results = await self._queue(session, workspace_id, drafts, settings, from_mime=from_mime)
        items = [
            BatchItemResult(index=i, status="rejected", code=r.code, error=r.message)
            if isinstance(r, SendstreamError)
            else BatchItemResult(index=i, status="queued", messages=r)
            for i, r in enumerate(results)
        ]
        return BatchQueued(
            queued=sum(len(item.messages) for item in items),
            rejected=sum(item.status == "rejected" for item in items),
            results=items,
        )

    async def send_test(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        template: str,
        version: int | None,
        body: TemplateTestSend,
    ) -> MessagesQueued:
        """Send the template (its active version, or `version`) to 1-5
        addresses with `data` (default: the version's sample data) and, given
        `contact_id`, as that contact: what a preview shows, in an inbox."""
        settings = get_settings()
        renderer = await template_service.get_renderer(session, workspace_id, template, version)
        main = renderer.bundle.main
        data = body.data
        if data is None:
            stored = await template_service.get_version(
                session, workspace_id, main.template_id, main.number
            )
            data = stored.sample_data
        contact = None
        if body.contact_id is not None:
            read = await contact_service.get_contact(session, workspace_id, body.contact_id)
            contact = read.model_dump(mode="json")
        # Once up front, so a template fault answers with its line and column
        # (the per-recipient render below keeps only the code and message).
        renderer.render(RenderContext(contact=contact, data=data))
        create = MessageCreate.model_validate(
            {
                "from": body.from_,
                "to": body.to,
                "reply_to": body.reply_to,
                "template": str(main.template_id),
                "version": main.number,
                "data": data,
                "stream": "transactional",
                "tags": [TEST_TAG],
                "metadata": {
                    "test": True,
                    "template_id": str(main.template_id),
                    "template_key": main.key,
                    "template_version": main.number,
                },
            }
        )
        (result,) = await self._queue(
            session,
            workspace_id,
            [prepare(create, settings.delivery)],
            settings,
            test=_TestSend(contact),
        )
        if isinstance(result, SendstreamError):
            raise result
        return MessagesQueued(messages=result)

    async def _queue(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        drafts: Sequence[Draft | SendstreamError],
        settings: Settings,
        test: _TestSend | None = None,
        *,
        from_mime: bool = False,
    ) -> list[Result]:
        out: list[Result | None] = [d if isinstance(d, SendstreamError) else None for d in drafts]
        limits = settings.delivery
        rows, content = limits.max_messages_per_request, limits.max_request_content_bytes
        live: list[tuple[int, Draft]] = []
        for index, draft in enumerate(drafts):
            if isinstance(draft, SendstreamError):
                continue
            if len(draft.recipients) > rows:
                out[index] = InvalidMessage(
                    f"one request queues at most {limits.max_messages_per_request} messages "
                    "(one per `to` address); send the rest in another request.",
                    code="too_many_messages",
                )
                continue
            if draft.stored_bytes > content:
                out[index] = InvalidMessage(
                    f"one request stores at most {limits.max_request_content_bytes} bytes of "
                    "content and data (counted once per `to` address); send fewer recipients "
                    "per request, or use a template.",
                    code="request_too_large",
                )
                continue
            rows -= len(draft.recipients)
            content -= draft.stored_bytes
            live.append((index, draft))

        lookups = await self._lookups(session, workspace_id, [d for _, d in live])
        plans: list[_Plan] = []
        for index, draft in live:
            try:
                plan = await self._plan(
                    session, workspace_id, draft, lookups, settings, test, from_mime=from_mime
                )
            except SendstreamError as exc:
                out[index] = exc
                continue
            plans.append(plan)
            out[index] = [
                QueuedMessage(
                    id=m.id, to=m.to_email, message_id=m.message_id_header, send_at=plan.send_at
                )
                for m in plan.messages
            ]
        await self._write(session, workspace_id, plans)
        return [r if r is not None else [] for r in out]

    async def _lookups(
        self, session: AsyncSession, workspace_id: uuid.UUID, drafts: Sequence[Draft]
    ) -> _Lookups:
        """What every item of a request needs from the database, one query
        per kind (templates once per distinct reference)."""
        found = _Lookups()
        for draft in drafts:
            body = draft.body
            if body.template is None or (body.template, body.version) in found.renderers:
                continue
            try:
                renderer: CompiledTemplate | SendstreamError = await template_service.get_renderer(
                    session, workspace_id, body.template, body.version
                )
            except SendstreamError as exc:
                renderer = _unusable(exc)
            found.renderers[(body.template, body.version)] = renderer
        keys = sorted({p.key for d in drafts for _, p in d.everyone})
        found.suppressed = await suppressed_reasons(session, workspace_id, keys)
        list_ids = sorted({d.body.list_id for d in drafts if d.body.list_id is not None})
        found.lists = await message_repository.existing_lists(session, workspace_id, list_ids)
        to_keys = sorted({r.party.key for d in drafts for r in d.recipients})
        for contact, external in await message_repository.contacts(
            session, workspace_id, keys=to_keys
        ):
            found.contacts[contact.email_key] = (contact.id, contact_document(contact, external))
        listed = [d for d in drafts if d.body.list_id is not None and d.body.stream == "marketing"]
        if listed:
            found.list_refusals = await message_repository.list_refusals(
                session,
                workspace_id,
                sorted({r.party.key for d in listed for r in d.recipients}),
                sorted({d.body.list_id for d in listed if d.body.list_id is not None}),
            )
        return found

    async def _plan(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        draft: Draft,
        lookups: _Lookups,
        settings: Settings,
        test: _TestSend | None = None,
        *,
        from_mime: bool = False,
    ) -> _Plan:
        body = draft.body
        renderer: CompiledTemplate | None = None
        if body.template is not None:
            found = lookups.renderers[(body.template, body.version)]
            if isinstance(found, SendstreamError):
                raise found
            renderer = found
        sender = draft.sender
        reply_to = stored_address(draft.reply_to) if draft.reply_to else None
        if renderer is not None:
            main = renderer.bundle.main
            if sender is None and main.from_email:
                sender = party("from", AddressInput(email=main.from_email, name=main.from_name))
            reply_to = reply_to or main.reply_to
        if sender is None:
            raise InvalidMessage(
                "from: give a sender (the template version has none).", code="from_required"
            )
        domain = sender.email.rpartition("@")[2]
        if domain not in lookups.domains:
            try:
                await check_sending_domain(session, workspace_id, domain, settings)
                lookups.domains[domain] = None
            except SendstreamError as exc:
                lookups.domains[domain] = exc
        if (refused := lookups.domains[domain]) is not None:
            raise refused
        if body.list_id is not None and body.list_id not in lookups.lists:
            raise InvalidMessage(
                f"list_id: no list {body.list_id} in this workspace.", code="list_not_found"
            )
        for where, who in draft.everyone:
            reason = lookups.suppressed.get(who.key)
            if reason is not None and blocks(reason, body.stream):
                raise RecipientSuppressed(where, who.email, reason)
        if body.list_id is not None and body.stream == "marketing":
            for where, who in draft.addressees:
                status = lookups.list_refusals.get((who.key, body.list_id))
                if status is not None:
                    raise InvalidMessage(
                        f"{where}: {who.email} is {status} on list {body.list_id}; nothing was "
                        "queued (a new subscription to the list lifts this).",
                        code="recipient_unsubscribed_from_list",
                    )
        opens, clicks = tracking_flags(
            settings, workspace_id, body.stream, body.track_opens, body.track_clicks
        )
        messages = [
            compose.Outgoing(
                id=uuid7(),
                workspace_id=workspace_id,
                stream=body.stream,
                from_email=sender.email,
                from_name=sender.name,
                reply_to=reply_to,
                to_email=r.party.email,
                to_email_key=r.party.key,
                to_name=r.party.name,
                contact_id=lookups.contact_id(r.party.key),
                message_id_header=mime.new_message_id(domain),
                cc=[p.as_json() for p in draft.cc],
                bcc=[p.as_json() for p in draft.bcc],
                list_id=body.list_id,
                template_version_id=renderer.version_id if renderer is not None else None,
                data=r.data if renderer is not None else {},
                subject=body.subject,
                html=body.html,
                text=body.text,
                headers=[[name, value] for name, value in draft.headers],
                track_opens=opens,
                track_clicks=clicks,
            )
            for r in draft.recipients
        ]
        if test is not None and renderer is not None:
            _render_test(messages, renderer, test, settings)
            renderer = None
            contacts: list[dict[str, Any] | None] = [None] * len(messages)
        else:
            contacts = [lookups.contact(r.party.key) for r in draft.recipients]
        _validate(messages, renderer, draft, settings, contacts, from_mime=from_mime)
        return _Plan(draft, messages, body.send_at, test=test is not None)

    async def _write(
        self, session: AsyncSession, workspace_id: uuid.UUID, plans: Sequence[_Plan]
    ) -> None:
        if not plans:
            return
        blobs = {a.sha256: a.data for plan in plans for a in plan.draft.attachments}
        await message_repository.store_blobs(session, workspace_id, blobs)
        rows: list[dict[str, Any]] = []
        attachments: list[dict[str, Any]] = []
        due = False
        now = datetime.now(UTC)
        workspace = str(workspace_id)
        for plan in plans:
            body = plan.draft.body
            send_at = plan.send_at.isoformat() if plan.send_at is not None else None
            due = due or plan.send_at is None or plan.send_at <= now
            for m in plan.messages:
                rows.append(_row(m, body, workspace, send_at, plan.test))
                attachments.extend(
                    {
                        "message_id": m.id,
                        "position": position,
                        "workspace_id": workspace_id,
                        "sha256": a.sha256,
                        "filename": a.filename,
                        "content_type": a.content_type,
                        "content_id": a.content_id,
                    }
                    for position, a in enumerate(plan.draft.attachments)
                )
        # Rows and events: one JSON document, one statement (see
        # `message_repository.queue`); json.dumps in C is most of the
        # Python-side cost of a row.
        await message_repository.queue(
            session,
            workspace_id,
            json.dumps(rows, ensure_ascii=False, separators=(",", ":"), default=json_default),
            len(rows),
        )
        await message_repository.insert_attachments(session, attachments)
        if due:
            await message_repository.notify_due(session)

    # --- reads

    async def get_message(
        self, session: AsyncSession, workspace_id: uuid.UUID, message_id: uuid.UUID
    ) -> MessageRead:
        found = await message_repository.get(session, workspace_id, message_id)
        if found is None:
            raise MessageNotFound(message_id)
        events = await message_repository.events(session, workspace_id, message_id)
        attachments = await message_repository.attachments(session, workspace_id, message_id)
        return MessageRead(
            **_summary_fields(found),
            cc=[AddressRead(**c) for c in found.cc],
            bcc=[AddressRead(**c) for c in found.bcc],
            reply_to=found.reply_to,
            contact_id=found.contact_id,
            list_id=found.list_id,
            track_opens=found.track_opens,
            track_clicks=found.track_clicks,
            message_id=found.message_id_header,
            next_attempt_at=(
                found.next_attempt_at if found.status in ("queued", "deferred") else None
            ),
            last_status_code=found.last_status_code,
            relay=found.relay,
            size_bytes=found.size_bytes,
            opens=found.opens,
            clicks=found.clicks,
            first_opened_at=found.first_opened_at,
            first_clicked_at=found.first_clicked_at,
            updated_at=found.updated_at,
            attachments=[
                AttachmentRead(
                    filename=a.filename,
                    content_type=a.content_type,
                    content_id=a.content_id,
                    size_bytes=size,
                    sha256=a.sha256,
                )
                for a, size in attachments
            ],
            events=[
                MessageEvent(
                    position=e.position, type=e.type, occurred_at=e.occurred_at, data=e.data
                )
                for e in events
            ],
        )

    async def list_messages(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        page: PageParams,
        *,
        to: str | None = None,
        **filters: Any,
    ) -> tuple[list[MessageSummary], str | None]:
        to_key = None
        if to is not None:
            try:
                to_key = normalize_address(to).key
            except InvalidAddress:
                to_key = to.strip().lower()  # matches nothing: an empty page
        rows = list(
            await message_repository.page(
                session,
                workspace_id,
                before=cursor_uuid(page.cursor),
                limit=page.limit + 1,
                to_key=to_key,
                **filters,
            )
        )
        rows, cursor = trim_page(rows, page.limit, lambda row: {"id": str(row.id)})
        return [MessageSummary(**_summary_fields(m)) for m in rows], cursor

    async def get_raw(
        self, session: AsyncSession, workspace_id: uuid.UUID, message_id: uuid.UUID
    ) -> CapturedMessage:
        """The bytes the capture transport kept for the message."""
        found = await message_repository.captured(session, workspace_id, message_id)
        if found is not None:
            return found
        if await message_repository.get(session, workspace_id, message_id) is None:
            raise MessageNotFound(message_id)
        raise MessageNotCaptured(message_id)

    async def recent_captured(
        self, session: AsyncSession, workspace_id: uuid.UUID, limit: int = 50
    ) -> Sequence[CapturedMessage]:
        return await message_repository.recent_captured(session, workspace_id, limit)


@dataclass(slots=True)
class _Lookups:
    renderers: dict[tuple[str, int | None], CompiledTemplate | SendstreamError] = field(
        default_factory=dict
    )
    suppressed: dict[str, str] = field(default_factory=dict)
    lists: set[uuid.UUID] = field(default_factory=set)
    domains: dict[str, SendstreamError | None] = field(default_factory=dict)
    # matching key -> (contact id, the contact as templates see it)
    contacts: dict[str, tuple[uuid.UUID, dict[str, Any]]] = field(default_factory=dict)
    # (matching key, list id) -> subscription status refusing marketing mail
    list_refusals: dict[tuple[str, uuid.UUID], str] = field(default_factory=dict)

    def contact_id(self, key: str) -> uuid.UUID | None:
        found = self.contacts.get(key)
        return found[0] if found else None

    def contact(self, key: str) -> dict[str, Any] | None:
        found = self.contacts.get(key)
        return found[1] if found else None


def _unusable(exc: SendstreamError) -> SendstreamError:
    """A template fault, as a 422 with its own code (see the module docstring)."""
    return InvalidInput(f"template: {exc.message}", code=exc.code, errors=exc.errors)


def _render_test(
    messages: Sequence[compose.Outgoing],
    renderer: CompiledTemplate,
    test: _TestSend,
    settings: Settings,
) -> None:
    """Turn each templated message into the inline message it renders to,
    subject marked: the worker sends inline content as written."""
    many = len(messages) > 1
    for index, m in enumerate(messages):
        try:
            content = compose.render(m, renderer, settings, contact=test.contact)
        except compose.ComposeError as exc:
            where = f"to[{index}] ({m.to_email}): " if many else ""
            raise InvalidInput(f"{where}{exc.message}", code=exc.code) from None
        m.subject = TEST_SUBJECT_PREFIX + content.subject
        m.html, m.text = content.html, content.text
        m.headers = [*m.headers, *([name, value] for name, value in content.headers)]
        m.template_version_id = None
        m.data = {}


def _validate(
    messages: Sequence[compose.Outgoing],
    renderer: CompiledTemplate | None,
    draft: Draft,
    settings: Settings,
    contacts: Sequence[dict[str, Any] | None],
    *,
    from_mime: bool = False,
) -> None:
    """Render every recipient (as its contact, when it is one); build the
    first one's message whole (its header section only, for inline content
    read from MIME: `_check_inline`)."""
    attachments = [
        mime.Attachment(a.filename, a.content_type, a.data, a.content_id) for a in draft.attachments
    ]
    many = len(messages) > 1
    for index, m in enumerate(messages):
        try:
            content = compose.render(m, renderer, settings, contact=contacts[index])
            if index == 0:
                if from_mime and renderer is None:
                    _check_inline(m, content, settings, attachments)
                else:
                    compose.build(m, content, settings, attachments=attachments)
        except compose.ComposeError as exc:
            where = f"to[{index}] ({m.to_email}): " if many else ""
            raise InvalidInput(f"{where}{exc.message}", code=exc.code) from None


def _check_inline(
    m: compose.Outgoing,
    content: compose.Content,
    settings: Settings,
    attachments: Sequence[mime.Attachment],
) -> None:
    """Refuse what `compose.build` refuses in an inline message, for about
    half its cost (the SMTP relay's messages; bench/smtp_relay.py). The
    header section, attachment headers included, is built by the builder
    itself, so every header check is its own. What is left out is encoding
    the bodies (the attachments' contents, the text and HTML parts, the
    multipart boundaries): the one fault that can meet there is text that is
    not valid Unicode (a lone surrogate), checked here with the builder's
    message (tests/delivery/test_submission.py compares the two)."""
    compose.build(
        m,
        compose.Content(content.subject, None, None, content.headers),
        settings,
        attachments=[
            mime.Attachment(a.filename, a.content_type, b"", a.content_id) for a in attachments
        ],
    )
    for subtype, text in (("html", content.html), ("plain", content.text)):
        if text is not None and not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise compose.ComposeError(
                    "invalid_message", f"the {subtype} body is not valid Unicode: {exc.reason}"
                ) from None


def _row(
    m: compose.Outgoing, body: MessageCreate, workspace: str, send_at: str | None, test: bool
) -> dict[str, Any]:
    """A `messages` row for `message_repository.queue`, keyed by column,
    with its `message.queued` event's data under `event`: as JSON holds it
    (ids as text, `send_at` in ISO 8601), which is what `outbox.emit` would
    have stored."""
    message_id = str(m.id)
    contact_id = str(m.contact_id) if m.contact_id is not None else None
    version_id = str(m.template_version_id) if m.template_version_id is not None else None
    return {
        "id": message_id,
        "workspace_id": workspace,
        "stream": m.stream,
        "from_email": m.from_email,
        "from_name": m.from_name,
        "reply_to": m.reply_to,
        "to_email": m.to_email,
        "to_email_key": m.to_email_key,
        "to_name": m.to_name,
        "contact_id": contact_id,
        "cc": m.cc,
        "bcc": m.bcc,
        "list_id": m.list_id,
        "template_version_id": version_id,
        "data": m.data,
        "subject": m.subject,
        "html": m.html,
        "text": m.text,
        "headers": m.headers,
        "metadata": body.metadata,
        "tags": body.tags,
        "track_opens": m.track_opens,
        "track_clicks": m.track_clicks,
        "message_id_header": m.message_id_header,
        "send_at": send_at,
        "event": {
            "message_id": message_id,
            "to": m.to_email,
            "contact_id": contact_id,
            "from": m.from_email,
            "stream": m.stream,
            "template_version_id": version_id,
            "subject": m.subject,
            "send_at": send_at,
            "tags": body.tags,
            "metadata": body.metadata,
            "test": test,
        },
    }


def _summary_fields(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "status": m.status,
        "stream": m.stream,
        "from": AddressRead(email=m.from_email, name=m.from_name),
        "to": AddressRead(email=m.to_email, name=m.to_name),
        "subject": m.subject,
        "template_version_id": m.template_version_id,
        "tags": list(m.tags),
        "metadata": m.metadata_,
        "attempts": m.attempts,
        "last_response": m.last_response,
        "send_at": m.send_at,
        "created_at": m.created_at,
        "sent_at": m.sent_at,
    }


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "body"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


message_service = MessageService()
