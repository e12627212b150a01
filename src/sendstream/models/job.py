from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Identity,
    Index,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base


class Job(Base):
    """A durable unit of background work.

    States: queued -> running -> succeeded | queued (retry) | dead; queued or
    running -> cancelled. `payload` holds ids, not objects: a job reloads state
    and checks whether its work is already done, so running twice is safe."""

    __tablename__ = "jobs"
    __table_args__ = (
        # The claim query's index: only runnable rows, in claim order.
        Index(
            "ix_jobs_claim",
            "priority",
            "run_at",
            "id",
            postgresql_where=text("state = 'queued'"),
        ),
        # Expired leases are found without scanning finished jobs.
        Index("ix_jobs_lease", "lease_until", postgresql_where=text("state = 'running'")),
        # One live job per unique key; a finished job frees the key.
        Index(
            "uq_jobs_unique_key",
            "unique_key",
            unique=True,
            postgresql_where=text("state IN ('queued', 'running') AND unique_key IS NOT NULL"),
        ),
        Index("ix_jobs_workspace_id_id", "workspace_id", "id"),
        Index(
            "ix_jobs_finished_at",
            "finished_at",
            postgresql_where=text("finished_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # None for system jobs that belong to no tenant.
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    state: Mapped[str] = mapped_column(String(16), server_default="queued")
    # Lower runs first.
    priority: Mapped[int] = mapped_column(SmallInteger, server_default="100")
    run_at: Mapped[datetime] = mapped_column(server_default=func.now())
    attempts: Mapped[int] = mapped_column(server_default="0")
    max_attempts: Mapped[int] = mapped_column(server_default="10")
    unique_key: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[datetime | None]
    locked_by: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[datetime | None]
