"""One message from its row to signed bytes and an SMTP envelope: render,
tracking rewrite and List-Unsubscribe (marketing), MIME, DKIM, VERP.

No database and no I/O: the delivery loop loads what a batch needs (compiled
templates, DKIM keys, attachments) and calls these per message; the send
API calls `render` and `build` once at queue time to refuse, with its own
code, what would fail later.

- Template content is rendered with the message's `data` (the recipient's
  own merged over the request's) plus `unsubscribe_url` (the preference
  page of this message); `message.id`, `message.stream` and `message.to`
  are there too. Inline `subject`/`html`/`text` are sent as written: they
  are not templates.
- Marketing messages get open and click tracking (when the message's flags
  and settings allow) and `List-Unsubscribe` with the one-click POST
  (RFC 8058); both headers are signed (dkim.py oversigns them).
- Every fault is a `ComposeError` with the code the message's
  `last_response` and `message.failed` event carry.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parseaddr
from typing import Any

from sendstream.core.errors import SendstreamError
from sendstream.core.settings import Settings
from sendstream.delivery import dkim, mime
from sendstream.delivery.mime_headers import addr_spec
from sendstream.delivery.transport import Envelope
from sendstream.delivery.verp import verp_address
from sendstream.templates.render import CompiledTemplate, RenderContext
from sendstream.tracking.links import (
    TrackingContext,
    mailto_domain,
    rewrite_html,
    tracking_base_url,
    tracking_enabled,
    unsubscribe_headers,
    unsubscribe_url,
)


class ComposeError(Exception):
    """This message cannot be built; it fails (it would fail again)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(slots=True)
class Outgoing:
    """What building one message needs: a `messages` row's content columns."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    stream: str
    from_email: str
    from_name: str | None
    reply_to: str | None
    to_email: str
    to_name: str | None
    message_id_header: str
    to_email_key: str = ""
    cc: list[dict[str, Any]] = field(default_factory=list)
    bcc: list[dict[str, Any]] = field(default_factory=list)
    contact_id: uuid.UUID | None = None
    list_id: uuid.UUID | None = None
    template_version_id: uuid.UUID | None = None
    data: dict[str, Any] = field(default_factory=dict)
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    headers: list[list[str]] = field(default_factory=list)
    track_opens: bool = False
    track_clicks: bool = False
    attempts: int = 0
    # When the message first came due (its `send_at`, else its creation):
    # the retry window counts from here.
    first_due: datetime | None = None


@dataclass(frozen=True, slots=True)
class Content:
    subject: str
    html: str | None
    text: str | None
    # The template version's own header fields, rendered.
    headers: list[tuple[str, str]]


def tracking_context(m: Outgoing, settings: Settings) -> TrackingContext:
    allowed = tracking_enabled(m.workspace_id, m.stream, settings)
    return TrackingContext(
        workspace_id=m.workspace_id,
        message_id=m.id,
        contact_id=m.contact_id,
        list_id=m.list_id,
        email=m.to_email,
        track_opens=m.track_opens and allowed,
        track_clicks=m.track_clicks and allowed,
        base_url=tracking_base_url(settings),
    )


def render(
    m: Outgoing,
    renderer: CompiledTemplate | None,
    settings: Settings,
    *,
    contact: Mapping[str, Any] | None = None,
    tracking: TrackingContext | None = None,
) -> Content:
    """The message's subject, bodies and template headers for its recipient."""
    if m.template_version_id is None:
        return Content(m.subject or "", m.html, m.text, [])
    if renderer is None:
        raise ComposeError("template_not_found", f"template version {m.template_version_id}")
    ctx = tracking or tracking_context(m, settings)
    data = dict(m.data)
    if renderer.mentions("unsubscribe_url"):
        data["unsubscribe_url"] = unsubscribe_url(ctx)
    message = {"id": str(m.id), "stream": m.stream, "to": m.to_email}
    try:
        rendered = renderer.render(RenderContext(contact=contact, data=data, message=message))
    except SendstreamError as exc:
        raise ComposeError(exc.code, exc.message) from None
    return Content(rendered.subject, rendered.html, rendered.text, list(rendered.headers.items()))


def _party(value: Mapping[str, Any]) -> mime.Address:
    return mime.Address(str(value["email"]), value.get("name") or None)


def _reply_to(stored: str) -> mime.Address:
    """`messages.reply_to` holds `Name <address>` when the send gave a name
    (message_prepare.stored_address), else the bare address."""
    if not stored.endswith(">"):
        return mime.Address(stored)
    name, address = parseaddr(stored)
    return mime.Address(address, name or None)


def build(
    m: Outgoing,
    content: Content,
    settings: Settings,
    *,
    attachments: Sequence[mime.Attachment] = (),
    cc: Sequence[Mapping[str, Any]] | None = None,
    tracking: TrackingContext | None = None,
    date: datetime | None = None,
) -> bytes:
    """The unsigned wire form. `cc` replaces the row's (the loop drops
    copies suppressed since queueing)."""
    ctx = tracking or tracking_context(m, settings)
    html = content.html
    if html is not None and (ctx.track_opens or ctx.track_clicks):
        html = rewrite_html(html, ctx)
    headers: list[tuple[str, str]] = [(name, value) for name, value in m.headers]
    headers.extend(content.headers)
    if m.stream == "marketing":
        headers.extend(unsubscribe_headers(ctx, mailto_domain(settings)))
    parts = mime.MessageParts(
        sender=mime.Address(m.from_email, m.from_name),
        to=[mime.Address(m.to_email, m.to_name)],
        cc=[_party(c) for c in (m.cc if cc is None else cc)],
        reply_to=[_reply_to(m.reply_to)] if m.reply_to else [],
        subject=content.subject,
        text=content.text,
        html=html,
        attachments=attachments,
        headers=headers,
        message_id=m.message_id_header,
        date=date,
    )
    try:
        return mime.build(parts)
    except mime.HeaderInjection as exc:
        raise ComposeError("header_injection", str(exc)) from None
    except mime.MimeError as exc:
        raise ComposeError("invalid_message", str(exc)) from None


def sign(raw: bytes, keys: Sequence[dkim.DkimKey]) -> bytes:
    try:
        return dkim.sign(raw, keys)
    except dkim.DkimError as exc:
        raise ComposeError("dkim_error", str(exc)) from None


def envelope(
    m: Outgoing,
    data: bytes,
    settings: Settings,
    *,
    cc: Sequence[Mapping[str, Any]] | None = None,
    bcc: Sequence[Mapping[str, Any]] | None = None,
) -> Envelope:
    """SMTP envelope: the VERP return path, and `to`, then cc and bcc, each
    address once, domains as IDNA A-labels (no SMTPUTF8)."""
    try:
        recipients = [addr_spec("to", m.to_email)]
        for copy in [*(m.cc if cc is None else cc), *(m.bcc if bcc is None else bcc)]:
            address = addr_spec("cc", str(copy["email"]))
            if address.lower() not in (r.lower() for r in recipients):
                recipients.append(address)
    except mime.MimeError as exc:
        raise ComposeError("invalid_address", str(exc)) from None
    return Envelope(
        mail_from=verp_address(m.workspace_id, m.id, settings),
        recipients=tuple(recipients),
        data=data,
        workspace_id=m.workspace_id,
        message_id=m.id,
    )
