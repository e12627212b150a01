"""Alembic environment: runs migrations on the URL handed over by
`sendstream.core.migrate`, one transaction per migration run."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

import sendstream.models.all  # noqa: F401  (registers every table)
from sendstream.models.base import Base

config = context.config
url = config.attributes["url"]


def run() -> None:
    connectable = create_engine(url, poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            compare_type=True,
            transaction_per_migration=False,
        )
        with context.begin_transaction():
            context.run_migrations()
    connectable.dispose()


run()
