"""Shared fixtures: a migrated database per run (service or embedded), settings
pointing at it, a clean schema per test, and an HTTP client on the real app."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import URL

from sendstream.app import create_app
from sendstream.core import migrate
from sendstream.core.db import Database, create_database, install_database
from sendstream.core.settings import Settings, override_settings
from tests.fixtures.databases import admin_url, create_fresh_database, drop_database

pytest_plugins = [
    "tests.fixtures.actors",
    "tests.fixtures.cli",
    "tests.fixtures.smtp",
    "tests.fixtures.dns",
    "tests.fixtures.smtp_servers",
    "tests.fixtures.dovecot",
]


@pytest.fixture(scope="session")
def database_admin_url() -> str:
    # Not under pytest's basetemp: another pytest run on the machine prunes old
    # basetemps, which would delete the running embedded server's data.
    root = Path(tempfile.mkdtemp(prefix="sendstream-test-pg-"))
    # Registered before the server starts, so it runs after the server's own
    # exit hook has stopped it (atexit runs last-registered first).
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return admin_url(root)


@pytest.fixture(scope="session")
def database_url(database_admin_url: str) -> Iterator[URL]:
    name = f"sendstream_test_{os.getpid()}"
    url = create_fresh_database(database_admin_url, name)
    migrate.upgrade(url)
    yield url
    drop_database(database_admin_url, name)


@pytest.fixture(scope="session")
def settings(database_url: URL) -> Iterator[Settings]:
    value = Settings(
        environment="test",
        database_url=database_url.render_as_string(hide_password=False),
        redis_url=None,
        security={"master_key": "dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmctISE="},
    )
    override_settings(value)
    yield value
    override_settings(None)


@pytest.fixture(scope="session")
async def database(settings: Settings, database_url: URL) -> AsyncIterator[Database]:
    db = create_database(settings, url=database_url)
    install_database(db)
    yield db
    await db.dispose()
    install_database(None)


@pytest.fixture
async def db(database: Database) -> Database:
    """The migrated database with every table emptied before the test."""
    async with database.engine.begin() as conn:
        tables = [
            row[0]
            for row in await conn.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'alembic_version'"
                )
            )
        ]
        if tables:
            await conn.execute(
                text(
                    "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"
                )
            )
    return database


@pytest.fixture
def app(db: Database) -> FastAPI:
    return create_app(manage_database=False)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c
