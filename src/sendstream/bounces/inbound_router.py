"""HTTP routes of inbound routing (/v1/inbound-domains, /v1/inbound-routes,
/v1/inbound-emails). HTTP concerns only; the rules live in `inbound_routing.py`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.bounces.inbound_routing import inbound_routing_service
from sendstream.bounces.inbound_schemas import (
    AuthResultsRead,
    InboundAttachmentRead,
    InboundDomainCreate,
    InboundDomainPage,
    InboundDomainRead,
    InboundEmailPage,
    InboundEmailRead,
    InboundEmailSummary,
    InboundRouteCreate,
    InboundRoutePage,
    InboundRouteRead,
    InboundRouteRef,
    InboundRouteUpdate,
    InReplyToRead,
    MailAddressRead,
)
from sendstream.core.http import UnitOfWorkRoute, get_session
from sendstream.core.pagination import PageQuery
from sendstream.core.settings import get_settings
from sendstream.core.types import Timestamp
from sendstream.models.inbound_email import InboundAttachment, InboundEmail
from sendstream.models.inbound_route import InboundRoute
from sendstream.workspaces.auth import Principal, require_scope

router = APIRouter(route_class=UnitOfWorkRoute)
Session = Annotated[AsyncSession, Depends(get_session)]
DomainId = Annotated[uuid.UUID, Path(description="The inbound domain's id.")]
RouteId = Annotated[uuid.UUID, Path(description="The inbound route's id.")]
EmailId = Annotated[uuid.UUID, Path(description="The inbound email's id.")]
AttachmentId = Annotated[uuid.UUID, Path(description="The attachment's id.")]
TAG = "inbound"
_DOMAIN_NOT_FOUND: dict[str, Any] = {
    "description": "`domain_id` names no inbound domain of this workspace "
    "(`inbound_domain_not_found`).",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


def _route_read(route: InboundRoute) -> InboundRouteRead:
    return InboundRouteRead.model_validate(route, from_attributes=True)


def _summary_fields(email: InboundEmail, route: InboundRoute | None) -> dict[str, object]:
    return {
        "id": email.id,
        "route": InboundRouteRef(id=email.route_id, name=route.name if route else None),
        "action": email.action,
        "mail_from": email.mail_from,
        "recipients": email.recipients,
        "from": MailAddressRead(address=email.from_address, name=email.from_name)
        if email.from_address
        else None,
        "to": [MailAddressRead(**a) for a in email.to_addresses],
        "cc": [MailAddressRead(**a) for a in email.cc_addresses],
        "subject": email.subject,
        "auth": AuthResultsRead(
            spf=email.spf, dkim=email.dkim, dmarc=email.dmarc, details=email.auth_details
        ),
        "auto_submitted": email.auto_submitted,
        "in_reply_to": InReplyToRead(
            message_id=email.in_reply_to_message_id, contact_id=email.in_reply_to_contact_id
        )
        if email.in_reply_to_message_id
        else None,
        "size_bytes": email.size_bytes,
        "created_at": email.created_at,
    }


def _email_read(
    email: InboundEmail, attachments: Sequence[InboundAttachment], route: InboundRoute | None
) -> InboundEmailRead:
    base = f"/v1/inbound-emails/{email.id}"
    return InboundEmailRead.model_validate(
        {
            **_summary_fields(email, route),
            "reply_to": [MailAddressRead(**a) for a in email.reply_to],
            "message_id_header": email.message_id_header,
            "text": email.text_body,
            "html": email.html_body,
            "text_truncated": email.text_truncated,
            "html_truncated": email.html_truncated,
            "headers": email.headers,
            "attachments": [
                InboundAttachmentRead(
                    id=a.id,
                    filename=a.filename,
                    content_type=a.content_type,
                    content_id=a.content_id,
                    disposition=a.disposition,
                    size=a.size,
                    sha256=a.sha256,
                    omitted=a.omitted,
                    url=None if a.omitted else f"{base}/attachments/{a.id}",
                )
                for a in attachments
            ],
            "notes": email.notes,
            "raw_url": f"{base}/raw",
        }
    )


# --- domains


@router.post(
    "/inbound-domains",
    tags=[TAG],
    status_code=201,
    summary="Add an inbound domain",
    description="Mail to the domain is taken by the MX once its MX record names our MX host "
    "(`mx_record`) and `POST .../verify` saw it. A domain belongs to one workspace: 409 "
    "`inbound_domain_taken` when registered already; 422 `invalid_inbound_domain`.",
)
async def create_inbound_domain(
    body: InboundDomainCreate,
    session: Session,
    response: Response,
    principal: Principal = require_scope("inbound:write"),
) -> InboundDomainRead:
    domain = await inbound_routing_service.create_domain(session, principal.workspace_id, body)
    response.headers["Location"] = f"/v1/inbound-domains/{domain.id}"
    return inbound_routing_service.describe_domain(domain, get_settings())


@router.get("/inbound-domains", tags=[TAG], summary="List inbound domains, oldest first")
async def list_inbound_domains(
    session: Session, page: PageQuery, principal: Principal = require_scope("inbound:read")
) -> InboundDomainPage:
    rows, cursor = await inbound_routing_service.list_domains(session, principal.workspace_id, page)
    settings = get_settings()
    return InboundDomainPage(
        data=[inbound_routing_service.describe_domain(d, settings) for d in rows],
        next_cursor=cursor,
    )


@router.get("/inbound-domains/{domain_id:uuid}", tags=[TAG], summary="Get an inbound domain")
async def get_inbound_domain(
    domain_id: DomainId, session: Session, principal: Principal = require_scope("inbound:read")
) -> InboundDomainRead:
    domain = await inbound_routing_service.get_domain(session, principal.workspace_id, domain_id)
    return inbound_routing_service.describe_domain(domain, get_settings())


@router.delete(
    "/inbound-domains/{domain_id:uuid}",
    tags=[TAG],
    status_code=204,
    summary="Delete an inbound domain",
    description="Its routes go with it; mail already received stays.",
)
async def delete_inbound_domain(
    domain_id: DomainId, session: Session, principal: Principal = require_scope("inbound:write")
) -> Response:
    await inbound_routing_service.delete_domain(session, principal.workspace_id, domain_id)
    return Response(status_code=204)


@router.post(
    "/inbound-domains/{domain_id:uuid}/verify",
    tags=[TAG],
    summary="Check the domain's MX record now",
    description="`verified` when the MX record names our MX host, `failed` when it is missing "
    "or names another host; a DNS error keeps the status and says why in `check_results`.",
)
async def verify_inbound_domain(
    domain_id: DomainId, session: Session, principal: Principal = require_scope("inbound:write")
) -> InboundDomainRead:
    domain = await inbound_routing_service.verify_domain(session, principal.workspace_id, domain_id)
    return inbound_routing_service.describe_domain(domain, get_settings())


# --- routes


@router.post(
    "/inbound-routes",
    tags=[TAG],
    status_code=201,
    summary="Add an inbound route",
    description="404 `inbound_domain_not_found` for a domain of no workspace of yours; 422 "
    "`validation_error` for a bad pattern.",
    responses={404: _DOMAIN_NOT_FOUND},
)
async def create_inbound_route(
    body: InboundRouteCreate,
    session: Session,
    response: Response,
    principal: Principal = require_scope("inbound:write"),
) -> InboundRouteRead:
    route = await inbound_routing_service.create_route(session, principal.workspace_id, body)
    response.headers["Location"] = f"/v1/inbound-routes/{route.id}"
    return _route_read(route)


@router.get("/inbound-routes", tags=[TAG], summary="List inbound routes, oldest first")
async def list_inbound_routes(
    session: Session,
    page: PageQuery,
    domain_id: Annotated[uuid.UUID | None, Query(description="Only this domain's.")] = None,
    principal: Principal = require_scope("inbound:read"),
) -> InboundRoutePage:
    rows, cursor = await inbound_routing_service.list_routes(
        session, principal.workspace_id, page, domain_id
    )
    return InboundRoutePage(data=[_route_read(r) for r in rows], next_cursor=cursor)


@router.get("/inbound-routes/{route_id:uuid}", tags=[TAG], summary="Get an inbound route")
async def get_inbound_route(
    route_id: RouteId, session: Session, principal: Principal = require_scope("inbound:read")
) -> InboundRouteRead:
    return _route_read(
        await inbound_routing_service.get_route(session, principal.workspace_id, route_id)
    )


@router.patch(
    "/inbound-routes/{route_id:uuid}",
    tags=[TAG],
    summary="Change an inbound route",
    description="Fields left out (or null) stay as they are.",
)
async def update_inbound_route(
    route_id: RouteId,
    body: InboundRouteUpdate,
    session: Session,
    principal: Principal = require_scope("inbound:write"),
) -> InboundRouteRead:
    route = await inbound_routing_service.update_route(
        session, principal.workspace_id, route_id, body
    )
    return _route_read(route)


@router.delete(
    "/inbound-routes/{route_id:uuid}",
    tags=[TAG],
    status_code=204,
    summary="Delete an inbound route",
)
async def delete_inbound_route(
    route_id: RouteId, session: Session, principal: Principal = require_scope("inbound:write")
) -> Response:
    await inbound_routing_service.delete_route(session, principal.workspace_id, route_id)
    return Response(status_code=204)


# --- received mail


@router.get("/inbound-emails", tags=[TAG], summary="List received mail, newest first")
async def list_inbound_emails(
    session: Session,
    page: PageQuery,
    route_id: Annotated[uuid.UUID | None, Query(description="Only this route's.")] = None,
    in_reply_to_message_id: Annotated[
        uuid.UUID | None, Query(description="Only replies to this sent message.")
    ] = None,
    from_address: Annotated[
        str | None,
        Query(max_length=320, pattern=r"^[^\x00-\x1f\x7f%_]+$", description="Exact From address."),
    ] = None,
    since: Annotated[Timestamp | None, Query(description="Received at or after.")] = None,
    principal: Principal = require_scope("inbound:read"),
) -> InboundEmailPage:
    rows, cursor = await inbound_routing_service.list_emails(
        session,
        principal.workspace_id,
        page,
        {
            "route_id": route_id,
            "in_reply_to_message_id": in_reply_to_message_id,
            "from_address": from_address,
            "since": since,
        },
    )
    return InboundEmailPage(
        data=[InboundEmailSummary.model_validate(_summary_fields(e, None)) for e in rows],
        next_cursor=cursor,
    )


@router.get(
    "/inbound-emails/{email_id:uuid}",
    tags=[TAG],
    summary="Get received mail, parsed",
    description="Bodies, headers, attachments (metadata and download URLs), SPF/DKIM/DMARC "
    "results and the sent message it replies to.",
)
async def get_inbound_email(
    email_id: EmailId, session: Session, principal: Principal = require_scope("inbound:read")
) -> InboundEmailRead:
    email, attachments, route = await inbound_routing_service.get_email(
        session, principal.workspace_id, email_id
    )
    return _email_read(email, attachments, route)


@router.get(
    "/inbound-emails/{email_id:uuid}/attachments/{attachment_id:uuid}",
    tags=[TAG],
    summary="Download an attachment",
    description="With its content type and `Content-Disposition: attachment` (never rendered "
    "inline). 410 `inbound_attachment_omitted` when it was over the size limit.",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def download_inbound_attachment(
    email_id: EmailId,
    attachment_id: AttachmentId,
    session: Session,
    principal: Principal = require_scope("inbound:read"),
) -> Response:
    attachment = await inbound_routing_service.get_attachment(
        session, principal.workspace_id, email_id, attachment_id
    )
    filename = (attachment.filename or f"attachment-{attachment.position}").replace('"', "")
    ascii_name = filename.encode("ascii", "replace").decode().replace("?", "_")
    return Response(
        content=attachment.content,
        media_type=attachment.content_type,
        headers={
            "Content-Disposition": f'attachment; filename="{ascii_name}"; '
            f"filename*=UTF-8''{quote(filename)}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
        },
    )


@router.get(
    "/inbound-emails/{email_id:uuid}/raw",
    tags=[TAG],
    summary="Download the original MIME",
    description="As received (with the MX's own Received header on top). 410 "
    "`inbound_raw_gone` past `bounces.inbound_retention_days`.",
    response_class=Response,
    responses={200: {"content": {"message/rfc822": {}}}},
)
async def get_inbound_email_raw(
    email_id: EmailId, session: Session, principal: Principal = require_scope("inbound:read")
) -> Response:
    raw = await inbound_routing_service.get_raw(session, principal.workspace_id, email_id)
    return Response(
        content=raw,
        media_type="message/rfc822",
        headers={
            "Content-Disposition": f'attachment; filename="{email_id}.eml"',
            "X-Content-Type-Options": "nosniff",
        },
    )
