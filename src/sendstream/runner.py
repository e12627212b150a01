"""Process roles: `sendstream up` (everything in one process), `sendstream
server` (HTTP only), one `sendstream worker` process (jobs and the
delivery loop) and `sendstream smtp` (the inbound MX and the submission
relay)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import uvicorn
from rich.console import Console

from sendstream.app import create_app
from sendstream.bounces.imap_runner import run_imap
from sendstream.core import migrate
from sendstream.core.db import Database, create_database, get_database, install_database
from sendstream.core.jobs.worker import run_worker
from sendstream.core.logging import configure_logging, get_logger
from sendstream.core.metrics import REGISTRY
from sendstream.core.settings import Settings, get_settings
from sendstream.delivery.worker import run_delivery
from sendstream.webhooks.worker import run_webhooks
from sendstream.workspaces.service import api_key_service, workspace_service

if TYPE_CHECKING:
    from sendstream.delivery.submission import SubmissionServer

log = get_logger("sendstream.up")
console = Console(stderr=True, highlight=False)

DEFAULT_WORKSPACE_SLUG = "default"


@dataclass
class Bootstrap:
    workspace_slug: str
    api_key: str | None


async def bootstrap_first_workspace() -> Bootstrap:
    """On an empty database, create the `default` workspace and an admin key.

    The key is printed once and only its hash is kept; on later starts the
    operator makes another with `sendstream keys create`."""
    async with get_database().session() as session:
        if await workspace_service.count_workspaces(session) > 0:
            return Bootstrap(DEFAULT_WORKSPACE_SLUG, None)
        workspace = await workspace_service.create_workspace(
            session, name="Default", slug=DEFAULT_WORKSPACE_SLUG
        )
        _, key = await api_key_service.create_key(
            session, workspace.id, name="first key (sendstream up)", scopes=["admin"]
        )
    return Bootstrap(workspace.slug, key)


def _print_banner(base: str, boot: Bootstrap, database: str) -> None:
    console.print()
    console.print("[bold green]Sendstream is running[/bold green]")
    console.print(f"  API       {base}/v1")
    console.print(f"  Docs      {base}/v1/docs")
    console.print(f"  Ready     {base}/readyz")
    console.print(f"  Database  {database}")
    if boot.api_key:
        console.print(f"  API key   [bold]{boot.api_key}[/bold]  (admin, workspace 'default')")
        console.print("            shown once: only its hash is stored. Save it now.")
        console.print(
            f'  Try       curl -H "Authorization: Bearer {boot.api_key}" {base}/v1/workspace'
        )
    else:
        console.print(
            "  API key   create one with: sendstream keys create --workspace default --name me"
        )
    console.print("  Stop      Ctrl-C")
    console.print()


def _settle_heap() -> None:
    """Move everything imported so far out of the garbage collector's sight
    and let it run less often: a 1,000-contact batch request allocates tens
    of thousands of short-lived objects, and with the default thresholds
    about a quarter of the server's CPU went to collections that walk the
    (immortal) modules, app and settings again and again."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


async def _serve(*, all_in_one: bool, host: str, port: int) -> None:
    settings = get_settings()
    configure_logging()
    db = create_database(settings)
    install_database(db)
    try:
        boot = Bootstrap(DEFAULT_WORKSPACE_SLUG, None)
        if all_in_one:
            # A newcomer's single process migrates itself; in a scaled-out
            # deployment `sendstream db upgrade` is a deliberate release step
            # and /readyz stays 503 until it has run.
            await asyncio.to_thread(migrate.upgrade, db.url)
            boot = await bootstrap_first_workspace()
        config = uvicorn.Config(
            create_app(manage_database=False),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
        server = _Server(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        _settle_heap()
        tasks = [asyncio.create_task(server.serve(), name="http")]
        if all_in_one:
            tasks.append(
                asyncio.create_task(
                    run_worker(imports=["sendstream.tasks"], stop=stop), name="worker"
                )
            )
            if settings.delivery.delivery_loop:
                tasks.append(
                    asyncio.create_task(run_delivery(database=db, stop=stop), name="delivery")
                )
            if settings.webhooks.delivery_loop:
                tasks.append(
                    asyncio.create_task(run_webhooks(database=db, stop=stop), name="webhooks")
                )
            if settings.bounces.imap_enabled:
                tasks.append(asyncio.create_task(run_imap(database=db, stop=stop), name="imap"))
        # uvicorn exposes readiness only as a flag.
        while not server.started and not tasks[0].done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if server.started:
            where = (
                f"PostgreSQL at {db.url.host}:{db.url.port}/{db.url.database}"
                if settings.database_url
                else f"embedded PostgreSQL in {settings.embedded.data_dir / 'pg'}"
            )
            _print_banner(f"http://{host}:{port}", boot, where)
        listeners = await _start_smtp_in_up(settings, db) if all_in_one else []
        stopper = asyncio.create_task(stop.wait(), name="stop")
        await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        # Whatever ended first (a signal, or a role that failed), the others
        # shut down gracefully: HTTP drains, the worker releases its jobs.
        stop.set()
        server.should_exit = True
        for listener in reversed(listeners):
            await listener.stop()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        stopper.cancel()
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result
    finally:
        await db.dispose()
        install_database(None)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: this process owns SIGINT and
    SIGTERM so the worker beside the server also stops gracefully, and the
    process exits 0 instead of re-raising the signal."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def up(host: str | None = None, port: int | None = None) -> None:
    api = get_settings().api
    asyncio.run(_serve(all_in_one=True, host=host or api.host, port=port or api.port))


def server(host: str | None = None, port: int | None = None) -> None:
    api = get_settings().api
    asyncio.run(_serve(all_in_one=False, host=host or api.host, port=port or api.port))


def worker_process(*, concurrency: int | None = None, metrics_port: int | None = None) -> None:
    """One `sendstream worker` process until SIGTERM/SIGINT: the job runner
    and (unless `delivery.delivery_loop` is off) the delivery loop, stopping
    together. Task modules must be imported already."""
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, registry=REGISTRY)
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop ships with the server extras
        factory = None
    with asyncio.Runner(loop_factory=factory) as loop_runner:
        loop_runner.run(_work(concurrency))


async def _work(concurrency: int | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(run_worker(concurrency=concurrency, stop=stop), name="jobs")]
    if get_settings().delivery.delivery_loop:
        tasks.append(asyncio.create_task(run_delivery(stop=stop), name="delivery"))
    if get_settings().webhooks.delivery_loop:
        tasks.append(asyncio.create_task(run_webhooks(stop=stop), name="webhooks"))
    if get_settings().bounces.imap_enabled:
        tasks.append(asyncio.create_task(run_imap(stop=stop), name="imap"))
    stopper = asyncio.create_task(stop.wait(), name="stop")
    await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    # Whichever ended first (a signal, or a loop that failed), both stop.
    stop.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    stopper.cancel()
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result


class _Listener(Protocol):
    async def stop(self) -> None: ...


async def _start_smtp_in_up(settings: Settings, db: Database) -> list[_Listener]:
    """`sendstream up` receives bounces (`smtp.mx_enabled`) and relays mail
    from applications (`smtp.submission_enabled`) too. A port already taken
    (another Sendstream, a local MTA) is reported and the rest runs on: SMTP
    is one part of the all-in-one process, not its purpose."""
    from sendstream.bounces.mx import MxServer
    from sendstream.delivery.submission import SubmissionServer

    started: list[_Listener] = []
    if settings.smtp.mx_enabled:
        mx = MxServer(settings, database=db)
        try:
            await mx.start()
        except OSError as exc:
            log.warning("up.mx_not_started", port=settings.smtp.mx_port, error=str(exc))
            console.print(f"  MX        not started ({exc}); see smtp.mx_port")
        else:
            console.print(
                f"  MX        smtp://{mx.host}:{mx.port} "
                f"(bounces for {settings.delivery.bounce_domain})"
            )
            started.append(mx)
    if settings.smtp.submission_enabled:
        relay = SubmissionServer(settings, database=db)
        try:
            await relay.start()
        except (OSError, ValueError) as exc:
            log.warning("up.relay_not_started", error=str(exc))
            console.print(f"  relay     not started ({exc}); see smtp.submission_port")
        else:
            console.print(f"  relay     {_relay_ports(relay)} (docs/smtp-relay.md)")
            started.append(relay)
    return started


def _relay_ports(relay: SubmissionServer) -> str:
    ports = [f"smtp://{relay.smtp.submission_host}:{relay.port} (STARTTLS)"] if relay.port else []
    if relay.tls_port:
        ports.append(f"smtps://{relay.smtp.submission_host}:{relay.tls_port}")
    return ", ".join(ports) or "no port configured"


def smtp_process(*, mx_port: int | None = None, submission_port: int | None = None) -> None:
    """One `sendstream smtp` process until SIGTERM/SIGINT: the inbound MX
    (`smtp.mx_enabled`) and the submission relay (`smtp.submission_enabled`).
    What the MX accepts is processed by `sendstream worker` processes (the
    `bounces.process` job); what the relay accepts is queued messages."""
    asyncio.run(_smtp(mx_port, submission_port))


async def _smtp(mx_port: int | None, submission_port: int | None) -> None:
    settings = get_settings()
    if submission_port is not None:
        smtp = settings.smtp.model_copy(update={"submission_port": submission_port})
        settings = settings.model_copy(update={"smtp": smtp})
    configure_logging()
    db = create_database(settings)
    install_database(db)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    listeners: list[_Listener] = []
    try:
        if settings.smtp.mx_enabled:
            from sendstream.bounces.mx import MxServer

            mx = MxServer(settings, database=db, port=mx_port)
            await mx.start()
            listeners.append(mx)
            console.print(
                f"Sendstream MX on smtp://{mx.host}:{mx.port} "
                f"(bounces for {settings.delivery.bounce_domain})"
            )
        if settings.smtp.submission_enabled:
            from sendstream.delivery.submission import SubmissionServer

            relay = SubmissionServer(settings, database=db)
            await relay.start()
            listeners.append(relay)
            console.print(f"Sendstream submission relay on {_relay_ports(relay)}")
        if not listeners:
            console.print("nothing to run: smtp.mx_enabled and smtp.submission_enabled are off")
            raise SystemExit(1)
        # As the HTTP server does: the relay allocates thousands of objects a
        # message (parse, checks, the group transaction), and default-threshold
        # collections took about a sixth of its CPU (bench/smtp_relay.py).
        _settle_heap()
        await stop.wait()
    finally:
        for listener in reversed(listeners):
            await listener.stop()
        await db.dispose()
        install_database(None)
