"""The embedded PostgreSQL: data survives restarts, and a second process on the
same folder attaches to the running server instead of starting another."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.slow

# A process that attaches to the embedded server, runs one SQL statement,
# prints the postmaster's pid and the statement's result, then holds the
# server until its stdin closes.
HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import psycopg
    from sendstream.core.embedded import start_embedded_server

    data = Path(sys.argv[1])
    url = start_embedded_server(data, "sendstream")
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in sys.argv[2].split(";"):
            cursor = conn.execute(statement)
        row = cursor.fetchone()
    pid = (data / "pg" / "postmaster.pid").read_text().split()[0]
    print(pid, row[0] if row else None, flush=True)
    sys.stdin.read()
    """
)


def _attach(data: Path, sql: str) -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data), sql],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert line, "holder process printed nothing"
    return proc, line[0], line[1]


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    proc.stdout.close()


class TestEmbeddedServer:
    def test_second_process_reuses_the_running_server(self, tmp_path: Path) -> None:
        first, first_pid, _ = _attach(tmp_path, "SELECT 1")
        try:
            second, second_pid, _ = _attach(tmp_path, "SELECT 1")
            _release(second)
            assert second_pid == first_pid
            # The first process still has a working server after the second left.
            url = f"postgresql://postgres@/sendstream?host={tmp_path / 'pg'}"
            with psycopg.connect(url) as conn:
                assert conn.execute("SELECT 2").fetchone() == (2,)
        finally:
            _release(first)

    def test_data_survives_a_restart(self, tmp_path: Path) -> None:
        proc, _, _ = _attach(
            tmp_path, "CREATE TABLE kept (answer int); INSERT INTO kept VALUES (42); SELECT 1"
        )
        _release(proc)
        assert not (tmp_path / "pg" / "postmaster.pid").exists(), "server kept running"
        proc, _, answer = _attach(tmp_path, "SELECT answer FROM kept")
        _release(proc)
        assert answer == "42"
