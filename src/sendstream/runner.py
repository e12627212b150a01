"""Process roles: `sendstream up` (everything in one process), `sendstream
server` (HTTP only) and one `sendstream worker` process (jobs and the
delivery loop)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from rich.console import Console

from sendstream.app import create_app
from sendstream.core import migrate
from sendstream.core.db import create_database, get_database, install_database
from sendstream.core.jobs.worker import run_worker
from sendstream.core.logging import configure_logging, get_logger
from sendstream.core.metrics import REGISTRY
from sendstream.core.settings import get_settings
from sendstream.delivery.worker import run_delivery
from sendstream.webhooks.worker import run_webhooks
from sendstream.workspaces.service import api_key_service, workspace_service

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
        stopper = asyncio.create_task(stop.wait(), name="stop")
        await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        # Whatever ended first (a signal, or a role that failed), the others
        # shut down gracefully: HTTP drains, the worker releases its jobs.
        stop.set()
        server.should_exit = True
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
    stopper = asyncio.create_task(stop.wait(), name="stop")
    await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    # Whichever ended first (a signal, or a loop that failed), both stop.
    stop.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    stopper.cancel()
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result
