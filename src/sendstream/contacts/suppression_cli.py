"""`sendstream suppressions list | add | remove | export`: the suppression
list from the command line, with the API's rules (`suppression_service`).
An argument with an `@` inside is an address; `example.com` or
`@example.com` is a whole domain. Every change writes an audit entry
(actor_type "cli", actor the OS user), as the workspace commands do."""

from __future__ import annotations

import enum
import getpass
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.contacts.cli import workspace_id_for
from sendstream.contacts.exports import export_service
from sendstream.contacts.suppression_router import SuppressionRead
from sendstream.contacts.suppression_service import (
    Target,
    address_target,
    domain_target,
    suppression_service,
)
from sendstream.core.cli import console, err_console, print_json, run_async, write_chunks
from sendstream.core.db import get_database
from sendstream.core.errors import SendstreamError
from sendstream.core.pagination import PageParams
from sendstream.workspaces.service import audit_service

suppressions_app = typer.Typer(
    help="The suppression list: addresses and domains never mailed.", no_args_is_help=True
)


class ReasonChoice(enum.StrEnum):
    unsubscribed = "unsubscribed"
    bounced = "bounced"
    complained = "complained"
    manual = "manual"
    erased = "erased"


class AddReasonChoice(enum.StrEnum):
    unsubscribed = "unsubscribed"
    bounced = "bounced"
    complained = "complained"
    manual = "manual"


WorkspaceOption = Annotated[
    str | None,
    typer.Option("--workspace", "-w", help="Workspace slug (optional when there is only one)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Entries = Annotated[
    list[str],
    typer.Argument(help="Addresses (ann@example.com) or domains (example.com, @example.com)."),
]


def _target(text: str) -> Target:
    local, at, _ = text.strip().partition("@")
    return address_target(text) if at and local else domain_target(text)


def _operator() -> str:
    try:
        return getpass.getuser()[:64]
    except (KeyError, OSError):  # no passwd entry, e.g. an arbitrary container uid
        return "unknown"


def _audit(
    session: AsyncSession, workspace_id: uuid.UUID, action: str, target: str, **details: Any
) -> None:
    audit_service.record(
        session,
        workspace_id,
        actor_type="cli",
        actor_id=_operator(),
        action=f"cli: suppressions {action}",
        target=target,
        details=details,
    )


def _json(entry: Any) -> dict[str, Any]:
    return SuppressionRead.model_validate(entry).model_dump(mode="json")


@suppressions_app.command("list")
def list_suppressions(
    workspace: WorkspaceOption = None,
    reason: Annotated[
        ReasonChoice | None, typer.Option("--reason", help="Only this reason.")
    ] = None,
    search: Annotated[
        str | None, typer.Option("--search", "-s", help="Part of an address or domain.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """List suppressed addresses and domains, newest first."""

    async def body() -> list[dict[str, Any]]:
        workspace_id = await workspace_id_for(workspace)
        rows: list[dict[str, Any]] = []
        cursor: str | None = None
        async with get_database().session() as session:
            while len(rows) < limit:
                page = PageParams(min(limit - len(rows), 500), cursor)
                found, cursor = await suppression_service.list_suppressions(
                    session,
                    workspace_id,
                    page,
                    reason=reason.value if reason else None,
                    search=search,
                )
                rows.extend(_json(e) for e in found)
                if cursor is None:
                    break
        return rows

    rows = run_async(body)
    if as_json:
        print_json(rows)
        return
    table = Table("address or domain", "reason", "source", "since", "note")
    for row in rows:
        shown = row["address"] or (f"@{row['domain']}" if row["domain"] else "(erased)")
        table.add_row(shown, row["reason"], row["source"], row["created_at"], row["note"] or "")
    console.print(table)


@suppressions_app.command("add")
def add_suppressions(
    entries: Entries,
    workspace: WorkspaceOption = None,
    reason: Annotated[
        AddReasonChoice, typer.Option("--reason", help="Why they must not be mailed.")
    ] = AddReasonChoice.manual,
    note: Annotated[str | None, typer.Option("--note", help="A note for the list.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Suppress addresses or whole domains (an entry already there keeps a
    stronger reason)."""
    targets = [_target_or_exit(e) for e in entries]

    async def body() -> list[tuple[dict[str, Any], bool]]:
        workspace_id = await workspace_id_for(workspace)
        results = []
        async with get_database().session() as session:
            for target in targets:
                entry, created = await suppression_service.add_suppression(
                    session, workspace_id, target, reason=reason.value, source="cli", note=note
                )
                _audit(
                    session, workspace_id, "add", target.label, reason=entry.reason, created=created
                )
                results.append((_json(entry), created))
        return results

    results = run_async(body)
    if as_json:
        print_json([{**entry, "created": created} for entry, created in results])
        return
    for entry, created in results:
        shown = entry["address"] or (f"@{entry['domain']}" if entry["domain"] else "(erased)")
        verb = "suppressed" if created else "already suppressed"
        console.print(f"{verb}: {shown} ({entry['reason']})")


@suppressions_app.command("remove")
def remove_suppressions(entries: Entries, workspace: WorkspaceOption = None) -> None:
    """Stop suppressing addresses or domains (never an erased address: only
    an explicit new opt-in lifts that)."""
    targets = [_target_or_exit(e) for e in entries]

    async def body() -> None:
        workspace_id = await workspace_id_for(workspace)
        async with get_database().session() as session:
            for target in targets:
                removed = await suppression_service.remove(session, workspace_id, target)
                _audit(session, workspace_id, "remove", target.label, reason=removed.reason)

    run_async(body)
    for target in targets:
        console.print(f"removed: {target.label}")


@suppressions_app.command("export")
def export_suppressions(
    workspace: WorkspaceOption = None,
    reason: Annotated[
        ReasonChoice | None, typer.Option("--reason", help="Only this reason.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of standard output.")
    ] = None,
) -> None:
    """Export the list as CSV (address, domain, reason, source, note,
    created_at, address_hash), streamed."""

    async def body() -> int:
        workspace_id = await workspace_id_for(workspace)
        export = suppression_service.prepare_export(
            workspace_id, reason=reason.value if reason else None
        )
        return await write_chunks(export_service.stream(export), output)

    written = run_async(body)
    if output:
        err_console.print(f"wrote {written:,} bytes to {output}")


def _target_or_exit(text: str) -> Target:
    """The address or domain, or the error as one line and exit code 1
    before anything is written."""
    try:
        return _target(text)
    except SendstreamError as exc:
        err_console.print(f"[red]error[/red] ({exc.code}): {exc.message}")
        raise typer.Exit(1) from None
