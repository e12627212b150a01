"""HTTP routes of sending domains (/v1/domains). HTTP concerns only; the
rules live in `domain_service.py`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.http import UnitOfWorkRoute, get_session
from sendstream.core.pagination import PageQuery
from sendstream.delivery.domain_schemas import DomainCreate, DomainPage, DomainRead
from sendstream.delivery.domain_service import domain_service
from sendstream.models.sending_domain import SendingDomain
from sendstream.workspaces.auth import Principal, require_scope

router = APIRouter(route_class=UnitOfWorkRoute)
Session = Annotated[AsyncSession, Depends(get_session)]
DomainId = Annotated[uuid.UUID, Path(description="The sending domain's id.")]


def _read(domain: SendingDomain) -> DomainRead:
    return DomainRead.of(domain, domain_service.records(domain))


@router.post(
    "/domains",
    tags=["domains"],
    status_code=201,
    summary="Register a sending domain",
    description="Generates its DKIM key pair(s) and answers with the DNS records to "
    "publish; then call `POST /v1/domains/{id}/verify`. 409 `domain_exists` when the "
    "workspace has it already; 422 `invalid_domain_name` for an IP address, a single "
    "label or a name that is not a valid (internationalised) host name.",
)
async def create_domain(
    body: DomainCreate,
    session: Session,
    response: Response,
    principal: Principal = require_scope("domains:write"),
) -> DomainRead:
    created = await domain_service.create_domain(
        session,
        principal.workspace_id,
        name=body.name,
        dual_sign_ed25519=body.dual_sign_ed25519,
    )
    response.headers["Location"] = f"/v1/domains/{created.id}"
    return _read(created)


@router.get("/domains", tags=["domains"], summary="List sending domains, oldest first")
async def list_domains(
    session: Session, page: PageQuery, principal: Principal = require_scope("domains:read")
) -> DomainPage:
    rows, cursor = await domain_service.list_domains(session, principal.workspace_id, page)
    return DomainPage(data=[_read(row) for row in rows], next_cursor=cursor)


@router.get(
    "/domains/{domain_id}",
    tags=["domains"],
    summary="Get a sending domain with its DNS records and their last check",
)
async def get_domain(
    domain_id: DomainId, session: Session, principal: Principal = require_scope("domains:read")
) -> DomainRead:
    return _read(await domain_service.get_domain(session, principal.workspace_id, domain_id))


@router.post(
    "/domains/{domain_id}/verify",
    tags=["domains"],
    summary="Check the domain's DNS records now",
    description="Looks every record up and answers with each one's result (`ok`, `missing`, "
    "`wrong` with what was found, or `error` when DNS gave no answer). Every required "
    "record `ok` makes the domain `verified` (event `domain.verified`); a required record "
    "missing or wrong makes it `failed` (event `domain.verification_failed` if it was "
    "verified); DNS errors alone leave the status as it was.",
)
async def verify_domain(
    domain_id: DomainId, session: Session, principal: Principal = require_scope("domains:write")
) -> DomainRead:
    return _read(await domain_service.verify_domain(session, principal.workspace_id, domain_id))


@router.delete(
    "/domains/{domain_id}",
    tags=["domains"],
    status_code=204,
    summary="Delete a sending domain",
    description="Its keys are deleted; mail from it is refused from then on.",
)
async def delete_domain(
    domain_id: DomainId, session: Session, principal: Principal = require_scope("domains:write")
) -> Response:
    await domain_service.delete_domain(session, principal.workspace_id, domain_id)
    return Response(status_code=204)
