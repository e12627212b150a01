"""What every bench script needs: a PostgreSQL server (the service when it
answers, else an embedded one), scratch databases, and process handling."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
SERVICE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def server_admin_url(tmp: Path) -> tuple[str, str]:
    try:
        with psycopg.connect(SERVICE_URL, connect_timeout=3) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        return SERVICE_URL, f"PostgreSQL {version[0] if version else '?'} service"
    except psycopg.OperationalError:
        from sendstream.core.embedded import start_embedded_server

        url = start_embedded_server(tmp / "embedded", "postgres")
        with psycopg.connect(url) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        return url, f"embedded PostgreSQL {version[0] if version else '?'}"


def fresh_database(admin: str, name: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(admin)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo("", **info)


def drop_database(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def sqlalchemy_url(conninfo: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(conninfo)
    host = str(info.pop("host", "127.0.0.1"))
    port = info.pop("port", "5432")
    user = info.pop("user", "postgres")
    password = info.pop("password", "")
    dbname = info.pop("dbname")
    auth = f"{user}:{password}@" if password else f"{user}@"
    if host.startswith("/"):
        return f"postgresql+psycopg://{auth}/{dbname}?host={host}&port={port}"
    return f"postgresql+psycopg://{auth}{host}:{port}/{dbname}"


def start_workers(count: int, env: dict[str, str], tmp: Path) -> list[subprocess.Popen[bytes]]:
    """`count` `sendstream worker` processes, each logging to tmp/worker<i>.log."""
    procs = []
    for i in range(count):
        with (tmp / f"worker{i}.log").open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "sendstream.cli", "worker"],
                    env=env,
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    return procs


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """A process's peak (VmHWM) or current (VmRSS) resident memory, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def wait_port(port: int, what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


def cpu_seconds(pids: Iterable[int], cmdline_holds: str | None = None) -> float:
    """CPU time (user + system) so far of the processes in `pids`, plus those
    whose command line holds `cmdline_holds` (PostgreSQL backends show their
    database there); a process that is gone counts 0, and so does everything
    where /proc is missing."""
    wanted = set(pids)
    proc = Path("/proc")
    if not proc.is_dir():
        return 0.0
    if cmdline_holds is None:
        entries = [proc / str(pid) for pid in wanted]
    else:
        entries = [e for e in proc.iterdir() if e.name.isdigit()]
    ticks = 0
    for entry in entries:
        try:
            if int(entry.name) not in wanted:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if cmdline_holds is None or cmdline_holds not in cmdline:
                    continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError, UnicodeDecodeError):
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")
