"""`sendstream workspaces ...` and `sendstream keys ...`: operator commands.

Creating workspaces is an operator action, so it lives here and not in the
API. Every mutation writes an audit entry (actor_type "cli", actor the OS
user) in the same transaction as the change."""

from __future__ import annotations

import getpass
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.cli import console, err_console, print_json, run_async
from sendstream.core.db import get_database
from sendstream.models.api_key import ApiKey
from sendstream.models.workspace import Workspace
from sendstream.workspaces.schemas import ApiKeyRead, WorkspaceRead
from sendstream.workspaces.service import (
    api_key_service,
    audit_service,
    user_service,
    utcnow,
    workspace_service,
)

workspaces_app = typer.Typer(help="Workspaces (tenants) and their users.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
WorkspaceOption = Annotated[
    str, typer.Option("--workspace", "-w", help="The workspace's slug.", show_default=False)
]

_SHOWN_ONCE = "Store this key now: it is shown once and cannot be recovered."


def _operator() -> str:
    try:
        return getpass.getuser()[:64]
    except (KeyError, OSError):  # no passwd entry, e.g. an arbitrary container uid
        return "unknown"


def _audit(
    session: AsyncSession, workspace: Workspace, action: str, target: str, **details: Any
) -> None:
    audit_service.record(
        session,
        workspace.id,
        actor_type="cli",
        actor_id=_operator(),
        action=f"cli: {action}",
        target=target,
        details=details,
    )


def _key_json(key: ApiKey) -> dict[str, Any]:
    return ApiKeyRead.model_validate(key).model_dump(mode="json")


@workspaces_app.command("create")
def create_workspace(
    name: Annotated[str, typer.Argument(help="Display name.")],
    slug: Annotated[
        str | None, typer.Option(help="URL-safe handle; derived from NAME when omitted.")
    ] = None,
    owner_email: Annotated[
        str | None, typer.Option("--owner-email", help="Create this user as the owner.")
    ] = None,
    with_key: Annotated[
        bool, typer.Option("--with-key", help="Also create an admin API key (shown once).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a workspace (tenant)."""

    async def body() -> dict[str, Any]:
        async with get_database().session() as session:
            workspace = await workspace_service.create_workspace(session, name, slug)
            result: dict[str, Any] = {
                "workspace": WorkspaceRead.model_validate(workspace).model_dump(mode="json")
            }
            if owner_email:
                owner = await user_service.create_user(
                    session, workspace.id, email=owner_email, role="owner"
                )
                result["owner"] = {"id": str(owner.id), "email": owner.email}
            if with_key:
                key, secret = await api_key_service.create_key(
                    session, workspace.id, "admin key (cli)", ["admin"]
                )
                result["api_key"] = {**_key_json(key), "key": secret}
            _audit(session, workspace, "workspaces create", f"workspace {workspace.slug}")
        return result

    result = run_async(body)
    if as_json:
        print_json(result)
        return
    ws = result["workspace"]
    console.print(f"created workspace [bold]{ws['slug']}[/bold] ({ws['name']}), id {ws['id']}")
    if "owner" in result:
        console.print(f"owner: {result['owner']['email']}")
    if "api_key" in result:
        console.print(f"admin API key: [bold]{result['api_key']['key']}[/bold]")
        err_console.print(f"[yellow]{_SHOWN_ONCE}[/yellow]")


@workspaces_app.command("list")
def list_workspaces(as_json: JsonOption = False) -> None:
    """List every workspace."""

    async def body() -> list[dict[str, Any]]:
        async with get_database().session() as session:
            rows = await workspace_service.list_workspaces(session)
            return [WorkspaceRead.model_validate(w).model_dump(mode="json") for w in rows]

    rows = run_async(body)
    if as_json:
        print_json(rows)
        return
    table = Table("slug", "name", "id", "created")
    for w in rows:
        table.add_row(w["slug"], w["name"], w["id"], w["created_at"])
    console.print(table)


@keys_app.command("create")
def create_key(
    workspace: WorkspaceOption,
    name: Annotated[str, typer.Option("--name", "-n", help="What the key is for.")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", "-s", help="A scope; repeat for several. Default: admin."),
    ] = None,
    expires_in_days: Annotated[
        int | None, typer.Option("--expires-in-days", min=1, help="Expire after D days.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API key; the full key is printed once."""

    async def body() -> dict[str, Any]:
        async with get_database().session() as session:
            ws = await workspace_service.get_workspace_by_slug(session, workspace)
            expires = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
            key, secret = await api_key_service.create_key(
                session, ws.id, name, scope or ["admin"], expires
            )
            _audit(session, ws, "keys create", f"api key {key.prefix}", scopes=key.scopes)
            return {**_key_json(key), "key": secret}

    created = run_async(body)
    err_console.print(f"[yellow]{_SHOWN_ONCE}[/yellow]")
    if as_json:
        print_json(created)
        return
    console.print(
        f"created key {created['prefix']} ({', '.join(created['scopes'])}) in {workspace}"
    )
    console.print(f"[bold]{created['key']}[/bold]", soft_wrap=True)


@keys_app.command("list")
def list_keys(workspace: WorkspaceOption, as_json: JsonOption = False) -> None:
    """List a workspace's API keys (prefixes only; secrets are never stored)."""

    async def body() -> list[dict[str, Any]]:
        async with get_database().session() as session:
            ws = await workspace_service.get_workspace_by_slug(session, workspace)
            return [_key_json(k) for k in await api_key_service.list_all_keys(session, ws.id)]

    rows = run_async(body)
    if as_json:
        print_json(rows)
        return
    table = Table()
    table.add_column("prefix", no_wrap=True)
    for title in ("name", "scopes", "status", "last used"):
        table.add_column(title)
    table.add_column("id", no_wrap=True)
    for k in rows:
        status = (
            "revoked"
            if k["revoked_at"]
            else (f"expires {k['expires_at']}" if k["expires_at"] else "active")
        )
        table.add_row(
            k["prefix"],
            k["name"],
            ", ".join(k["scopes"]),
            status,
            k["last_used_at"] or "-",
            k["id"],
        )
    console.print(table)


@keys_app.command("revoke")
def revoke_key(
    key: Annotated[str, typer.Argument(help="The key's prefix (ss_...) or id.")],
    workspace: WorkspaceOption,
    as_json: JsonOption = False,
) -> None:
    """Revoke an API key at once."""

    async def body() -> dict[str, Any]:
        async with get_database().session() as session:
            ws = await workspace_service.get_workspace_by_slug(session, workspace)
            found = await api_key_service.find_key(session, ws.id, key)
            revoked = await api_key_service.revoke_key(session, ws.id, found.id)
            _audit(session, ws, "keys revoke", f"api key {revoked.prefix}")
            return _key_json(revoked)

    revoked = run_async(body)
    if as_json:
        print_json(revoked)
        return
    console.print(f"revoked key {revoked['prefix']} in {workspace}")
