"""HTTP routes of contact import and export: upload a file (202, a job runs
it), follow its progress, download its error report, cancel it; export
contacts as CSV or JSON lines, streamed."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.contacts.exports import ExportFormat, export_service
from sendstream.contacts.imports import import_service, parse_mapping, summary
from sendstream.contacts.imports_resume import is_stalled
from sendstream.core.errors import InvalidText
from sendstream.core.http import UnitOfWorkRoute, allow_large_body, get_session
from sendstream.core.pagination import Page, PageQuery
from sendstream.core.settings import get_settings
from sendstream.models.contact_import import ContactImport
from sendstream.workspaces.auth import Principal, require_scope

router = APIRouter(route_class=UnitOfWorkRoute, tags=["contacts"])
Session = Annotated[AsyncSession, Depends(get_session)]
ImportId = Annotated[uuid.UUID, Path(description="The import's id.")]
ImportStatus = Literal["queued", "running", "completed", "failed", "cancelled"]

allow_large_body("POST", "/v1/contacts/imports", lambda: get_settings().api.max_upload_bytes)


class ImportRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: ImportStatus
    format: Literal["csv", "jsonl"]
    mode: Literal["upsert", "create_only", "update_only"]
    events: Literal["summary", "each"] = Field(
        description="summary: the contacts the import creates are announced together in "
        "`contact_import.completed`; each: one `contact.created` per contact."
    )
    list_id: uuid.UUID | None = Field(description="Imported contacts are subscribed to this list.")
    mapping: dict[str, str] = Field(description="Column -> field overrides; `-` ignores a column.")
    filename: str | None
    file: str = Field(description="How the file was read: format, encoding, delimiter, gzip.")
    encoding: str | None
    delimiter: str | None
    compression: str | None
    bytes_total: int
    rows_total: int | None = Field(
        description="Rows in the file: an estimate (its line count) until the import completes."
    )
    rows_done: int = Field(description="Rows processed and committed so far.")
    progress: float = Field(description="rows_done / rows_total, 0 to 1.")
    stalled: bool = Field(
        description="A command-line import (no job) queued or running with no progress for "
        "`imports.stalled_after_minutes` (default 2): its process most likely died. Continue it "
        "with `sendstream contacts import FILE --resume <id>`."
    )
    created: int
    updated: int
    unchanged: int
    skipped: int = Field(
        description="Rows the mode left alone: existing contacts in create_only, unknown "
        "addresses in update_only."
    )
    rejected: int = Field(description="Rows refused; see the error report.")
    subscribed: int = Field(description="New subscriptions to `list_id`.")
    error: str | None = Field(description="Why the import failed, when it did.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class ImportPage(Page[ImportRead]):
    pass


def _read(contact_import: ContactImport) -> ImportRead:
    total = contact_import.rows_total
    done = contact_import.rows_done
    if contact_import.status == "completed":
        progress = 1.0
    else:
        progress = min(done / total, 1.0) if total else 0.0
    return ImportRead.model_validate(
        {
            **{
                c: getattr(contact_import, c)
                for c in ImportRead.model_fields
                if c not in ("file", "progress", "stalled")
            },
            "file": summary(contact_import),
            "progress": round(progress, 4),
            "stalled": is_stalled(contact_import),
        }
    )


_MAP_PATTERN = r"^[^=]+=.+$"
_LIST_NOT_FOUND: dict[str, Any] = {
    "description": "`list_id` names no list of this workspace (`list_not_found`).",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


@router.post(
    "/contacts/imports",
    status_code=202,
    summary="Import contacts from a file",
    description="Upload a CSV (any delimiter of , ; tab |; UTF-8, UTF-16 with BOM or "
    "Windows-1252; gzip accepted) or JSON lines file as `file`. The header and first row are "
    "checked now (422 `invalid_import_file` for an empty or header-only file, unknown columns "
    "or a bad mapping); the rows are imported by a background job. Follow it with "
    "`GET /v1/contacts/imports/{import_id}`. Up to 1 GiB (`api.max_upload_bytes`).",
    responses={404: _LIST_NOT_FOUND},
)
async def start_import(
    session: Session,
    file: Annotated[UploadFile, File(description="The CSV or JSON lines file (gzip allowed).")],
    mode: Annotated[
        Literal["upsert", "create_only", "update_only"],
        Form(description="upsert adds and updates; create_only adds; update_only updates."),
    ] = "upsert",
    events: Annotated[
        Literal["summary", "each"],
        Form(
            description="summary (default): one `contact_import.completed` event announces the "
            "contacts the import creates; each: also one `contact.created` per contact (for "
            "receivers that must react to every new contact). Changes to existing contacts are "
            "announced one by one either way."
        ),
    ] = "summary",
    list_id: Annotated[
        uuid.UUID | SkipJsonSchema[None],
        Form(description="Subscribe the imported contacts to this list."),
    ] = None,
    map: Annotated[
        list[Annotated[str, Field(pattern=_MAP_PATTERN, max_length=300)]] | SkipJsonSchema[None],
        Form(description="`column=field` overrides (repeat the field); `column=-` ignores it."),
    ] = None,
    consent_text: Annotated[
        str | SkipJsonSchema[None],
        Form(
            max_length=10_000,
            description="The words the people agreed to (consent records).",
        ),
    ] = None,
    format: Annotated[
        Literal["auto", "csv", "jsonl"],
        Form(description="csv or jsonl to force the format; auto guesses from name and content."),
    ] = "auto",
    principal: Principal = require_scope("contacts:write"),
) -> ImportRead:
    if consent_text is not None and "\x00" in consent_text:
        # Checked here, not by a pattern: the OpenAPI pattern is not applied
        # to multipart fields by every client or test generator.
        raise InvalidText("consent_text")
    contact_import = await import_service.start_upload(
        session,
        principal.workspace_id,
        upload=file.file,
        filename=file.filename,
        format=None if format == "auto" else format,
        mode=mode,
        events=events,
        list_id=list_id,
        mapping=parse_mapping(map or []),
        consent_text=consent_text,
        actor=f"key:{principal.api_key_id}" if principal.api_key_id else None,
    )
    return _read(contact_import)


@router.get("/contacts/imports", summary="List imports, newest first")
async def list_imports(
    session: Session, page: PageQuery, principal: Principal = require_scope("contacts:read")
) -> ImportPage:
    rows, cursor = await import_service.list_imports(session, principal.workspace_id, page)
    return ImportPage(data=[_read(r) for r in rows], next_cursor=cursor)


@router.get("/contacts/imports/{import_id}", summary="Get an import: state, counts, progress")
async def get_import(
    import_id: ImportId, session: Session, principal: Principal = require_scope("contacts:read")
) -> ImportRead:
    return _read(await import_service.get_import(session, principal.workspace_id, import_id))


@router.get(
    "/contacts/imports/{import_id}/errors",
    summary="Download an import's error report",
    description="CSV with the columns row, field, message, value: one line per rejected row "
    "(row 0 is a problem with the whole file). Rows count from 1 after the header.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def import_errors(
    import_id: ImportId, session: Session, principal: Principal = require_scope("contacts:read")
) -> StreamingResponse:
    contact_import = await import_service.get_import(session, principal.workspace_id, import_id)
    name = f"import-{contact_import.id}-errors.csv"
    return StreamingResponse(
        export_service.stream(export_service.errors_report(contact_import.id)),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post(
    "/contacts/imports/{import_id}/cancel",
    summary="Cancel an import",
    description="A queued import never starts; a running one stops before its next chunk of "
    "rows (chunks already committed stay). 409 `import_finished` if it already ended.",
)
async def cancel_import(
    import_id: ImportId, session: Session, principal: Principal = require_scope("contacts:write")
) -> ImportRead:
    return _read(await import_service.cancel_import(session, principal.workspace_id, import_id))


@router.get(
    "/contacts/export",
    summary="Export contacts as CSV or JSON lines",
    description="Streams every contact matching the filters (all of them by default): members "
    "of a list (subscribed), a global status, a tag. CSV has one column per custom field; "
    "JSON lines has one contact object per line.",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            }
        },
        404: _LIST_NOT_FOUND,
    },
)
async def export_contacts(
    session: Session,
    format: Annotated[ExportFormat, Query(description="csv or jsonl.")] = "csv",
    list_id: Annotated[
        uuid.UUID | None, Query(description="Only subscribed members of this list.")
    ] = None,
    status: Annotated[
        Literal["active", "unsubscribed", "bounced", "complained"] | None,
        Query(description="Only contacts with this global status."),
    ] = None,
    tag: Annotated[
        str | None, Query(min_length=1, max_length=100, description="Only contacts with this tag.")
    ] = None,
    principal: Principal = require_scope("contacts:read"),
) -> StreamingResponse:
    if tag is not None and "\x00" in tag:
        # Checked before streaming starts: once the 200 is out, a database
        # error could only cut the download short.
        raise InvalidText("tag")
    export = await export_service.prepare(
        session, principal.workspace_id, format=format, list_id=list_id, status=status, tag=tag
    )
    media = "text/csv" if format == "csv" else "application/x-ndjson"
    return StreamingResponse(
        export_service.stream(export),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="contacts.{format}"'},
    )
