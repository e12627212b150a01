"""`sendstream webhooks list | create | delete | rotate`: webhook endpoints
from the command line, with the API's rules (`endpoint_service`): the same
URL, SSRF and event type checks, the secret printed once. Changes write an
audit entry (actor_type "cli", actor the OS user)."""

from __future__ import annotations

import enum
import getpass
import uuid
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.cli import console, print_json, run_async
from sendstream.core.db import get_database
from sendstream.core.errors import InvalidInput
from sendstream.core.pagination import PageParams
from sendstream.webhooks.endpoint_service import endpoint_service
from sendstream.webhooks.schemas import DEFAULT_OVERLAP_SECONDS, MAX_OVERLAP_SECONDS, WebhookCreate
from sendstream.workspaces.service import audit_service, workspace_service

webhooks_app = typer.Typer(help="Webhook endpoints: where events are POSTed.", no_args_is_help=True)


class SchemeChoice(enum.StrEnum):
    v1 = "v1"
    v1a = "v1a"
    both = "v1,v1a"


WorkspaceOption = Annotated[
    str | None,
    typer.Option("--workspace", "-w", help="Workspace slug (optional when there is only one)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
WebhookIdArgument = Annotated[uuid.UUID, typer.Argument(help="The webhook endpoint's id.")]


async def _workspace_id(slug: str | None) -> uuid.UUID:
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


def _audit(session: AsyncSession, workspace_id: uuid.UUID, action: str, target: str) -> None:
    try:
        operator = getpass.getuser()[:64]
    except (KeyError, OSError):  # no passwd entry, e.g. an arbitrary container uid
        operator = "unknown"
    audit_service.record(
        session,
        workspace_id,
        actor_type="cli",
        actor_id=operator,
        action=f"cli: webhooks {action}",
        target=target,
    )


@webhooks_app.command("list")
def list_webhooks(workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """List the workspace's endpoints, oldest first."""

    async def body() -> list[dict[str, Any]]:
        workspace_id = await _workspace_id(workspace)
        rows: list[dict[str, Any]] = []
        cursor: str | None = None
        async with get_database().session() as session:
            while True:
                found, cursor = await endpoint_service.list_endpoints(
                    session, workspace_id, PageParams(500, cursor)
                )
                rows.extend(endpoint_service.describe(e).model_dump(mode="json") for e in found)
                if cursor is None:
                    return rows

    rows = run_async(body)
    if as_json:
        print_json(rows)
        return
    table = Table("id", "url", "event types", "enabled", "disabled reason")
    for row in rows:
        table.add_row(
            row["id"],
            row["url"],
            ", ".join(row["event_types"]),
            "yes" if row["enabled"] else "no",
            row["disabled_reason"] or "",
        )
    console.print(table)


@webhooks_app.command("create")
def create_webhook(
    url: Annotated[str, typer.Argument(help="https:// URL that receives the events.")],
    event_types: Annotated[
        list[str],
        typer.Option(
            "--event-type", "-e", help="Event type or pattern (message.*, *); repeatable."
        ),
    ],
    workspace: WorkspaceOption = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    scheme: Annotated[
        SchemeChoice, typer.Option("--signature-scheme", help="v1 (HMAC), v1a (Ed25519) or both.")
    ] = SchemeChoice.v1,
    as_json: JsonOption = False,
) -> None:
    """Create an endpoint and print its signing secret (shown only now)."""

    async def body() -> dict[str, Any]:
        workspace_id = await _workspace_id(workspace)
        async with get_database().session() as session:
            endpoint, secret = await endpoint_service.create_endpoint(
                session,
                workspace_id,
                WebhookCreate(
                    url=url,
                    event_types=event_types,
                    description=description,
                    signature_scheme=scheme.value,
                ),
            )
            _audit(session, workspace_id, "create", str(endpoint.id))
            return {**endpoint_service.describe(endpoint).model_dump(mode="json"), "secret": secret}

    created = run_async(body)
    if as_json:
        print_json(created)
        return
    console.print(f"created webhook {created['id']} -> {created['url']}")
    console.print(f"secret (shown only now): {created['secret']}")
    if created["public_key"]:
        console.print(f"Ed25519 public key: {created['public_key']}")


@webhooks_app.command("delete")
def delete_webhook(webhook_id: WebhookIdArgument, workspace: WorkspaceOption = None) -> None:
    """Delete an endpoint; delivery to it stops."""

    async def body() -> None:
        workspace_id = await _workspace_id(workspace)
        async with get_database().session() as session:
            await endpoint_service.delete_endpoint(session, workspace_id, webhook_id)
            _audit(session, workspace_id, "delete", str(webhook_id))

    run_async(body)
    console.print(f"deleted webhook {webhook_id}")


@webhooks_app.command("rotate")
def rotate_webhook_secret(
    webhook_id: WebhookIdArgument,
    workspace: WorkspaceOption = None,
    overlap_seconds: Annotated[
        int,
        typer.Option(
            "--overlap-seconds",
            min=0,
            max=MAX_OVERLAP_SECONDS,
            help="How long the old secret keeps signing too (0: stop at once).",
        ),
    ] = DEFAULT_OVERLAP_SECONDS,
    as_json: JsonOption = False,
) -> None:
    """Replace the signing secret and print the new one (shown only now)."""

    async def body() -> dict[str, Any]:
        workspace_id = await _workspace_id(workspace)
        async with get_database().session() as session:
            endpoint, secret = await endpoint_service.rotate_secret(
                session, workspace_id, webhook_id, overlap_seconds
            )
            _audit(session, workspace_id, "rotate", str(webhook_id))
            return {**endpoint_service.describe(endpoint).model_dump(mode="json"), "secret": secret}

    rotated = run_async(body)
    if as_json:
        print_json(rotated)
        return
    console.print(f"new secret (shown only now): {rotated['secret']}")
    if rotated["previous_secret_expires_at"]:
        console.print(f"the old secret signs too until {rotated['previous_secret_expires_at']}")
