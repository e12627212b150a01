"""The MX on loopback for tests: started on the test's event loop with a
free port and per-test `smtp` settings, stopped at teardown; and waits on
what processing left in the database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from sendstream.bounces import tasks  # noqa: F401  (registers bounces.process)
from sendstream.bounces.mx import MxServer
from sendstream.core.db import Database
from sendstream.core.settings import Settings
from tests.bounces.action_support import scalar
from tests.fixtures.job_worker import eventually

StartMx = Callable[..., Awaitable[MxServer]]


def smtp_settings(settings: Settings, **smtp: Any) -> Settings:
    return settings.model_copy(
        update={"smtp": settings.smtp.model_copy(update={"mx_port": 0, **smtp})}, deep=True
    )


@pytest.fixture
async def start_mx(settings: Settings, db: Database) -> AsyncIterator[StartMx]:
    """`await start_mx(mx_max_connections=1, ...)`: an MX with those `smtp`
    settings (and, given `database=`, another database)."""
    running: list[MxServer] = []

    async def start(database: Database | None = None, **smtp: Any) -> MxServer:
        server = MxServer(smtp_settings(settings, **smtp), database=database or db)
        await server.start()
        running.append(server)
        return server

    yield start
    for server in running:
        await server.stop()


async def wait_processed(db: Database, count: int = 1, *, within: float = 60.0) -> None:
    """Until `count` inbound mails are no longer `received`."""

    async def done() -> bool:
        finished = await scalar(
            db, "SELECT count(*) FROM inbound_messages WHERE status <> 'received'"
        )
        return int(finished or 0) >= count

    await eventually(done, within=within)
