"""HTTP routes of IMAP bounce mailboxes (/v1/bounce-mailboxes). HTTP concerns
only; the rules live in `imap_service.py`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.bounces.imap_schemas import (
    BounceMailboxCheck,
    BounceMailboxCreate,
    BounceMailboxPage,
    BounceMailboxRead,
    BounceMailboxUpdate,
)
from sendstream.bounces.imap_service import imap_mailbox_service
from sendstream.core.http import UnitOfWorkRoute, get_session
from sendstream.core.pagination import PageQuery
from sendstream.workspaces.auth import Principal, require_scope

router = APIRouter(route_class=UnitOfWorkRoute)
Session = Annotated[AsyncSession, Depends(get_session)]
MailboxId = Annotated[uuid.UUID, Path(description="The bounce mailbox's id.")]
TAG = "bounce mailboxes"
_ERRORS = (
    " 422 `invalid_bounce_mailbox` (settings that cannot work: no password for `password`, "
    "no token for `xoauth2`, `move` to the folder being read, CA certificates that are "
    "not PEM) or `validation_error`."
)


@router.post(
    "/bounce-mailboxes",
    tags=[TAG],
    status_code=201,
    summary="Add an IMAP bounce mailbox",
    description="The worker starts reading the folder within `bounces.imap_reload_seconds`. "
    "Secrets are stored encrypted and never returned." + _ERRORS,
)
async def create_bounce_mailbox(
    body: BounceMailboxCreate,
    session: Session,
    response: Response,
    principal: Principal = require_scope("domains:write"),
) -> BounceMailboxRead:
    mailbox = await imap_mailbox_service.create_mailbox(session, principal.workspace_id, body)
    response.headers["Location"] = f"/v1/bounce-mailboxes/{mailbox.id}"
    return await imap_mailbox_service.read(session, mailbox)


@router.get("/bounce-mailboxes", tags=[TAG], summary="List IMAP bounce mailboxes, oldest first")
async def list_bounce_mailboxes(
    session: Session, page: PageQuery, principal: Principal = require_scope("domains:read")
) -> BounceMailboxPage:
    rows, cursor = await imap_mailbox_service.list_mailboxes(session, principal.workspace_id, page)
    return BounceMailboxPage(
        data=[await imap_mailbox_service.read(session, row) for row in rows], next_cursor=cursor
    )


@router.get(
    "/bounce-mailboxes/{mailbox_id:uuid}",
    tags=[TAG],
    summary="Get an IMAP bounce mailbox",
    description="With its position (`uidvalidity`, `last_uid`), `last_error` and counters.",
)
async def get_bounce_mailbox(
    mailbox_id: MailboxId, session: Session, principal: Principal = require_scope("domains:read")
) -> BounceMailboxRead:
    mailbox = await imap_mailbox_service.get_mailbox(session, principal.workspace_id, mailbox_id)
    return await imap_mailbox_service.read(session, mailbox)


@router.patch(
    "/bounce-mailboxes/{mailbox_id:uuid}",
    tags=[TAG],
    summary="Change an IMAP bounce mailbox",
    description="Fields left out stay; a secret set to null is removed. Changing the host, "
    "port, username or folder starts reading the folder from its beginning (mail handed "
    "over before is recognised and not handed over again)." + _ERRORS,
)
async def update_bounce_mailbox(
    mailbox_id: MailboxId,
    body: BounceMailboxUpdate,
    session: Session,
    principal: Principal = require_scope("domains:write"),
) -> BounceMailboxRead:
    mailbox = await imap_mailbox_service.update_mailbox(
        session, principal.workspace_id, mailbox_id, body
    )
    return await imap_mailbox_service.read(session, mailbox)


@router.delete(
    "/bounce-mailboxes/{mailbox_id:uuid}",
    tags=[TAG],
    status_code=204,
    summary="Delete an IMAP bounce mailbox",
    description="The worker stops reading it; mail already handed over stays processed.",
)
async def delete_bounce_mailbox(
    mailbox_id: MailboxId, session: Session, principal: Principal = require_scope("domains:write")
) -> Response:
    await imap_mailbox_service.delete_mailbox(session, principal.workspace_id, mailbox_id)
    return Response(status_code=204)


@router.post(
    "/bounce-mailboxes/{mailbox_id:uuid}/check",
    tags=[TAG],
    summary="Test the connection now",
    description="Connects, authenticates and opens the folder, and answers with what "
    "happened (`ok`, `error`); the outcome is also recorded on the mailbox. Reads no mail.",
)
async def check_bounce_mailbox(
    mailbox_id: MailboxId, session: Session, principal: Principal = require_scope("domains:write")
) -> BounceMailboxCheck:
    return await imap_mailbox_service.check_mailbox(session, principal.workspace_id, mailbox_id)
