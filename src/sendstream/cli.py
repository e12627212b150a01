"""The `sendstream` command. Process roles and database verbs live here; each
domain adds its own sub-commands from its `cli.py`."""

from __future__ import annotations

import functools

import typer

from sendstream.bounces.cli import bounces_app
from sendstream.contacts.cli import contacts_app
from sendstream.contacts.suppression_cli import suppressions_app
from sendstream.core import migrate
from sendstream.core.cli import console, err_console
from sendstream.core.db import resolve_database_url
from sendstream.core.jobs.worker import import_task_modules
from sendstream.core.logging import configure_logging
from sendstream.core.secrets_cli import secrets_app
from sendstream.core.settings import get_settings
from sendstream.jobs import cli as jobs_cli
from sendstream.webhooks.cli import webhooks_app
from sendstream.workspaces.cli import keys_app, workspaces_app

app = typer.Typer(
    name="sendstream",
    help="Self-hosted email automation: contacts, sending, tracking, webhooks, journeys.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(workspaces_app, name="workspaces")
app.add_typer(keys_app, name="keys")
app.add_typer(jobs_cli.jobs_app, name="jobs")
app.add_typer(contacts_app, name="contacts")
app.add_typer(suppressions_app, name="suppressions")
app.add_typer(secrets_app, name="secrets")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(bounces_app, name="bounces")


@functools.wraps(jobs_cli.worker)
def worker(
    processes: int, concurrency: int | None, imports: list[str], metrics_port: int | None
) -> None:
    """Run background jobs and the delivery loop until SIGTERM or Ctrl-C."""
    if processes > 1:
        # The children run this command with --processes 1.
        jobs_cli.worker(processes, concurrency, imports, metrics_port)
        return
    from sendstream import runner

    configure_logging()
    import_task_modules(["sendstream.tasks", *imports])
    runner.worker_process(concurrency=concurrency, metrics_port=metrics_port)


worker.__doc__ = "Run background jobs and the delivery loop until SIGTERM or Ctrl-C."
app.command("worker")(worker)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Migrate the database schema forward (to the newest by default)."""
    configure_logging()
    url = resolve_database_url(get_settings())
    migrate.upgrade(url, revision)
    console.print(f"database at {', '.join(sorted(migrate.current_revisions(url)))}")


@db_app.command("downgrade")
def db_downgrade(revision: str = typer.Argument(..., help="Target revision, or -1.")) -> None:
    """Migrate the database schema back to REVISION."""
    configure_logging()
    url = resolve_database_url(get_settings())
    migrate.downgrade(url, revision)
    current = sorted(migrate.current_revisions(url)) or ["base"]
    console.print(f"database at {', '.join(current)}")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision the database is at and the one this build expects."""
    url = resolve_database_url(get_settings())
    current = sorted(migrate.current_revisions(url)) or ["base"]
    heads = sorted(migrate.head_revisions(url))
    console.print(f"database: {', '.join(current)}; this build: {', '.join(heads)}")
    if current != heads:
        err_console.print("run `sendstream db upgrade` to migrate")
        raise typer.Exit(1)


@app.command("up")
def up(
    host: str | None = typer.Option(
        None, help="Listen address (default from settings: 127.0.0.1)."
    ),
    port: int | None = typer.Option(None, help="Listen port (default from settings: 8000)."),
) -> None:
    """Run everything in one process: API, worker, and the embedded PostgreSQL
    when no SENDSTREAM_DATABASE_URL is set. Migrates and creates a first API key."""
    from sendstream import runner

    runner.up(host, port)


@app.command("server")
def server(
    host: str | None = typer.Option(None, help="Listen address (default from settings)."),
    port: int | None = typer.Option(None, help="Listen port (default from settings)."),
) -> None:
    """Run the HTTP API only (scale out by running several behind a load balancer)."""
    from sendstream import runner

    runner.server(host, port)


@app.command("smtp")
def smtp(
    mx_port: int | None = typer.Option(
        None, help="MX listen port (default from settings: smtp.mx_port, 2525)."
    ),
    submission_port: int | None = typer.Option(
        None,
        help="Submission relay STARTTLS port (default from settings: smtp.submission_port, 2587).",
    ),
) -> None:
    """Run the SMTP role: the inbound MX for bounces, complaints and mailto
    unsubscribes (what it accepts is processed by `sendstream worker`), and
    the submission relay for applications that send by SMTP."""
    from sendstream import runner

    runner.smtp_process(mx_port=mx_port, submission_port=submission_port)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
