"""`sendstream contacts ...`: import and export from the command line.

`contacts import` runs the import in this process (the same service code
the `contacts.import` job runs, without the queue) over the local file,
with a progress bar; the database keeps the import row, its counters and
its error report like any other import. No job watches it: if the process
dies, `--resume IMPORT_ID` continues it (see `imports_resume`)."""

from __future__ import annotations

import enum
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from sendstream.contacts.exports import export_service
from sendstream.contacts.imports import import_service, parse_mapping, summary
from sendstream.contacts.imports_resume import resume_cli_import, start_cli_import
from sendstream.core.cli import console, err_console, run_async, write_chunks
from sendstream.core.db import get_database
from sendstream.core.errors import InvalidInput
from sendstream.models.contact_import import ContactImport
from sendstream.workspaces.service import workspace_service

contacts_app = typer.Typer(help="Contacts: import, export, GDPR.", no_args_is_help=True)


class ModeChoice(enum.StrEnum):
    upsert = "upsert"
    create_only = "create_only"
    update_only = "update_only"


class EventsChoice(enum.StrEnum):
    summary = "summary"
    each = "each"


class FormatChoice(enum.StrEnum):
    csv = "csv"
    jsonl = "jsonl"


async def workspace_id_for(slug: str | None) -> uuid.UUID:
    """The workspace named by slug, or the only one there is."""
    async with get_database().session() as session:
        if slug is not None:
            return (await workspace_service.get_workspace_by_slug(session, slug)).id
        workspaces = list(await workspace_service.list_workspaces(session))
    if len(workspaces) != 1:
        raise InvalidInput(
            f"there are {len(workspaces)} workspaces; name one with --workspace SLUG",
            code="workspace_required",
        )
    return workspaces[0].id


def _counts(contact_import: ContactImport) -> dict[str, Any]:
    return {
        "id": str(contact_import.id),
        "status": contact_import.status,
        "file": summary(contact_import),
        "rows": contact_import.rows_done,
        "created": contact_import.created,
        "updated": contact_import.updated,
        "unchanged": contact_import.unchanged,
        "skipped": contact_import.skipped,
        "rejected": contact_import.rejected,
        "subscribed": contact_import.subscribed,
        "error": contact_import.error,
    }


@contacts_app.command("import")
def import_contacts(
    file: Path = typer.Argument(  # noqa: B008  typer's way of declaring arguments
        ..., exists=True, dir_okay=False, readable=True, help="CSV or JSON lines (.gz too)."
    ),
    workspace: str | None = typer.Option(
        None, "--workspace", "-w", help="Workspace slug (optional when there is only one)."
    ),
    list_ref: str | None = typer.Option(
        None, "--list", "-l", help="Subscribe the imported contacts to this list (id or name)."
    ),
    mapping: list[str] = typer.Option(  # noqa: B008
        [], "--map", "-m", help="column=field (repeatable); column=- ignores the column."
    ),
    mode: ModeChoice | None = typer.Option(  # noqa: B008
        None, "--mode", help="What to do per row: upsert (default), create_only, update_only."
    ),
    events: EventsChoice | None = typer.Option(  # noqa: B008
        None,
        "--events",
        help="summary (default): one contact_import.completed event for the contacts created; "
        "each: also one contact.created per contact.",
    ),
    format: FormatChoice | None = typer.Option(  # noqa: B008
        None, "--format", help="Force csv or jsonl instead of guessing."
    ),
    consent_text: str | None = typer.Option(
        None, "--consent-text", help="The words the people agreed to (consent records)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the final counts as JSON."),
    resume: uuid.UUID | None = typer.Option(  # noqa: B008
        None,
        "--resume",
        metavar="IMPORT_ID",
        help="Continue this import (one whose process died, shown as stalled) after its last "
        "committed row; FILE must be the file it started with.",
    ),
) -> None:
    """Import contacts from FILE, with a progress bar (rows, rate, ETA)."""
    given: dict[str, Any] = {
        name: value
        for name, value in (
            ("--mode", mode.value if mode else None),
            ("--events", events.value if events else None),
            ("--format", format.value if format else None),
            ("--list", list_ref),
            ("--map", parse_mapping(mapping) if mapping else None),
            ("--consent-text", consent_text),
        )
        if value is not None
    }

    async def body() -> ContactImport:
        workspace_id = await workspace_id_for(workspace)
        database = get_database()
        with file.open("rb") as source:
            async with database.session() as session:
                if resume is not None:
                    started = await resume_cli_import(
                        session, workspace_id, resume, source, given=given
                    )
                else:
                    started = await start_cli_import(
                        session,
                        workspace_id,
                        source=source,
                        filename=file.name,
                        format=format.value if format else None,
                        mode=mode.value if mode else "upsert",
                        events=events.value if events else "summary",
                        list_ref=list_ref,
                        mapping=parse_mapping(mapping),
                        consent_text=consent_text,
                    )
            err_console.print(
                f"import {started.id}: if this process stops before it completes, continue "
                f"it with `sendstream contacts import {file} --resume {started.id}`",
                highlight=False,
                soft_wrap=True,
            )
            columns = (
                TextColumn("[bold]import[/bold]"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[rate]} rows/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
            )
            with Progress(*columns, console=err_console, disable=as_json) as bar:
                task = bar.add_task(
                    "import",
                    total=started.rows_total or None,
                    completed=started.rows_done,
                    rate="-",
                )

                def progress(current: ContactImport) -> None:
                    speed = bar.tasks[0].speed
                    bar.update(
                        task,
                        completed=current.rows_done,
                        total=current.rows_total or None,
                        rate=f"{speed:,.0f}" if speed else "-",
                    )

                async with database.session() as session:
                    finished = await import_service.run_import(
                        session, started.id, source, commit=session.commit, progress=progress
                    )
        return finished or started

    result = run_async(body)
    counts = _counts(result)
    if as_json:
        sys.stdout.write(json.dumps(counts) + "\n")
    else:
        console.print(
            f"{result.status}: {result.rows_done:,} rows ({counts['file']}): "
            f"{result.created:,} created, {result.updated:,} updated, "
            f"{result.unchanged:,} unchanged, {result.skipped:,} skipped, "
            f"{result.rejected:,} rejected, {result.subscribed:,} subscribed"
        )
        if result.rejected:
            console.print(
                f"error report: GET /v1/contacts/imports/{result.id}/errors "
                f"(or `sendstream contacts import-errors {result.id}`)"
            )
    if result.status == "failed":
        err_console.print(f"[red]error[/red] (import_failed): {result.error}")
        raise typer.Exit(1)


@contacts_app.command("import-errors")
def import_errors(
    import_id: uuid.UUID = typer.Argument(..., help="The import's id."),  # noqa: B008
    workspace: str | None = typer.Option(None, "--workspace", "-w", help="Workspace slug."),
) -> None:
    """Print an import's error report as CSV (row, field, message, value)."""

    async def body() -> None:
        workspace_id = await workspace_id_for(workspace)
        async with get_database().session() as session:
            await import_service.get_import(session, workspace_id, import_id)
        async for data in export_service.stream(export_service.errors_report(import_id)):
            sys.stdout.buffer.write(data)
        sys.stdout.flush()

    run_async(body)


@contacts_app.command("export")
def export_contacts(
    workspace: str | None = typer.Option(None, "--workspace", "-w", help="Workspace slug."),
    list_ref: str | None = typer.Option(
        None, "--list", "-l", help="Only subscribed members of this list (id or name)."
    ),
    status: str | None = typer.Option(None, "--status", help="Only this global status."),
    tag: str | None = typer.Option(None, "--tag", help="Only contacts with this tag."),
    format: FormatChoice = typer.Option(FormatChoice.csv, "--format", help="csv or jsonl."),  # noqa: B008
    output: Path | None = typer.Option(  # noqa: B008
        None, "--output", "-o", help="Write here instead of standard output."
    ),
) -> None:
    """Export contacts as CSV (custom fields as columns) or JSON lines, streamed."""

    async def body() -> int:
        workspace_id = await workspace_id_for(workspace)
        async with get_database().session() as session:
            export = await export_service.prepare(
                session,
                workspace_id,
                format=format.value,
                list_id=list_ref,
                status=status,
                tag=tag,
            )
        return await write_chunks(export_service.stream(export), output)

    written = run_async(body)
    if output:
        err_console.print(f"wrote {written:,} bytes to {output}")
