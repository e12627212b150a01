"""HTTP routes of SMTP credentials (/v1/smtp-credentials), the logins of the
submission relay. Credentials are keys: the `keys:read`/`keys:write`
scopes govern them, and every change is in the audit log (the auth
dependency writes it). HTTP concerns only; rules live in
`smtp_credential_service.py`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core import idempotency
from sendstream.core.http import UnitOfWorkRoute, get_session
from sendstream.core.pagination import PageQuery
from sendstream.delivery.smtp_credential_schemas import (
    SmtpCredentialCreate,
    SmtpCredentialCreated,
    SmtpCredentialPage,
    SmtpCredentialRead,
)
from sendstream.delivery.smtp_credential_service import smtp_credential_service
from sendstream.workspaces.auth import Principal, require_scope

router = APIRouter(route_class=UnitOfWorkRoute)
Session = Annotated[AsyncSession, Depends(get_session)]
TAG = "smtp credentials"


@router.get("/smtp-credentials", tags=[TAG], summary="List SMTP credentials")
async def list_smtp_credentials(
    session: Session, page: PageQuery, principal: Principal = require_scope("keys:read")
) -> SmtpCredentialPage:
    rows, cursor = await smtp_credential_service.list_credentials(
        session, principal.workspace_id, page
    )
    return SmtpCredentialPage(
        data=[SmtpCredentialRead.model_validate(r) for r in rows], next_cursor=cursor
    )


@router.post(
    "/smtp-credentials",
    tags=[TAG],
    status_code=201,
    summary="Create an SMTP credential",
    description="A login for the SMTP submission relay (ports 587/465, AUTH PLAIN or "
    "LOGIN). The response holds the password; it is never shown again. Refused: "
    "`unknown_scope`, `scope_escalation`, `invalid_expiry`, `invalid_username`, "
    "`smtp_username_taken`.",
)
async def create_smtp_credential(
    body: SmtpCredentialCreate,
    request: Request,
    session: Session,
    response: Response,
    principal: Principal = require_scope("keys:write"),
) -> SmtpCredentialCreated:
    credential, password = await smtp_credential_service.create_credential(
        session, principal.workspace_id, body, granted_by=sorted(principal.scopes)
    )
    response.headers["Location"] = f"/v1/smtp-credentials/{credential.id}"
    response.headers["Cache-Control"] = "no-store"
    read = SmtpCredentialRead.model_validate(credential).model_dump()
    # An Idempotency-Key replay gets the credential without its password:
    # storing the response as sent would keep the password in clear.
    idempotency.store_instead(
        request, SmtpCredentialCreated(**read, password=None).model_dump_json().encode()
    )
    return SmtpCredentialCreated(**read, password=password)


@router.get("/smtp-credentials/{credential_id}", tags=[TAG], summary="Get an SMTP credential")
async def get_smtp_credential(
    credential_id: uuid.UUID, session: Session, principal: Principal = require_scope("keys:read")
) -> SmtpCredentialRead:
    return SmtpCredentialRead.model_validate(
        await smtp_credential_service.get_credential(session, principal.workspace_id, credential_id)
    )


@router.delete(
    "/smtp-credentials/{credential_id}",
    tags=[TAG],
    summary="Revoke an SMTP credential",
    description="At once: AUTH with it fails, and open connections send nothing more. "
    "The credential stays listed with `revoked_at`.",
)
async def revoke_smtp_credential(
    credential_id: uuid.UUID, session: Session, principal: Principal = require_scope("keys:write")
) -> SmtpCredentialRead:
    return SmtpCredentialRead.model_validate(
        await smtp_credential_service.revoke_credential(
            session, principal.workspace_id, credential_id
        )
    )
