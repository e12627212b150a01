"""Every query of the operator view of the job queue.

`workspace_id=None` is the operator's view (CLI): every job, system jobs
included. The API always passes the caller's workspace, so a job of another
workspace, or a system job, is simply not found.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.models.job import Job

LIVE_STATES = ("queued", "running")


def _scoped(query: Select[Job], workspace_id: uuid.UUID | None) -> Select[Job]:
    return query if workspace_id is None else query.where(Job.workspace_id == workspace_id)


class JobRepository:
    async def get(
        self,
        session: AsyncSession,
        job_id: int,
        workspace_id: uuid.UUID | None,
        *,
        for_update: bool = False,
    ) -> Job | None:
        query = _scoped(select(Job).where(Job.id == job_id), workspace_id)
        if for_update:
            query = query.with_for_update()
        return (await session.execute(query)).scalar_one_or_none()

    async def page(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID | None,
        *,
        state: str | None,
        kind: str | None,
        before: int | None,
        limit: int,
    ) -> Sequence[Job]:
        """Newest first; `before` is the last id of the previous page."""
        query = _scoped(select(Job), workspace_id)
        if state is not None:
            query = query.where(Job.state == state)
        if kind is not None:
            query = query.where(Job.kind == kind)
        if before is not None:
            query = query.where(Job.id < before)
        result = await session.execute(query.order_by(Job.id.desc()).limit(limit))
        return result.scalars().all()

    async def live_holder_of_key(
        self, session: AsyncSession, unique_key: str, *, other_than: int
    ) -> int | None:
        result = await session.execute(
            select(Job.id).where(
                Job.unique_key == unique_key, Job.state.in_(LIVE_STATES), Job.id != other_than
            )
        )
        return result.scalar_one_or_none()

    async def requeue(self, session: AsyncSession, job: Job) -> None:
        """Back to the queue, due now, with fresh attempts."""
        job.state = "queued"
        job.attempts = 0
        job.run_at = await self._now(session)
        job.finished_at = None
        job.lease_until = None
        job.locked_by = None
        job.updated_at = job.run_at

    async def run_now(self, session: AsyncSession, job: Job) -> None:
        """A queued job waiting out a backoff or schedule becomes due now."""
        job.run_at = await self._now(session)
        job.updated_at = job.run_at

    async def cancel(self, session: AsyncSession, job: Job) -> None:
        # A running job keeps `locked_by`: its worker's next heartbeat no
        # longer finds the job leased to it and stops the handler.
        now = await self._now(session)
        job.state = "cancelled"
        job.finished_at = now
        job.lease_until = None
        job.updated_at = now

    async def requeue_dead(
        self, session: AsyncSession, workspace_id: uuid.UUID | None, kind: str | None
    ) -> list[tuple[int, str]]:
        """Puts dead jobs (of `kind`) back in the queue with fresh attempts.
        A unique key goes live once: dead jobs whose key a live job holds stay
        dead, and of several dead jobs sharing a key only the newest returns."""
        result = await session.execute(_REQUEUE_DEAD, {"workspace_id": workspace_id, "kind": kind})
        return [(int(r[0]), str(r[1])) for r in result.all()]

    async def _now(self, session: AsyncSession) -> datetime:
        # The database's clock, the one the claim query compares run_at with.
        value: datetime = (await session.execute(select(func.now()))).scalar_one()
        return value


_REQUEUE_DEAD = text(
    """
    UPDATE jobs SET state = 'queued', attempts = 0, run_at = now(), finished_at = NULL,
                    lease_until = NULL, locked_by = NULL, updated_at = now()
    WHERE id IN (
        SELECT DISTINCT ON (coalesce(d.unique_key, d.id::text)) d.id
        FROM jobs AS d
        WHERE d.state = 'dead'
          AND (CAST(:workspace_id AS uuid) IS NULL OR d.workspace_id = :workspace_id)
          AND (CAST(:kind AS text) IS NULL OR d.kind = :kind)
          AND NOT EXISTS (
              SELECT 1 FROM jobs AS h
              WHERE h.unique_key = d.unique_key AND h.state IN ('queued', 'running')
          )
        ORDER BY coalesce(d.unique_key, d.id::text), d.id DESC
    )
    AND state = 'dead'
    RETURNING id, kind
    """
)


job_repository = JobRepository()
