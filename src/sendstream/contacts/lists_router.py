"""HTTP routes of lists, subscriptions, consent records and the public
double opt-in confirmation page. HTTP concerns only; the rules live in
`lists.py`."""

from __future__ import annotations

import html
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.contacts.consent import ConsentContext
from sendstream.contacts.errors import (
    ConfirmationLinkExpired,
    ConfirmationLinkInvalid,
    ConfirmationNotPending,
)
from sendstream.contacts.lists import (
    Confirmation,
    ListWithCounts,
    list_service,
    subscription_service,
)
from sendstream.contacts.optin import confirmation_prompt
from sendstream.contacts.schemas import ConsentInput
from sendstream.core.http import PROBLEM_JSON, UnitOfWorkRoute, client_ip, get_session
from sendstream.core.pagination import Page, PageQuery
from sendstream.core.types import NO_CONTROL_CHARS, NO_NUL
from sendstream.models.consent import ConsentRecord
from sendstream.models.contact_list import Subscription
from sendstream.workspaces.auth import Principal, require_scope

router = APIRouter(route_class=UnitOfWorkRoute)
Session = Annotated[AsyncSession, Depends(get_session)]

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_CONTROL_CHARS)]
Description = Annotated[str, StringConstraints(max_length=1000, pattern=NO_NUL)]
Visibility = Literal["public", "private"]
OptIn = Literal["single", "double"]
SubscriptionStatus = Literal["subscribed", "unconfirmed", "unsubscribed", "bounced", "complained"]


def _actor(principal: Principal) -> str:
    return f"key:{principal.api_key_id}" if principal.api_key_id else "api"


# --- schemas


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListCreate(_Input):
    name: Name
    description: Description | None = None
    visibility: Visibility = Field(
        default="private", description="`public` lists show in the preference centre."
    )
    opt_in: OptIn = Field(
        default="single",
        description="`double`: a subscription stays `unconfirmed` until the person follows "
        "the link mailed to them.",
    )


class ListUpdate(_Input):
    name: Name | None = Field(default=None, description="Omitted or null: unchanged.")
    description: Description | None = Field(default=None, description="null clears it.")
    visibility: Visibility | None = None
    opt_in: OptIn | None = None


class SubscriberCounts(BaseModel):
    subscribed: int
    unconfirmed: int
    unsubscribed: int
    bounced: int
    complained: int


class ListRead(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    visibility: Visibility
    opt_in: OptIn
    subscribers: SubscriberCounts = Field(description="Subscriptions per state.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, item: ListWithCounts) -> ListRead:
        found = item.list
        return cls(
            id=found.id,
            name=found.name,
            description=found.description,
            visibility=found.visibility,
            opt_in=found.opt_in,
            subscribers=SubscriberCounts(**item.counts),
            created_at=found.created_at,
            updated_at=found.updated_at,
        )


class ListPage(Page[ListRead]):
    pass


class MemberRead(BaseModel):
    contact_id: uuid.UUID
    email: str
    status: SubscriptionStatus
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, sub: Subscription, email: str) -> MemberRead:
        return cls(
            contact_id=sub.contact_id,
            email=email,
            status=sub.status,
            created_at=sub.created_at,
            updated_at=sub.updated_at,
        )


class MemberPage(Page[MemberRead]):
    pass


class SubscriptionRead(BaseModel):
    list_id: uuid.UUID
    list_name: str
    status: SubscriptionStatus
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, sub: Subscription, list_name: str) -> SubscriptionRead:
        return cls(
            list_id=sub.list_id,
            list_name=list_name,
            status=sub.status,
            created_at=sub.created_at,
            updated_at=sub.updated_at,
        )


class SubscriptionPage(Page[SubscriptionRead]):
    pass


class SubscriptionSet(_Input):
    status: SubscriptionStatus = Field(
        description="`subscribed` or `unsubscribed`; on a double opt-in list `subscribed` "
        "gives `unconfirmed` until the person confirms. `bounced`, `complained` and "
        "`unconfirmed` cannot be set here (409)."
    )
    consent: ConsentInput = Field(default_factory=ConsentInput)


class ConsentRead(BaseModel):
    id: int
    list_id: uuid.UUID | None = Field(description="null: the contact's global state.")
    status: str
    previous_status: str | None
    source: str
    actor: str | None
    ip: str | None
    user_agent: str | None
    text: str | None
    occurred_at: datetime

    @classmethod
    def of(cls, record: ConsentRecord) -> ConsentRead:
        return cls(
            id=record.id,
            list_id=record.list_id,
            status=record.status,
            previous_status=record.previous_status,
            source=record.source,
            actor=record.actor,
            ip=str(record.ip) if record.ip is not None else None,
            user_agent=record.user_agent,
            text=record.consent_text,
            occurred_at=record.occurred_at,
        )


class ConsentPage(Page[ConsentRead]):
    pass


class ConfirmationRead(BaseModel):
    list_id: uuid.UUID
    list_name: str
    status: SubscriptionStatus
    changed: bool = Field(description="false when the link had been followed before.")


ListId = Annotated[uuid.UUID, Path(description="The list's id.")]
ContactId = Annotated[uuid.UUID, Path(description="The contact's id.")]
Token = Annotated[
    str,
    Path(
        min_length=1,
        max_length=256,
        description="The token from the confirmation mail's link.",
    ),
]

# --- lists


@router.post("/lists", tags=["lists"], status_code=201, summary="Create a list")
async def create_list(
    body: ListCreate,
    session: Session,
    response: Response,
    principal: Principal = require_scope("contacts:write"),
) -> ListRead:
    created = await list_service.create_list(
        session,
        principal.workspace_id,
        name=body.name,
        description=body.description,
        visibility=body.visibility,
        opt_in=body.opt_in,
    )
    response.headers["Location"] = f"/v1/lists/{created.list.id}"
    return ListRead.of(created)


@router.get("/lists", tags=["lists"], summary="List lists, oldest first")
async def list_lists(
    session: Session, page: PageQuery, principal: Principal = require_scope("contacts:read")
) -> ListPage:
    items, cursor = await list_service.list_lists(session, principal.workspace_id, page)
    return ListPage(data=[ListRead.of(i) for i in items], next_cursor=cursor)


@router.get("/lists/{list_id}", tags=["lists"], summary="Get a list with its subscriber counts")
async def get_list(
    list_id: ListId, session: Session, principal: Principal = require_scope("contacts:read")
) -> ListRead:
    return ListRead.of(await list_service.get_list(session, principal.workspace_id, list_id))


@router.patch("/lists/{list_id}", tags=["lists"], summary="Change a list")
async def update_list(
    list_id: ListId,
    body: ListUpdate,
    session: Session,
    principal: Principal = require_scope("contacts:write"),
) -> ListRead:
    changes: dict[str, Any] = {
        key: getattr(body, key)
        for key in body.model_fields_set
        # Only the description can be cleared; null elsewhere means "unchanged".
        if getattr(body, key) is not None or key == "description"
    }
    updated = await list_service.update_list(session, principal.workspace_id, list_id, changes)
    return ListRead.of(updated)


@router.delete(
    "/lists/{list_id}",
    tags=["lists"],
    status_code=204,
    summary="Delete a list",
    description="Its subscriptions go with it; consent records stay (with `list_id` null).",
)
async def delete_list(
    list_id: ListId, session: Session, principal: Principal = require_scope("contacts:write")
) -> Response:
    await list_service.delete_list(session, principal.workspace_id, list_id)
    return Response(status_code=204)


# --- subscriptions


@router.get(
    "/lists/{list_id}/subscriptions",
    tags=["lists"],
    summary="A list's members, by contact id",
)
async def list_members(
    list_id: ListId,
    session: Session,
    page: PageQuery,
    status: Annotated[
        SubscriptionStatus | None, Query(description="Only members in this state.")
    ] = None,
    principal: Principal = require_scope("contacts:read"),
) -> MemberPage:
    rows, cursor = await subscription_service.list_members(
        session, principal.workspace_id, list_id, page, status=status
    )
    return MemberPage(data=[MemberRead.of(s, e) for s, e in rows], next_cursor=cursor)


@router.get(
    "/contacts/{contact_id}/subscriptions",
    tags=["lists"],
    summary="A contact's subscriptions, by list id",
)
async def contact_subscriptions(
    contact_id: ContactId,
    session: Session,
    page: PageQuery,
    principal: Principal = require_scope("contacts:read"),
) -> SubscriptionPage:
    rows, cursor = await subscription_service.contact_subscriptions(
        session, principal.workspace_id, contact_id, page
    )
    return SubscriptionPage(data=[SubscriptionRead.of(s, n) for s, n in rows], next_cursor=cursor)


@router.put(
    "/contacts/{contact_id}/subscriptions/{list_id}",
    tags=["lists"],
    summary="Subscribe or unsubscribe a contact",
    description="Writes a consent record and emits `contact.subscribed` or "
    "`contact.unsubscribed` when the state changes; a repeat changes nothing. On a double "
    "opt-in list the answer is `unconfirmed` and a confirmation mail is queued. 409 "
    "`subscription_status_not_settable` for `bounced`, `complained` and `unconfirmed`.",
)
async def set_subscription(
    contact_id: ContactId,
    list_id: ListId,
    body: SubscriptionSet,
    session: Session,
    principal: Principal = require_scope("contacts:write"),
) -> SubscriptionRead:
    consent = body.consent
    context = ConsentContext(
        source=consent.source,
        actor=_actor(principal),
        ip=str(consent.ip) if consent.ip is not None else None,
        user_agent=consent.user_agent,
        text=consent.text,
    )
    sub = await subscription_service.set_subscription(
        session, principal.workspace_id, contact_id, list_id, body.status, context
    )
    found = await list_service.get_list(session, principal.workspace_id, list_id)
    return SubscriptionRead.of(sub, found.list.name)


@router.get(
    "/contacts/{contact_id}/consent",
    tags=["lists"],
    summary="A contact's consent records, newest first",
    description="Append-only: every change of a global or per-list state, how it came "
    "about, from which address and user agent, and the words agreed to.",
)
async def consent_records(
    contact_id: ContactId,
    session: Session,
    page: PageQuery,
    principal: Principal = require_scope("contacts:read"),
) -> ConsentPage:
    rows, cursor = await subscription_service.consent_records(
        session, principal.workspace_id, contact_id, page
    )
    return ConsentPage(data=[ConsentRead.of(r) for r in rows], next_cursor=cursor)


# --- double opt-in confirmation (public: the token is the credential)

_PAGE_HEADERS = {
    # The token is in the URL: keep it out of caches and Referer headers.
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}
_GONE: dict[int | str, dict[str, Any]] = {
    410: {
        "description": "The confirmation link expired.",
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
}
_LinkError = ConfirmationLinkInvalid | ConfirmationLinkExpired | ConfirmationNotPending


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;"
        "padding:0 1rem;line-height:1.5}button{font-size:1.1rem;padding:.6rem 1.4rem}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=_PAGE_HEADERS)


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _error_page(exc: _LinkError) -> HTMLResponse:
    return _page("This link cannot be used", f"<p>{html.escape(exc.message)}</p>", exc.status)


@router.get(
    "/confirm/{token}",
    tags=["consent"],
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}}, **_GONE},
    summary="The confirmation page of a double opt-in link (public)",
    description="Shows a button that confirms; following the link changes nothing by itself, "
    "because mail scanners open links too.",
)
async def confirmation_page(token: Token, request: Request, session: Session) -> HTMLResponse:
    try:
        found = await subscription_service.preview_confirmation(session, token)
    except (ConfirmationLinkInvalid, ConfirmationLinkExpired) as exc:
        if _wants_html(request):
            return _error_page(exc)
        raise
    name = html.escape(found.list.name)
    if found.status == "subscribed":
        return _page("Already confirmed", f"<p>You are subscribed to {name}.</p>")
    if found.status != "unconfirmed":
        # A page that reads fine, saying why there is nothing to confirm; the
        # POST answers 409 for the same state.
        return _page(
            "This link cannot be used",
            f"<p>{html.escape(ConfirmationNotPending(found.status).message)}</p>",
        )
    prompt = html.escape(confirmation_prompt(found.list.name))
    return _page(
        f"Confirm your subscription to {found.list.name}",
        f'<form method="post"><p>{prompt}</p>'
        '<button type="submit">Confirm subscription</button></form>',
    )


@router.post(
    "/confirm/{token}",
    tags=["consent"],
    response_model=ConfirmationRead,
    responses={200: {"content": {"text/html": {}}}, **_GONE},
    summary="Confirm a double opt-in subscription (public)",
    description="Makes the pending subscription `subscribed`, records consent source "
    "`confirmation` with the caller's address and user agent and emits `contact.subscribed`. "
    "Answers HTML to browsers, JSON otherwise.",
)
async def confirm(
    token: Token, request: Request, session: Session
) -> ConfirmationRead | HTMLResponse:
    try:
        done: Confirmation = await subscription_service.confirm(
            session,
            token,
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
        )
    except (ConfirmationLinkInvalid, ConfirmationLinkExpired, ConfirmationNotPending) as exc:
        if _wants_html(request):
            return _error_page(exc)
        raise
    if _wants_html(request):
        return _page(
            "Subscription confirmed", f"<p>You are subscribed to {html.escape(done.list.name)}.</p>"
        )
    return ConfirmationRead(
        list_id=done.list.id, list_name=done.list.name, status="subscribed", changed=done.changed
    )
