"""HTTP routes of the send API (/v1/messages) and of template test-sends
(/v1/templates/{id}/test-send: they live here because sending is delivery's;
templates does not import delivery). HTTP concerns only; the rules live in
`message_service.py`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.http import UnitOfWorkRoute, allow_large_body, get_session
from sendstream.core.pagination import PageQuery
from sendstream.core.settings import get_settings
from sendstream.core.types import Timestamp
from sendstream.delivery.message_schemas import (
    BatchQueued,
    MessageBatch,
    MessageCreate,
    MessagePage,
    MessageRead,
    MessagesQueued,
    MessageStatus,
    Stream,
    TemplateTestSend,
)
from sendstream.delivery.message_service import message_service
from sendstream.workspaces.auth import Principal, require_scope
from sendstream.workspaces.errors import MissingScope

router = APIRouter(route_class=UnitOfWorkRoute)
Session = Annotated[AsyncSession, Depends(get_session)]
MessageId = Annotated[uuid.UUID, Path(description="The message's id.")]
TemplateRef = Annotated[
    str, Path(min_length=1, max_length=64, description="The template's id, or its key.")
]
Number = Annotated[int, Path(ge=1, le=2**31 - 1, description="The version number.")]


def _send_body_limit() -> int:
    """Attachments travel base64-encoded (4 bytes per 3) inside the JSON."""
    settings = get_settings()
    return settings.delivery.max_attachments_total_bytes * 4 // 3 + settings.api.max_body_bytes


allow_large_body("POST", "/v1/messages", _send_body_limit)
allow_large_body("POST", "/v1/messages/batch", _send_body_limit)

_REFUSALS = (
    "Refused with 422 and nothing queued: `invalid_address`, `recipient_suppressed`, "
    "`header_injection`, `reserved_header`, `attachment_too_large`, `invalid_attachment`, "
    "`content_required`, `content_conflict`, `from_required`, `send_at_too_far`, "
    "`list_not_found`, `unknown_sending_domain`, `domain_not_verified`, "
    "`template_not_found` and the other template codes (a strict template missing a "
    "variable: `template_undefined_variable`)."
)


@router.post(
    "/messages",
    tags=["messages"],
    status_code=202,
    summary="Send a message",
    description="Queues one message per `to` address and answers at once with their ids; "
    "delivery happens in the workers (follow it with `GET /v1/messages/{id}`). " + _REFUSALS,
)
async def send_message(
    body: MessageCreate,
    session: Session,
    principal: Principal = require_scope("messages:send"),
) -> MessagesQueued:
    return await message_service.send_message(session, principal.workspace_id, body)


@router.post(
    "/messages/batch",
    tags=["messages"],
    status_code=202,
    summary="Send up to 500 messages",
    description="Each item is a `POST /v1/messages` body, checked on its own: valid items are "
    "queued, the others answered with their code in `results` (nothing of a refused item is "
    "queued). At most 1,000 messages (`to` addresses) per request.",
)
async def send_batch(
    body: MessageBatch,
    session: Session,
    principal: Principal = require_scope("messages:send"),
) -> BatchQueued:
    return await message_service.send_batch(session, principal.workspace_id, body)


@router.get("/messages", tags=["messages"], summary="List messages, newest first")
async def list_messages(
    session: Session,
    page: PageQuery,
    status: Annotated[MessageStatus | None, Query()] = None,
    stream: Annotated[Stream | None, Query()] = None,
    to: Annotated[
        str | None, Query(max_length=320, description="To this address (case-insensitive).")
    ] = None,
    tag: Annotated[str | None, Query(max_length=100, description="With this tag.")] = None,
    created_after: Annotated[Timestamp | None, Query()] = None,
    created_before: Annotated[Timestamp | None, Query()] = None,
    principal: Principal = require_scope("messages:read"),
) -> MessagePage:
    rows, cursor = await message_service.list_messages(
        session,
        principal.workspace_id,
        page,
        to=to,
        status=status,
        stream=stream,
        tag=tag,
        created_after=created_after,
        created_before=created_before,
    )
    return MessagePage(data=rows, next_cursor=cursor)


@router.get(
    "/messages/{message_id:uuid}",
    tags=["messages"],
    summary="Get a message with its state and every event",
)
async def get_message(
    message_id: MessageId, session: Session, principal: Principal = require_scope("messages:read")
) -> MessageRead:
    return await message_service.get_message(session, principal.workspace_id, message_id)


@router.get(
    "/messages/{message_id:uuid}/raw",
    tags=["messages"],
    response_class=Response,
    responses={200: {"content": {"message/rfc822": {"schema": {"type": "string"}}}}},
    summary="The message as the capture transport kept it",
    description="Local development: with no SMTP relay configured, messages are captured "
    "instead of sent; this answers the exact bytes (signed MIME). 404 "
    "`message_not_captured` for a message that went to a relay or is not sent yet.",
)
async def get_raw(
    message_id: MessageId, session: Session, principal: Principal = require_scope("messages:read")
) -> Response:
    captured = await message_service.get_raw(session, principal.workspace_id, message_id)
    return Response(content=captured.raw, media_type="message/rfc822")


_TEST_SEND = (
    "Renders the template for each `to` address (1 to 5) with `data` (default: the "
    "version's `sample_data`) and, given `contact_id`, as that contact, and sends it at "
    "once as a transactional message with `[Test] ` before the subject, tagged `test`. "
    "Bounce, complaint and manual suppressions apply (`recipient_suppressed`); the sending "
    "domain must be verified. Needs `templates:write` and `messages:send` (and "
    "`contacts:read` with `contact_id`). Answers the queued messages' ids."
)


def _may_test_send(principal: Principal, body: TemplateTestSend) -> None:
    if not principal.has_scope("messages:send"):
        raise MissingScope("messages:send")
    if body.contact_id is not None and not principal.has_scope("contacts:read"):
        raise MissingScope("contacts:read")


@router.post(
    "/templates/{template_id}/test-send",
    tags=["templates"],
    status_code=202,
    summary="Send a test of a template's active version",
    description=_TEST_SEND,
)
async def send_template_test(
    template_id: TemplateRef,
    body: TemplateTestSend,
    session: Session,
    principal: Principal = require_scope("templates:write"),
) -> MessagesQueued:
    _may_test_send(principal, body)
    return await message_service.send_test(session, principal.workspace_id, template_id, None, body)


@router.post(
    "/templates/{template_id}/versions/{number}/test-send",
    tags=["templates"],
    status_code=202,
    summary="Send a test of one version",
    description=_TEST_SEND,
)
async def send_version_test(
    template_id: TemplateRef,
    number: Number,
    body: TemplateTestSend,
    session: Session,
    principal: Principal = require_scope("templates:write"),
) -> MessagesQueued:
    _may_test_send(principal, body)
    return await message_service.send_test(
        session, principal.workspace_id, template_id, number, body
    )
