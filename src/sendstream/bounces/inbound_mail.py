"""Received mail for a workspace's inbound domain, turned into an inbound
email and the `inbound.received` event (the `inbound.process` job, in its
transaction).

1. The route is chosen again from the envelope recipients (the lowest
   priority of the enabled routes matching any of them): a route disabled
   or deleted since RCPT leaves the mail `ignored`. Action `drop`: the mail
   is `processed` with nothing stored but the raw row.
2. The mail is parsed (inbound_parse.py) and authenticated (SPF of the
   client address and envelope sender the MX recorded in its own
   `Received:` header, DKIM, DMARC: inbound_auth.py).
3. In-Reply-To, then References (newest first), are looked up among the
   workspace's sent messages: the first found is `in_reply_to`, and the
   message gets `message.replied`. A reply is never bounce processing: mail
   to an inbound domain never reaches the classifier.
4. The inbound email, its attachments and the events are written in one
   transaction. Run twice, the second run finds the email and does nothing.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.bounces.inbound_auth import AuthResults, authenticate
from sendstream.bounces.inbound_parse import Limits, ParsedMail, parse_mail
from sendstream.bounces.inbound_repository import inbound_repository
from sendstream.bounces.inbound_routing import inbound_routing_service
from sendstream.core.outbox import emit
from sendstream.core.settings import Settings, get_settings
from sendstream.models.inbound_email import InboundAttachment, InboundEmail
from sendstream.models.inbound_message import InboundMessage
from sendstream.models.inbound_route import InboundRoute

# The trace header the MX puts on top of routed mail: HELO name and client
# address, read back here for SPF. Only the topmost header is ever read, and
# the MX always writes one, so a sender cannot supply it.
RECEIVED_MARK: Final = "(Sendstream MX)"
_RECEIVED: Final = re.compile(r"^from (\S+) \(\[([0-9A-Fa-f:.]+)\]\)")
_HELO_SAFE: Final = re.compile(r"[^A-Za-z0-9.\-\[\]:_]")


def received_header(helo: str | None, client_ip: str | None, hostname: str, when: str) -> bytes:
    helo_text = _HELO_SAFE.sub("", helo or "unknown")[:255] or "unknown"
    ip_text = _HELO_SAFE.sub("", client_ip or "unknown")[:64]
    return (
        f"Received: from {helo_text} ([{ip_text}])\r\n\tby {hostname} {RECEIVED_MARK} "
        f"with ESMTP; {when}\r\n"
    ).encode("ascii", "replace")


def _trace(parsed: ParsedMail) -> tuple[str | None, str | None]:
    """(HELO, client IP) from our topmost Received header."""
    for name, value in parsed.headers:
        if name.lower() != "received":
            continue
        if RECEIVED_MARK not in value:
            return None, None
        matched = _RECEIVED.match(" ".join(value.split()))
        return (matched.group(1), matched.group(2)) if matched else (None, None)
    return None, None


def _addr(value: Any) -> dict[str, Any] | None:
    return None if value is None else value.as_json()


class InboundMailService:
    async def receive(
        self, session: AsyncSession, inbound: InboundMessage
    ) -> tuple[str, str | None]:
        """(status, note) of the raw row after routing it."""
        settings = get_settings()
        workspace_id = inbound.workspace_id
        if workspace_id is None:
            return "ignored", "routed mail without a workspace"
        if await inbound_repository.email_for_inbound(session, inbound.id) is not None:
            return "processed", "already received"
        route = await self._route(session, workspace_id, inbound.rcpt_to, settings)
        if route is None:
            return "ignored", "no enabled inbound route matches the recipients any more"
        if route.action == "drop":
            return "processed", f"dropped by route {route.id} ({route.name})"
        bounces = settings.bounces
        parsed = parse_mail(
            inbound.raw,
            Limits(
                max_body_chars=bounces.inbound_max_body_chars,
                max_attachment_bytes=bounces.inbound_max_attachment_bytes,
                max_attachments_total_bytes=bounces.inbound_max_attachments_total_bytes,
                max_parts=bounces.inbound_max_parts,
            ),
        )
        auth = await self._authenticate(inbound, parsed, settings)
        replied = await inbound_repository.find_sent_message(
            session, workspace_id, parsed.reply_ids
        )
        email = InboundEmail(
            workspace_id=workspace_id,
            inbound_message_id=inbound.id,
            route_id=route.id,
            action=route.action,
            mail_from=inbound.mail_from,
            recipients=list(inbound.rcpt_to),
            from_address=parsed.from_.address if parsed.from_ else None,
            from_name=parsed.from_.name if parsed.from_ else None,
            to_addresses=[a.as_json() for a in parsed.to],
            cc_addresses=[a.as_json() for a in parsed.cc],
            reply_to=[a.as_json() for a in parsed.reply_to],
            subject=parsed.subject,
            message_id_header=parsed.message_id,
            text_body=parsed.text,
            html_body=parsed.html,
            text_truncated=parsed.text_truncated,
            html_truncated=parsed.html_truncated,
            headers=parsed.headers,
            spf=auth.spf,
            dkim=auth.dkim,
            dmarc=auth.dmarc,
            auth_details=auth.details,
            auto_submitted=parsed.auto_submitted,
            in_reply_to_message_id=replied[0] if replied else None,
            in_reply_to_contact_id=replied[1] if replied else None,
            size_bytes=len(inbound.raw),
            notes=parsed.notes[:50],
        )
        session.add(email)
        await session.flush()
        attachments = [
            InboundAttachment(
                workspace_id=workspace_id,
                inbound_email_id=email.id,
                position=index,
                filename=part.filename,
                content_type=part.content_type,
                content_id=part.content_id,
                disposition=part.disposition,
                size=part.size,
                sha256=part.sha256,
                omitted=part.content is None,
                content=part.content,
            )
            for index, part in enumerate(parsed.attachments)
        ]
        session.add_all(attachments)
        await session.flush()
        emit(
            session,
            workspace_id,
            "inbound.received",
            self.event_data(email, route, attachments, settings),
            subject_type="inbound_email",
            subject_id=email.id,
        )
        if replied is not None:
            emit(
                session,
                workspace_id,
                "message.replied",
                {
                    "message_id": replied[0],
                    "contact_id": replied[1],
                    "inbound_email_id": email.id,
                    "from": _addr(parsed.from_),
                    "subject": parsed.subject,
                    "auto_submitted": parsed.auto_submitted,
                },
                subject_type="message",
                subject_id=replied[0],
            )
        return "processed", "; ".join(parsed.notes[:10]) or None

    async def _route(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        recipients: list[str],
        settings: Settings,
    ) -> InboundRoute | None:
        best: InboundRoute | None = None
        for rcpt in recipients:
            found = await inbound_routing_service.route_for(session, rcpt, settings)
            if found is None or found[0].workspace_id != workspace_id:
                continue
            route = found[1]
            if best is None or (route.priority, route.id) < (best.priority, best.id):
                best = route
        return best

    async def _authenticate(
        self, inbound: InboundMessage, parsed: ParsedMail, settings: Settings
    ) -> AuthResults:
        if not settings.bounces.inbound_verify_auth:
            return AuthResults(details={"note": "bounces.inbound_verify_auth is off"})
        helo, client_ip = _trace(parsed)
        from_domain = None
        if parsed.from_ is not None and "@" in parsed.from_.address:
            from_domain = parsed.from_.address.rpartition("@")[2].lower().rstrip(".") or None
        try:
            return await authenticate(
                inbound.raw,
                client_ip=client_ip,
                helo=helo,
                mail_from=inbound.mail_from,
                from_domain=from_domain,
                settings=settings.delivery,
            )
        except Exception as exc:  # never lose mail over a check
            note = f"{type(exc).__name__}: {str(exc)[:200]}"
            return AuthResults("temperror", "temperror", "temperror", {"error": note})

    def event_data(
        self,
        email: InboundEmail,
        route: InboundRoute,
        attachments: list[InboundAttachment],
        settings: Settings,
    ) -> dict[str, Any]:
        limit = settings.bounces.inbound_event_body_chars
        text, html = email.text_body, email.html_body
        return {
            "id": email.id,
            "route": {"id": route.id, "name": route.name, "pattern": route.pattern},
            "mail_from": email.mail_from,
            "recipients": email.recipients,
            "from": (
                {"address": email.from_address, "name": email.from_name}
                if email.from_address
                else None
            ),
            "to": email.to_addresses,
            "cc": email.cc_addresses,
            "reply_to": email.reply_to,
            "subject": email.subject,
            "message_id_header": email.message_id_header,
            "text": text[:limit] if text is not None else None,
            "html": html[:limit] if html is not None else None,
            "text_truncated": email.text_truncated or (text is not None and len(text) > limit),
            "html_truncated": email.html_truncated or (html is not None and len(html) > limit),
            "attachments": [
                {
                    "id": a.id,
                    "filename": a.filename,
                    "content_type": a.content_type,
                    "content_id": a.content_id,
                    "disposition": a.disposition,
                    "size": a.size,
                    "sha256": a.sha256,
                    "omitted": a.omitted,
                    "url": None
                    if a.omitted
                    else f"/v1/inbound-emails/{email.id}/attachments/{a.id}",
                }
                for a in attachments
            ],
            "headers": email.headers,
            "auth": {"spf": email.spf, "dkim": email.dkim, "dmarc": email.dmarc},
            "auto_submitted": email.auto_submitted,
            "in_reply_to": (
                {
                    "message_id": email.in_reply_to_message_id,
                    "contact_id": email.in_reply_to_contact_id,
                }
                if email.in_reply_to_message_id
                else None
            ),
            "raw_url": f"/v1/inbound-emails/{email.id}/raw",
        }


inbound_mail_service = InboundMailService()
