"""HTTP routes of the suppression list (`/v1/suppressions`): list and
search it, add an address or a whole domain, look one up, remove one,
export the list as CSV. HTTP concerns only; the rules live in
`suppression_service`. Routes with an address in the path keep it out of
the access log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.contacts.exports import export_service
from sendstream.contacts.suppression import Reason, Source
from sendstream.contacts.suppression_service import (
    MAX_NOTE_LENGTH,
    address_target,
    domain_target,
    suppression_service,
)
from sendstream.core.http import UnitOfWorkRoute, get_session, redact_path_in_logs
from sendstream.core.pagination import Page, PageQuery
from sendstream.core.types import NO_CONTROL_CHARS, NO_NUL
from sendstream.models.suppression import Suppression
from sendstream.workspaces.auth import Principal, require_scope

router = APIRouter(route_class=UnitOfWorkRoute, tags=["suppressions"])
Session = Annotated[AsyncSession, Depends(get_session)]

# `erased` comes only from GDPR erasure.
AddReason = Literal["unsubscribed", "bounced", "complained", "manual"]
AddressText = Annotated[
    str, StringConstraints(min_length=1, max_length=320, pattern=NO_CONTROL_CHARS)
]
DomainText = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=NO_CONTROL_CHARS)
]
Note = Annotated[str, StringConstraints(max_length=MAX_NOTE_LENGTH, pattern=NO_NUL)]
AddressPath = Annotated[
    str, Path(min_length=1, max_length=320, description="The address, e.g. `ann@example.com`.")
]
DomainPath = Annotated[
    str, Path(min_length=1, max_length=255, description="The domain, e.g. `example.com`.")
]

redact_path_in_logs("/v1/suppressions/{address}")


class SuppressionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    address: str | None = Field(
        description="The suppressed address as it was given; null for a domain entry and for "
        "an erased address (only its keyed hash is kept)."
    )
    domain: str | None = Field(
        description="Set on a domain entry: every address at this domain (exactly; "
        "subdomains are entries of their own) is suppressed."
    )
    reason: Reason = Field(
        description="unsubscribed, bounced (hard bounce), complained, manual, or erased (GDPR "
        "erasure). Transactional mail may bypass `unsubscribed` only."
    )
    source: Source = Field(description="How the entry came to be.")
    note: str | None
    created_at: datetime = Field(description="When the entry got its current reason.")
    address_hash: str = Field(
        description="The keyed hash the entry is stored under (of the address's matching key, "
        "or of `@domain`); the same as `address_hash` in an erasure receipt."
    )


class SuppressionPage(Page[SuppressionRead]):
    pass


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AddressSuppressionCreate(_Input):
    address: AddressText = Field(description="The address to suppress.")
    reason: AddReason = "manual"
    note: Note | None = Field(default=None, description="Why, for the people who read the list.")


class DomainSuppressionCreate(_Input):
    domain: DomainText = Field(description="Suppress every address at this domain.")
    reason: AddReason = "manual"
    note: Note | None = Field(default=None, description="Why, for the people who read the list.")


def _read(entry: Suppression) -> SuppressionRead:
    return SuppressionRead.model_validate(entry)


@router.get(
    "/suppressions",
    summary="List suppressed addresses and domains, newest first",
    description="Cursor-paginated. `reason` filters by reason; `search` matches part of an "
    "address or domain, case-insensitively. Erased addresses show with `address` null.",
)
async def list_suppressions(
    session: Session,
    page: PageQuery,
    reason: Annotated[Reason | None, Query(description="Only entries with this reason.")] = None,
    search: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=320,
            pattern=NO_CONTROL_CHARS,
            description="Part of an address or domain, e.g. `@example.com` or `ann`.",
        ),
    ] = None,
    principal: Principal = require_scope("suppressions:read"),
) -> SuppressionPage:
    rows, cursor = await suppression_service.list_suppressions(
        session, principal.workspace_id, page, reason=reason, search=search
    )
    return SuppressionPage(data=[_read(r) for r in rows], next_cursor=cursor)


@router.post(
    "/suppressions",
    status_code=201,
    summary="Suppress an address or a whole domain",
    description='`{"address": ...}` or `{"domain": ...}`, with a `reason` (default `manual`) '
    "and a `note`. 201 when added; 200 when already suppressed: the entry is returned as it "
    "stands, with its reason raised if this one is stronger (unsubscribed < manual < bounced "
    "< complained < erased).",
    responses={200: {"description": "Already suppressed", "model": SuppressionRead}},
)
async def add_suppression(
    body: AddressSuppressionCreate | DomainSuppressionCreate,
    response: Response,
    session: Session,
    principal: Principal = require_scope("suppressions:write"),
) -> SuppressionRead:
    target = (
        address_target(body.address)
        if isinstance(body, AddressSuppressionCreate)
        else domain_target(body.domain)
    )
    entry, created = await suppression_service.add_suppression(
        session, principal.workspace_id, target, reason=body.reason, source="api", note=body.note
    )
    response.status_code = 201 if created else 200
    return _read(entry)


@router.get(
    "/suppressions/export",
    summary="Export the suppression list as CSV",
    description="Columns address, domain, reason, source, note, created_at, address_hash; "
    "newest first; streamed.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def export_suppressions(
    reason: Annotated[Reason | None, Query(description="Only entries with this reason.")] = None,
    principal: Principal = require_scope("suppressions:read"),
) -> StreamingResponse:
    export = suppression_service.prepare_export(principal.workspace_id, reason=reason)
    return StreamingResponse(
        export_service.stream(export),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="suppressions.csv"'},
    )


@router.get(
    "/suppressions/domains/{domain}",
    summary="Get a domain's suppression",
    description="404 `suppression_not_found` when the domain is not suppressed.",
)
async def get_domain_suppression(
    domain: DomainPath, session: Session, principal: Principal = require_scope("suppressions:read")
) -> SuppressionRead:
    return _read(await suppression_service.get_domain(session, principal.workspace_id, domain))


@router.delete(
    "/suppressions/domains/{domain}",
    status_code=204,
    summary="Stop suppressing a domain",
    description="Addresses at the domain suppressed on their own stay suppressed.",
)
async def remove_domain_suppression(
    domain: DomainPath, session: Session, principal: Principal = require_scope("suppressions:write")
) -> Response:
    await suppression_service.remove(session, principal.workspace_id, domain_target(domain))
    return Response(status_code=204)


@router.get(
    "/suppressions/{address}",
    summary="Is this address suppressed, and why",
    description="The entry that suppresses the address: its own, or its domain's (the "
    "stronger when both exist). 404 `suppression_not_found` when it may be mailed.",
)
async def get_suppression(
    address: AddressPath,
    session: Session,
    principal: Principal = require_scope("suppressions:read"),
) -> SuppressionRead:
    return _read(
        await suppression_service.get_for_address(session, principal.workspace_id, address)
    )


@router.delete(
    "/suppressions/{address}",
    status_code=204,
    summary="Stop suppressing an address",
    description="Removes the address's own entry (a domain entry covering it stays). 409 "
    "`erased_address` for an address erased at the person's request: only an explicit new "
    "opt-in lifts that. Removing an entry resubscribes no one.",
)
async def remove_suppression(
    address: AddressPath,
    session: Session,
    principal: Principal = require_scope("suppressions:write"),
) -> Response:
    await suppression_service.remove(session, principal.workspace_id, address_target(address))
    return Response(status_code=204)
