"""The README's webhook receiver (examples/webhook_receiver.py) run as a
user runs it: it verifies real deliveries with the `standardwebhooks`
library and prints them; a request signed with another secret is refused."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sendstream.core.db import Database
from sendstream.core.settings import Settings
from tests.fixtures.actors import Actor
from tests.fixtures.processes import free_port
from tests.webhooks.delivery_helpers import (
    attempts,
    create_endpoint,
    emit_events,
    installed,
    running,
    settled,
    webhook_settings,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "webhook_receiver.py"


@pytest.fixture
def fast(settings: Settings, http_webhooks: None) -> Iterator[Settings]:
    with installed(webhook_settings(settings)) as value:
        yield value


def start(secret: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-u", str(EXAMPLE), "--secret", secret, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=0.2)
            return proc
        except httpx.HTTPError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    raise RuntimeError(log.read_text())


async def test_the_example_verifies_and_prints_each_event(
    client: httpx.AsyncClient, admin_actor: Actor, db: Database, fast: Settings, tmp_path: Path
) -> None:
    port = free_port()
    endpoint = await create_endpoint(client, admin_actor, f"http://127.0.0.1:{port}/hook")
    log = tmp_path / "receiver.log"
    proc = start(endpoint["secret"], port, log)
    try:
        await emit_events(db, admin_actor.workspace_id, 2, data={"contact_id": "c-9"})
        async with running(fast, db):
            await settled(db, endpoint["id"], 2, "succeeded")
    finally:
        proc.terminate()
        proc.wait(10)
    printed = log.read_text()
    assert printed.count('"type": "contact.updated"') == 2
    assert '"contact_id": "c-9"' in printed
    assert [a["status_code"] for a in await attempts(db, endpoint["id"])] == [204, 204]


async def test_the_example_refuses_a_request_signed_with_another_secret(
    client: httpx.AsyncClient, admin_actor: Actor, db: Database, fast: Settings, tmp_path: Path
) -> None:
    port = free_port()
    endpoint = await create_endpoint(client, admin_actor, f"http://127.0.0.1:{port}/hook")
    log = tmp_path / "receiver.log"
    proc = start("whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", port, log)
    try:
        await emit_events(db, admin_actor.workspace_id, 1)
        async with running(fast, db):
            rows = await settled(db, endpoint["id"], 1, "failed")
    finally:
        proc.terminate()
        proc.wait(10)
    assert rows[0]["last_status_code"] == 400
    assert "refused" in log.read_text()
