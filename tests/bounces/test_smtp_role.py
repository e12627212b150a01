"""`sendstream smtp` as an operator runs it: a real process whose MX takes a
bounce, answers 250 only once it is stored, and loses nothing when killed
outright before anything processed it: a worker started afterwards acts
on it."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import aiosmtplib
import httpx
import pytest

from sendstream.bounces.mx import MxServer
from sendstream.core.db import Database
from sendstream.core.settings import Settings
from sendstream.delivery.submission import SubmissionServer
from sendstream.runner import _start_smtp_in_up
from tests.bounces.action_support import Mailed, hard_dsn, mailed, scalar, states, suppression
from tests.bounces.mx_support import smtp_settings, wait_processed
from tests.fixtures.actors import Actor
from tests.fixtures.job_worker import WorkerHarness, workers
from tests.fixtures.processes import clean_env, free_port, start_cli, stop

__all__ = ["workers"]  # fixture used below


def _wait_listening(log: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while "Sendstream MX on" not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


@pytest.mark.slow
class TestSmtpRole:
    async def test_a_killed_smtp_process_loses_no_accepted_bounce(
        self,
        tmp_path: Path,
        client: httpx.AsyncClient,
        settings: Settings,
        db: Database,
        admin_actor: Actor,
        workers: WorkerHarness,
    ) -> None:
        ada: Mailed = await mailed(client, db, admin_actor)
        port = free_port()
        assert settings.database_url
        master_key = settings.security.master_key
        assert master_key is not None
        env = clean_env(
            SENDSTREAM_DATABASE_URL=settings.database_url,
            SENDSTREAM_SECURITY__MASTER_KEY=master_key.get_secret_value(),
            SENDSTREAM_ENVIRONMENT="test",
        )
        log = tmp_path / "smtp.log"
        proc = start_cli(["smtp", "--mx-port", str(port)], env, tmp_path, log)
        try:
            _wait_listening(log, proc)
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as smtp:
                errors, reply = await smtp.sendmail(
                    "", [ada.verp], hard_dsn(ada.verp, "ada@example.com")
                )
            assert not errors
            assert "queued as" in reply
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            stop(proc)
        assert await scalar(db, "SELECT status FROM inbound_messages") == "received"
        await workers.start()
        await wait_processed(db)
        assert await states(db, ada) == ("bounced", "bounced", "bounced")
        assert (await suppression(db, admin_actor.workspace_id, "ada@example.com"))["reason"] == (
            "bounced"
        )

    def test_sigterm_stops_the_smtp_role_cleanly(
        self, tmp_path: Path, settings: Settings, database: Database
    ) -> None:
        port = free_port()
        assert settings.database_url
        env = clean_env(SENDSTREAM_DATABASE_URL=settings.database_url)
        log = tmp_path / "smtp.log"
        relay_port = free_port()
        proc = start_cli(
            ["smtp", "--mx-port", str(port), "--submission-port", str(relay_port)],
            env,
            tmp_path,
            log,
        )
        try:
            _wait_listening(log, proc)
            deadline = time.monotonic() + 30
            while "submission relay on" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            assert f"smtp://127.0.0.1:{port}" in log.read_text()
            assert f"smtp://127.0.0.1:{relay_port} (STARTTLS)" in log.read_text()
        finally:
            assert stop(proc) == 0, log.read_text()


class TestUpRunsTheSmtpListeners:
    async def test_up_starts_the_mx_and_the_relay_when_enabled(
        self, settings: Settings, db: Database
    ) -> None:
        listeners = await _start_smtp_in_up(smtp_settings(settings, submission_port=0), db)
        try:
            mx, relay = listeners
            assert isinstance(mx, MxServer)
            assert isinstance(relay, SubmissionServer)
            assert mx.port is not None
            assert relay.port is not None
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=mx.port, start_tls=False) as s:
                await s.mail("")
                assert (await s.rcpt("postmaster")).code == 250
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, start_tls=False) as s:
                await s.ehlo()
                # No TLS configured: AUTH (and so MAIL) is refused, never open.
                assert (await s.execute_command(b"MAIL", b"FROM:<a@example.com>")).code == 530
        finally:
            for listener in reversed(listeners):
                await listener.stop()

    async def test_a_taken_port_is_reported_and_the_rest_runs_on(
        self, settings: Settings, db: Database
    ) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            listeners = await _start_smtp_in_up(
                smtp_settings(settings, mx_port=port, submission_port=0), db
            )
            try:
                assert [type(x) for x in listeners] == [SubmissionServer]
            finally:
                for listener in listeners:
                    await listener.stop()

    async def test_nothing_when_both_are_switched_off(
        self, settings: Settings, db: Database
    ) -> None:
        off = smtp_settings(settings, mx_enabled=False, submission_enabled=False)
        assert await _start_smtp_in_up(off, db) == []
