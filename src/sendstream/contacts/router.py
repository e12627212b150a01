"""HTTP routes of the contacts domain, mounted under /v1: contacts, custom
fields, and (from their own modules) imports and exports, lists and
subscriptions, GDPR export and erasure. HTTP concerns only."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.contacts.consent import ConsentContext
from sendstream.contacts.field_service import field_service
from sendstream.contacts.gdpr_router import router as gdpr_router
from sendstream.contacts.import_router import router as import_router
from sendstream.contacts.lists_router import router as lists_router
from sendstream.contacts.schemas import (
    BatchSummary,
    ContactBatch,
    ContactCreate,
    ContactPage,
    ContactRead,
    ContactStatus,
    ContactUpdate,
    ContactUpsert,
    FieldCreate,
    FieldPage,
    FieldRead,
    FieldUpdate,
    TimelinePage,
)
from sendstream.contacts.service import contact_service
from sendstream.contacts.suppression_router import router as suppression_router
from sendstream.core.errors import InvalidInput
from sendstream.core.http import UnitOfWorkRoute, get_session, redact_path_in_logs
from sendstream.core.pagination import PageQuery
from sendstream.core.types import Timestamp
from sendstream.workspaces.auth import Principal, require_scope

router = APIRouter(route_class=UnitOfWorkRoute)
# The sub-routers' fixed paths (`/contacts/imports`, `/contacts/export` ...)
# come first; contact ids only match UUIDs anyway.
router.include_router(import_router)
router.include_router(lists_router)
router.include_router(gdpr_router)
router.include_router(suppression_router)

Session = Annotated[AsyncSession, Depends(get_session)]
ContactId = Annotated[uuid.UUID, Path(description="The contact's id.")]
FieldKey = Annotated[str, Path(max_length=64, description="The field's key, e.g. `plan`.")]
LIST_STATUSES = ("subscribed", "unconfirmed", "unsubscribed", "bounced", "complained")


def api_context(principal: Principal) -> ConsentContext:
    """Consent context of a change made through the API with this key."""
    actor = f"api_key:{principal.api_key_id}" if principal.api_key_id else None
    return ConsentContext(source="api", actor=actor)


def _where(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"where: not JSON ({exc.msg} at character {exc.pos}).", code="invalid_where"
        ) from None
    if not isinstance(value, dict) or "\\u0000" in raw or "\x00" in raw:
        raise InvalidInput(
            'where: must be a JSON object of field values, e.g. {"plan":"pro"}, '
            "without NUL characters.",
            code="invalid_where",
        )
    return value


# --- contacts


@router.post("/contacts", tags=["contacts"], status_code=201, summary="Create a contact")
async def create_contact(
    body: ContactCreate, session: Session, principal: Principal = require_scope("contacts:write")
) -> ContactRead:
    return await contact_service.create_contact(
        session, principal.workspace_id, body, api_context(principal)
    )


@router.get("/contacts", tags=["contacts"], summary="List contacts, oldest first")
async def list_contacts(
    session: Session,
    page: PageQuery,
    status: Annotated[ContactStatus | None, Query(description="Global state.")] = None,
    tag: Annotated[str | None, Query(max_length=100, description="Has this tag.")] = None,
    email: Annotated[
        str | None, Query(max_length=320, description="Matches the address case-insensitively.")
    ] = None,
    external_id: Annotated[str | None, Query(max_length=255)] = None,
    list_id: Annotated[uuid.UUID | None, Query(description="On this list.")] = None,
    list_status: Annotated[
        str | None,
        Query(
            pattern="^(subscribed|unconfirmed|unsubscribed|bounced|complained)$",
            description="With `list_id`: only this state on the list.",
        ),
    ] = None,
    where: Annotated[
        str | None,
        Query(
            max_length=4000,
            description='Custom field values the contact holds, as JSON: `{"plan":"pro"}` '
            "(index-backed containment).",
        ),
    ] = None,
    created_after: Annotated[Timestamp | None, Query()] = None,
    created_before: Annotated[Timestamp | None, Query()] = None,
    updated_after: Annotated[Timestamp | None, Query()] = None,
    principal: Principal = require_scope("contacts:read"),
) -> ContactPage:
    if list_status is not None and list_id is None:
        raise InvalidInput("list_status: needs list_id.", code="list_status_without_list")
    contacts, cursor = await contact_service.list_contacts(
        session,
        principal.workspace_id,
        page,
        email=email,
        status=status,
        tag=tag,
        external_id=external_id,
        list_id=list_id,
        list_status=list_status,
        where=_where(where),
        created_after=created_after,
        created_before=created_before,
        updated_after=updated_after,
    )
    return ContactPage(data=contacts, next_cursor=cursor)


@router.post(
    "/contacts/batch",
    tags=["contacts"],
    summary="Upsert up to 1,000 contacts",
    description="Each item is a contact upsert, matched by `match`. Valid items apply; each "
    "gets a result: created, updated, unchanged, or rejected with a code and the reason.",
)
async def batch_upsert(
    body: ContactBatch, session: Session, principal: Principal = require_scope("contacts:write")
) -> BatchSummary:
    return await contact_service.batch_upsert(
        session, principal.workspace_id, body, api_context(principal)
    )


async def _upsert(
    body: ContactUpsert,
    response: Response,
    session: AsyncSession,
    principal: Principal,
    match: str,
) -> ContactRead:
    contact, created = await contact_service.upsert_contact(
        session,
        principal.workspace_id,
        body,
        api_context(principal),
        match="email" if match == "email" else "external_id",
    )
    response.status_code = 201 if created else 200
    return contact


# The address in the path stays out of the access log.
redact_path_in_logs("/v1/contacts/by-email/{email}")


@router.put(
    "/contacts/by-email/{email}",
    tags=["contacts"],
    summary="Create or update the contact with this address",
    responses={201: {"description": "Created", "model": ContactRead}},
)
async def upsert_by_email(
    email: Annotated[str, Path(min_length=3, max_length=320)],
    body: ContactUpsert,
    response: Response,
    session: Session,
    principal: Principal = require_scope("contacts:write"),
) -> ContactRead:
    if body.email is not None and body.email.strip().lower() != email.strip().lower():
        raise InvalidInput(
            "email: the body's address differs from the one in the path.", code="email_mismatch"
        )
    body = body.model_copy(update={"email": email})
    body.model_fields_set.add("email")
    return await _upsert(body, response, session, principal, "email")


@router.put(
    "/contacts/by-external-id/{external_id}",
    tags=["contacts"],
    summary="Create or update the contact with this external id",
    responses={201: {"description": "Created", "model": ContactRead}},
)
async def upsert_by_external_id(
    external_id: Annotated[str, Path(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")],
    body: ContactUpsert,
    response: Response,
    session: Session,
    principal: Principal = require_scope("contacts:write"),
) -> ContactRead:
    if body.external_id is not None and body.external_id != external_id:
        raise InvalidInput(
            "external_id: the body's id differs from the one in the path.",
            code="external_id_mismatch",
        )
    body = body.model_copy(update={"external_id": external_id})
    body.model_fields_set.add("external_id")
    return await _upsert(body, response, session, principal, "external_id")


@router.get("/contacts/{contact_id:uuid}", tags=["contacts"], summary="Get a contact")
async def get_contact(
    contact_id: ContactId, session: Session, principal: Principal = require_scope("contacts:read")
) -> ContactRead:
    return await contact_service.get_contact(session, principal.workspace_id, contact_id)


@router.patch(
    "/contacts/{contact_id:uuid}",
    tags=["contacts"],
    summary="Change a contact",
    description="Only the fields given change; `null` clears one. `attributes` merge per key "
    "(a `null` value removes that key); `tags` replaces the set.",
)
async def update_contact(
    contact_id: ContactId,
    body: ContactUpdate,
    session: Session,
    principal: Principal = require_scope("contacts:write"),
) -> ContactRead:
    return await contact_service.update_contact(
        session, principal.workspace_id, contact_id, body, api_context(principal)
    )


@router.delete(
    "/contacts/{contact_id:uuid}", tags=["contacts"], status_code=204, summary="Delete a contact"
)
async def delete_contact(
    contact_id: ContactId, session: Session, principal: Principal = require_scope("contacts:write")
) -> Response:
    await contact_service.delete_contact(
        session, principal.workspace_id, contact_id, api_context(principal)
    )
    return Response(status_code=204)


@router.get(
    "/contacts/{contact_id:uuid}/timeline",
    tags=["contacts"],
    summary="A contact's activity, newest first",
)
async def contact_timeline(
    contact_id: ContactId,
    session: Session,
    page: PageQuery,
    principal: Principal = require_scope("contacts:read"),
) -> TimelinePage:
    entries, cursor = await contact_service.timeline(
        session, principal.workspace_id, contact_id, page
    )
    return TimelinePage(data=entries, next_cursor=cursor)


# --- custom fields


@router.post("/fields", tags=["fields"], status_code=201, summary="Declare a custom field")
async def create_field(
    body: FieldCreate, session: Session, principal: Principal = require_scope("contacts:write")
) -> FieldRead:
    created = await field_service.create_field(session, principal.workspace_id, body)
    return FieldRead.model_validate(created)


@router.get("/fields", tags=["fields"], summary="List custom fields by key")
async def list_fields(
    session: Session, page: PageQuery, principal: Principal = require_scope("contacts:read")
) -> FieldPage:
    fields, cursor = await field_service.list_fields(session, principal.workspace_id, page)
    return FieldPage(data=[FieldRead.model_validate(f) for f in fields], next_cursor=cursor)


@router.get("/fields/{field_key}", tags=["fields"], summary="Get a custom field")
async def get_field(
    field_key: FieldKey, session: Session, principal: Principal = require_scope("contacts:read")
) -> FieldRead:
    found = await field_service.get_field(session, principal.workspace_id, field_key)
    return FieldRead.model_validate(found)


@router.patch(
    "/fields/{field_key}",
    tags=["fields"],
    summary="Change or rename a custom field",
    description="A new `key` renames the field and moves every contact's value with it, in one "
    "transaction. Enum options held by contacts cannot be removed. The type never changes.",
)
async def update_field(
    field_key: FieldKey,
    body: FieldUpdate,
    session: Session,
    principal: Principal = require_scope("contacts:write"),
) -> FieldRead:
    found = await field_service.update_field(session, principal.workspace_id, field_key, body)
    return FieldRead.model_validate(found)


@router.delete(
    "/fields/{field_key}",
    tags=["fields"],
    status_code=204,
    summary="Delete a custom field and every contact's value of it",
)
async def delete_field(
    field_key: FieldKey, session: Session, principal: Principal = require_scope("contacts:write")
) -> Response:
    await field_service.delete_field(session, principal.workspace_id, field_key)
    return Response(status_code=204)
