"""Database engine, sessions and the one place a transaction commits.

One process holds one `Database` (engine + session factory). With no
`SENDSTREAM_DATABASE_URL` the embedded server is started first.

Sessions are `AsyncSession`s over `SyncSession`; the event outbox hooks
`SyncSession.before_commit` so events buffered during a unit of work are
written, with their positions, inside the same transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

from sendstream.core import outbox
from sendstream.core.embedded import start_embedded_server
from sendstream.core.settings import Settings, get_settings


class SyncSession(Session):
    """The synchronous session under every AsyncSession; a distinct class so the
    outbox hook applies to Sendstream sessions only."""


event.listen(SyncSession, "before_commit", outbox.write_pending_events)


def resolve_database_url(settings: Settings) -> URL:
    """The SQLAlchemy URL (psycopg 3 driver) for the configured or embedded server."""
    raw = settings.database_url
    if not raw:
        raw = start_embedded_server(settings.embedded.data_dir, settings.embedded.database_name)
    url = make_url(raw)
    if url.drivername in ("postgres", "postgresql", "postgresql+psycopg2"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def libpq_url(url: URL) -> str:
    """The same server as a plain libpq URL, for raw psycopg connections
    (LISTEN, COPY, benchmarks)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class Database:
    url: URL
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]

    @property
    def libpq_url(self) -> str:
        return libpq_url(self.url)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A unit of work for code at the edge (jobs, CLI): commits on success,
        rolls back on any exception."""
        async with self.sessionmaker() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def dispose(self) -> None:
        await self.engine.dispose()


def create_database(settings: Settings | None = None, *, url: URL | None = None) -> Database:
    settings = settings or get_settings()
    url = url or resolve_database_url(settings)
    db_settings = settings.database
    engine = create_async_engine(
        url,
        pool_size=db_settings.pool_size,
        max_overflow=db_settings.max_overflow,
        pool_timeout=db_settings.pool_timeout,
        # A connection that died with the server is replaced, not handed out.
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": int(db_settings.connect_timeout),
            "application_name": "sendstream",
            "options": f"-c statement_timeout={int(db_settings.statement_timeout * 1000)}",
        },
    )
    maker = async_sessionmaker(
        engine,
        class_=AsyncSession,
        sync_session_class=SyncSession,
        expire_on_commit=False,
    )
    return Database(url=url, engine=engine, sessionmaker=maker)


_current: list[Database] = []


def install_database(database: Database | None) -> None:
    """Make `database` the process-wide one (app lifespan, worker start, tests)."""
    _current.clear()
    if database is not None:
        _current.append(database)


def get_database() -> Database:
    if not _current:
        install_database(create_database())
    return _current[0]
