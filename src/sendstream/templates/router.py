"""HTTP routes of templates, versions and previews, mounted under /v1.
HTTP concerns only; the rules live in service.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.http import UnitOfWorkRoute, get_session
from sendstream.core.pagination import PageQuery
from sendstream.templates.schemas import (
    Kind,
    PreviewRead,
    PreviewRequest,
    TemplateCreate,
    TemplatePage,
    TemplateRead,
    TemplateUpdate,
    VersionCreate,
    VersionPage,
    VersionRead,
)
from sendstream.templates.service import template_service
from sendstream.workspaces.auth import Principal, require_scope
from sendstream.workspaces.errors import MissingScope

router = APIRouter(route_class=UnitOfWorkRoute, tags=["templates"])
Session = Annotated[AsyncSession, Depends(get_session)]
TemplateRef = Annotated[
    str,
    Path(min_length=1, max_length=64, description="The template's id, or its key."),
]
Number = Annotated[int, Path(ge=1, le=2**31 - 1, description="The version number.")]


def _actor(principal: Principal) -> str | None:
    return f"api_key:{principal.api_key_id}" if principal.api_key_id else None


@router.post("/templates", status_code=201, summary="Create a template with its first version")
async def create_template(
    body: TemplateCreate,
    session: Session,
    response: Response,
    principal: Principal = require_scope("templates:write"),
) -> TemplateRead:
    created = await template_service.create_template(
        session, principal.workspace_id, body, _actor(principal)
    )
    response.headers["Location"] = f"/v1/templates/{created.id}"
    return created


@router.get("/templates", summary="List templates, oldest first")
async def list_templates(
    session: Session,
    page: PageQuery,
    kind: Annotated[Kind | None, Query(description="Only this kind.")] = None,
    archived: Annotated[
        bool | None, Query(description="true: only archived; false: only live; absent: both.")
    ] = None,
    principal: Principal = require_scope("templates:read"),
) -> TemplatePage:
    items, cursor = await template_service.list_templates(
        session, principal.workspace_id, page, kind=kind, archived=archived
    )
    return TemplatePage(data=items, next_cursor=cursor)


@router.get("/templates/{template_id}", summary="Get a template with its active version")
async def get_template(
    template_id: TemplateRef,
    session: Session,
    principal: Principal = require_scope("templates:read"),
) -> TemplateRead:
    return await template_service.get_template(session, principal.workspace_id, template_id)


@router.patch(
    "/templates/{template_id}",
    summary="Rename or describe a template",
    description="Only `name` and `description` change here; content changes are new versions.",
)
async def update_template(
    template_id: TemplateRef,
    body: TemplateUpdate,
    session: Session,
    principal: Principal = require_scope("templates:write"),
) -> TemplateRead:
    return await template_service.update_template(
        session, principal.workspace_id, template_id, body
    )


@router.delete(
    "/templates/{template_id}",
    status_code=204,
    summary="Archive a template",
    description="Its versions stay (messages refer to them); it can no longer be sent or get "
    "new versions. A partial or layout in use by a live template is refused (409).",
)
async def archive_template(
    template_id: TemplateRef,
    session: Session,
    principal: Principal = require_scope("templates:write"),
) -> Response:
    await template_service.archive_template(session, principal.workspace_id, template_id)
    return Response(status_code=204)


@router.post(
    "/templates/{template_id}/versions",
    status_code=201,
    summary="Save a new version",
    description="Versions never change once saved. `activate` (default true) makes the new "
    "version the one that sends.",
)
async def create_version(
    template_id: TemplateRef,
    body: VersionCreate,
    session: Session,
    response: Response,
    principal: Principal = require_scope("templates:write"),
) -> VersionRead:
    created = await template_service.create_version(
        session, principal.workspace_id, template_id, body, _actor(principal)
    )
    response.headers["Location"] = f"/v1/templates/{created.template_id}/versions/{created.number}"
    return created


@router.get("/templates/{template_id}/versions", summary="List versions, newest first")
async def list_versions(
    template_id: TemplateRef,
    session: Session,
    page: PageQuery,
    principal: Principal = require_scope("templates:read"),
) -> VersionPage:
    items, cursor = await template_service.list_versions(
        session, principal.workspace_id, template_id, page
    )
    return VersionPage(data=items, next_cursor=cursor)


@router.get("/templates/{template_id}/versions/{number}", summary="Get one version")
async def get_version(
    template_id: TemplateRef,
    number: Number,
    session: Session,
    principal: Principal = require_scope("templates:read"),
) -> VersionRead:
    return await template_service.get_version(session, principal.workspace_id, template_id, number)


@router.post(
    "/templates/{template_id}/versions/{number}/activate",
    summary="Make a version the one that sends",
)
async def activate_version(
    template_id: TemplateRef,
    number: Number,
    session: Session,
    principal: Principal = require_scope("templates:write"),
) -> TemplateRead:
    return await template_service.activate_version(
        session, principal.workspace_id, template_id, number
    )


@router.post(
    "/templates/{template_id}/preview",
    summary="Render a version with sample data or for a contact",
    description="Renders the active version (or `version`) with `data` (default: the "
    "version's `sample_data`) and, given `contact_id`, that contact (which needs the "
    "`contacts:read` scope too). Template faults answer 422 with line and column.",
)
async def preview_template(
    template_id: TemplateRef,
    body: PreviewRequest,
    session: Session,
    principal: Principal = require_scope("templates:read"),
) -> PreviewRead:
    if body.contact_id is not None and not principal.has_scope("contacts:read"):
        raise MissingScope("contacts:read")
    return await template_service.preview(session, principal.workspace_id, template_id, body)
