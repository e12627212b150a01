"""The development mailbox: `GET /dev/mailbox` lists what the capture
transport kept, `GET /dev/mailbox/{message_id}` shows one message.

Only served when `environment` is development or no SMTP relay is
configured (the capture transport is on); otherwise 404. A browser cannot
send an `Authorization` header from a link, so the page takes the API key
(scope `messages:read`) as `?key=` (a form asks for it), or the usual
header. The key then appears in the page's own links: the pages send
`Referrer-Policy: no-referrer` and `Cache-Control: no-store`, and the access
log records paths without query strings. Captured HTML is shown in a
sandboxed `<iframe srcdoc>` (no scripts, no same-origin) under a policy that
loads no remote content, so viewing a message fires no tracking pixel.
No JavaScript.
"""

from __future__ import annotations

import html
import uuid
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.errors import SendstreamError
from sendstream.core.http import UnitOfWorkRoute, get_session
from sendstream.core.settings import get_settings
from sendstream.delivery.message_service import message_service
from sendstream.models.message import CapturedMessage
from sendstream.workspaces.scopes import grants
from sendstream.workspaces.service import api_key_service

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
Session = Annotated[AsyncSession, Depends(get_session)]
Key = Annotated[str | None, Query(max_length=200, description="An API key (messages:read).")]

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src data:; frame-src 'self'; form-action 'self'",
}
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
    "table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3rem .5rem;"
    "border-bottom:1px solid #ddd;vertical-align:top}pre{white-space:pre-wrap;background:#f6f6f6;"
    "padding:1rem}iframe{width:100%;height:40rem;border:1px solid #ccc}dt{font-weight:bold}"
)


def enabled() -> bool:
    settings = get_settings()
    return settings.environment == "development" or not settings.smtp_url


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=_HEADERS)


def _key_form(message: str = "") -> HTMLResponse:
    note = f"<p><strong>{html.escape(message)}</strong></p>" if message else ""
    return _page(
        "Sendstream mailbox",
        f"{note}<form method=get><p>Messages the capture transport kept. API key with "
        "<code>messages:read</code>:</p><input name=key type=password size=60 autofocus> "
        "<button type=submit>Open</button></form>",
        401 if message else 200,
    )


async def _workspace(
    request: Request, session: AsyncSession, key: str | None
) -> uuid.UUID | HTMLResponse:
    if not enabled():
        return _page("Not found", "<p>The mailbox is only served in development.</p>", 404)
    presented = key
    header = request.headers.get("authorization", "")
    if presented is None and header.lower().startswith("bearer "):
        presented = header[7:].strip()
    if not presented:
        return _key_form()
    try:
        found = await api_key_service.authenticate(session, presented)
    except SendstreamError as exc:
        return _key_form(exc.message)
    if not grants(found.scopes, "messages:read"):
        return _key_form("This key lacks the messages:read scope.")
    return found.workspace_id


def _parse(captured: CapturedMessage) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes(captured.raw)


def _link(path: str, key: str | None) -> str:
    return html.escape(f"{path}?key={quote(key)}" if key else path)


@router.get("/dev/mailbox", response_class=HTMLResponse)
async def mailbox(request: Request, session: Session, key: Key = None) -> HTMLResponse:
    workspace = await _workspace(request, session, key)
    if isinstance(workspace, HTMLResponse):
        return workspace
    rows = await message_service.recent_captured(session, workspace, 100)
    lines = []
    for row in rows:
        parsed = _parse(row)
        lines.append(
            "<tr>"
            f"<td>{html.escape(row.created_at.strftime('%Y-%m-%d %H:%M:%S'))}</td>"
            f"<td>{html.escape(str(parsed.get('From', '')))}</td>"
            f"<td>{html.escape(str(parsed.get('To', '')))}</td>"
            f'<td><a href="{_link(f"/dev/mailbox/{row.message_id}", key)}">'
            f"{html.escape(str(parsed.get('Subject', '')) or '(no subject)')}</a></td></tr>"
        )
    table = (
        "<table><tr><th>captured (UTC)</th><th>from</th><th>to</th><th>subject</th></tr>"
        + "".join(lines)
        + "</table>"
        if lines
        else "<p>Nothing captured yet: send a message with <code>POST /v1/messages</code>.</p>"
    )
    return _page("Sendstream mailbox", f"<p>The latest {len(rows)} messages.</p>{table}")


@router.get("/dev/mailbox/{message_id}", response_class=HTMLResponse)
async def mailbox_message(
    request: Request,
    session: Session,
    message_id: Annotated[uuid.UUID, Path()],
    key: Key = None,
) -> HTMLResponse:
    workspace = await _workspace(request, session, key)
    if isinstance(workspace, HTMLResponse):
        return workspace
    try:
        captured = await message_service.get_raw(session, workspace, message_id)
    except SendstreamError as exc:
        return _page("Not found", f"<p>{html.escape(exc.message)}</p>", 404)
    parsed = _parse(captured)
    fields = "".join(
        f"<dt>{name}</dt><dd>{html.escape(str(parsed.get(name, '')))}</dd>"
        for name in ("From", "To", "Cc", "Reply-To", "Subject", "Date", "List-Unsubscribe")
        if parsed.get(name) is not None
    )
    envelope = (
        f"<dt>Envelope</dt><dd>MAIL FROM {html.escape(captured.mail_from)}, RCPT TO "
        f"{html.escape(', '.join(captured.recipients))}</dd>"
    )
    parts = []
    text_part = parsed.get_body(preferencelist=("plain",))
    if text_part is not None:
        parts.append(f"<h2>Text</h2><pre>{html.escape(text_part.get_content())}</pre>")
    html_part = parsed.get_body(preferencelist=("html",))
    if html_part is not None:
        source = html.escape(html_part.get_content(), quote=True)
        parts.append(f'<h2>HTML</h2><iframe sandbox="" srcdoc="{source}"></iframe>')
    back = f'<p><a href="{_link("/dev/mailbox", key)}">All messages</a></p>'
    return _page(
        str(parsed.get("Subject", "")) or "(no subject)",
        f"{back}<dl>{fields}{envelope}</dl>{''.join(parts)}"
        f"<p>Raw: <code>GET /v1/messages/{message_id}/raw</code></p>",
    )
