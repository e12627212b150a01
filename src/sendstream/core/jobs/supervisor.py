"""Worker processes: one worker per process, and a parent that supervises N.

The parent restarts a child that dies (with a pause if it keeps dying at
start, so a broken configuration does not fork in a tight loop) and forwards
SIGTERM/SIGINT so every child stops gracefully: claim nothing more, finish or
give back what runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType

import structlog

from sendstream.core.jobs.worker import Worker
from sendstream.core.metrics import REGISTRY

log = structlog.get_logger("sendstream.jobs")

# A child that exits sooner than this after starting is crash-looping.
CRASH_WINDOW_SECONDS = 5.0
SUPERVISE_INTERVAL = 0.5


def run_worker_process(*, concurrency: int | None = None, metrics_port: int | None = None) -> None:
    """Run one worker in this process until SIGTERM/SIGINT (blocking)."""
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, registry=REGISTRY)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve(concurrency))


async def _serve(concurrency: int | None) -> None:
    worker = Worker(concurrency=concurrency)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    await worker.run()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    # uvloop (installed with uvicorn[standard]) roughly halves the event loop's
    # share of the per-job cost; the stdlib loop works the same, slower.
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with the server extras
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def supervise(processes: int, child_argv: Callable[[int], Sequence[str]], *, grace: float) -> int:
    """Run `processes` children (`child_argv(slot)` is each one's command line)
    until a signal; returns the exit code for the parent."""
    children: dict[int, subprocess.Popen[bytes]] = {}
    started: dict[int, float] = {}
    stopping = False

    def start(slot: int) -> None:
        children[slot] = subprocess.Popen(list(child_argv(slot)))  # noqa: S603  our own argv
        started[slot] = time.monotonic()
        log.info("supervisor.child_started", slot=slot, pid=children[slot].pid)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("supervisor.started", processes=processes)
    for slot in range(processes):
        start(slot)
    while not stopping:
        time.sleep(SUPERVISE_INTERVAL)
        for slot, child in list(children.items()):
            code = child.poll()
            if code is None or stopping:
                continue
            lived = time.monotonic() - started[slot]
            log.warning("supervisor.child_died", slot=slot, pid=child.pid, exit_code=code)
            if lived < CRASH_WINDOW_SECONDS:
                time.sleep(CRASH_WINDOW_SECONDS - lived)
            if not stopping:
                start(slot)
    deadline = time.monotonic() + grace + 10
    exit_code = 0
    for slot, child in children.items():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("supervisor.child_killed", slot=slot, pid=child.pid)
            child.kill()
            child.wait()
            exit_code = 1
    log.info("supervisor.stopped")
    return exit_code


def worker_command(
    *, concurrency: int | None, imports: Sequence[str], metrics_port: int | None
) -> Callable[[int], list[str]]:
    """The command line of child `slot`: the same CLI, one process; metrics on
    consecutive ports from `metrics_port`."""

    def argv(slot: int) -> list[str]:
        cmd = [sys.executable, "-m", "sendstream.cli", "worker", "--processes", "1"]
        if concurrency is not None:
            cmd += ["--concurrency", str(concurrency)]
        for module in imports:
            cmd += ["--import", module]
        if metrics_port is not None:
            cmd += ["--metrics-port", str(metrics_port + slot)]
        return cmd

    return argv
