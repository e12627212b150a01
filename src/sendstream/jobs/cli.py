"""`sendstream worker` and `sendstream jobs ...`."""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Awaitable
from typing import Annotated, Any

import typer
from rich.table import Table

from sendstream.core.cli import console, err_console, print_json, run_async
from sendstream.core.db import get_database
from sendstream.core.jobs.supervisor import run_worker_process, supervise, worker_command
from sendstream.core.jobs.worker import import_task_modules
from sendstream.core.logging import configure_logging
from sendstream.core.pagination import PageParams
from sendstream.core.settings import get_settings
from sendstream.jobs.schemas import JobRead
from sendstream.jobs.service import job_service
from sendstream.workspaces.service import workspace_service

jobs_app = typer.Typer(help="Background jobs: list, show, retry, cancel.", no_args_is_help=True)


class StateChoice(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    dead = "dead"
    cancelled = "cancelled"


JobStateOption = Annotated[
    StateChoice | None, typer.Option("--state", "-s", help="Only jobs in this state.")
]


def worker(
    processes: int = typer.Option(1, "--processes", "-p", min=1, help="Worker processes to run."),
    concurrency: int | None = typer.Option(
        None, "--concurrency", "-c", min=1, help="Jobs run at once per process."
    ),
    imports: list[str] = typer.Option(  # noqa: B008  typer's way of declaring options
        [], "--import", "-i", help="Module to import for its job kinds (repeatable)."
    ),
    metrics_port: int | None = typer.Option(
        None,
        "--metrics-port",
        help="Serve Prometheus metrics on this port (process N on port+N).",
    ),
) -> None:
    """Run background jobs until SIGTERM or Ctrl-C."""
    configure_logging()
    if processes > 1:
        argv = worker_command(concurrency=concurrency, imports=imports, metrics_port=metrics_port)
        code = supervise(processes, argv, grace=get_settings().jobs.shutdown_grace_seconds)
        raise typer.Exit(code)
    import_task_modules(["sendstream.tasks", *imports])
    run_worker_process(concurrency=concurrency, metrics_port=metrics_port)


def _workspace_scope(slug: str | None) -> Awaitable[uuid.UUID | None]:
    async def resolve() -> uuid.UUID | None:
        if slug is None:
            return None
        async with get_database().session() as session:
            workspace = await workspace_service.get_workspace_by_slug(session, slug)
        return workspace.id

    return resolve()


def _row(job: JobRead) -> dict[str, Any]:
    return job.model_dump(mode="json")


@jobs_app.command("list")
def list_jobs(
    state: JobStateOption = None,
    kind: str | None = typer.Option(None, "--kind", "-k", help="Only jobs of this kind."),
    workspace: str | None = typer.Option(
        None, "--workspace", "-w", help="Only this workspace's jobs (slug)."
    ),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List jobs, newest first (every workspace and system jobs unless --workspace)."""

    async def body() -> list[JobRead]:
        workspace_id = await _workspace_scope(workspace)
        async with get_database().session() as session:
            jobs, _ = await job_service.list_jobs(
                session,
                workspace_id,
                PageParams(limit, None),
                state=state.value if state else None,
                kind=kind,
            )
            return [JobRead.model_validate(j) for j in jobs]

    jobs = run_async(body)
    if as_json:
        print_json([_row(j) for j in jobs])
        return
    table = Table("id", "kind", "state", "attempts", "run at", "finished", "last error")
    for j in jobs:
        table.add_row(
            str(j.id),
            j.kind,
            j.state,
            f"{j.attempts}/{j.max_attempts}",
            j.run_at.strftime("%Y-%m-%d %H:%M:%S"),
            j.finished_at.strftime("%Y-%m-%d %H:%M:%S") if j.finished_at else "",
            (j.last_error or "").splitlines()[0][:60] if j.last_error else "",
        )
    console.print(table)


@jobs_app.command("show")
def show_job(
    job_id: int = typer.Argument(..., min=1),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one job, with its last error in full."""

    async def body() -> JobRead:
        async with get_database().session() as session:
            return JobRead.model_validate(await job_service.get_job(session, None, job_id))

    job = run_async(body)
    if as_json:
        print_json(_row(job))
        return
    table = Table(show_header=False, box=None)
    for key, value in _row(job).items():
        if key != "last_error":
            table.add_row(
                f"[bold]{key}[/bold]", json.dumps(value) if key == "payload" else str(value)
            )
    console.print(table)
    if job.last_error:
        console.print("[bold]last_error[/bold]")
        console.print(job.last_error, markup=False, highlight=False)


@jobs_app.command("retry")
def retry_jobs(
    job_id: int | None = typer.Argument(None, min=1, help="The job to retry."),
    dead: bool = typer.Option(False, "--dead", help="Retry every dead job instead."),
    kind: str | None = typer.Option(None, "--kind", "-k", help="With --dead: only this kind."),
    workspace: str | None = typer.Option(
        None, "--workspace", "-w", help="With --dead: only this workspace (slug)."
    ),
) -> None:
    """Queue a dead or cancelled job again, or every dead job with --dead."""
    if dead == (job_id is not None):
        err_console.print("[red]error[/red]: give either a job id or --dead")
        raise typer.Exit(2)

    if job_id is not None:

        async def one() -> JobRead:
            async with get_database().session() as session:
                return JobRead.model_validate(await job_service.retry_job(session, None, job_id))

        job = run_async(one)
        console.print(f"job {job.id} ({job.kind}) queued, due {job.run_at:%Y-%m-%d %H:%M:%S}")
        return

    async def many() -> int:
        workspace_id = await _workspace_scope(workspace)
        async with get_database().session() as session:
            return await job_service.retry_dead_jobs(session, workspace_id, kind=kind)

    count = run_async(many)
    console.print(f"{count} dead job{'s' if count != 1 else ''} queued again")


@jobs_app.command("cancel")
def cancel_job(job_id: int = typer.Argument(..., min=1)) -> None:
    """Cancel a queued job, or stop a running one at its next heartbeat."""

    async def body() -> JobRead:
        async with get_database().session() as session:
            return JobRead.model_validate(await job_service.cancel_job(session, None, job_id))

    job = run_async(body)
    console.print(f"job {job.id} ({job.kind}) cancelled")
