"""The operator's rules for jobs: what may be retried or cancelled, when."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.jobs.queue import notify
from sendstream.core.pagination import PageParams, cursor_int, encode_cursor
from sendstream.jobs.errors import (
    JobAlreadySucceeded,
    JobFinished,
    JobNotFound,
    JobRunning,
    UniqueKeyTaken,
)
from sendstream.jobs.repository import job_repository
from sendstream.models.job import Job


class JobService:
    """`workspace_id=None` is the operator's view (CLI) of every job; the API
    passes the caller's workspace."""

    async def list_jobs(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID | None,
        page: PageParams,
        *,
        state: str | None = None,
        kind: str | None = None,
    ) -> tuple[Sequence[Job], str | None]:
        rows = await job_repository.page(
            session,
            workspace_id,
            state=state,
            kind=kind,
            before=cursor_int(page.cursor, "id"),
            limit=page.limit + 1,
        )
        if len(rows) > page.limit:
            rows = rows[: page.limit]
            return rows, encode_cursor({"id": rows[-1].id})
        return rows, None

    async def get_job(
        self, session: AsyncSession, workspace_id: uuid.UUID | None, job_id: int
    ) -> Job:
        job = await job_repository.get(session, job_id, workspace_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def retry_job(
        self, session: AsyncSession, workspace_id: uuid.UUID | None, job_id: int
    ) -> Job:
        """A dead or cancelled job goes back to the queue with fresh attempts;
        a queued job (waiting out a backoff) becomes due now."""
        job = await job_repository.get(session, job_id, workspace_id, for_update=True)
        if job is None:
            raise JobNotFound(job_id)
        if job.state == "running":
            raise JobRunning(job_id)
        if job.state == "succeeded":
            raise JobAlreadySucceeded(job_id)
        if job.state == "queued":
            await job_repository.run_now(session, job)
        else:
            if job.unique_key is not None:
                holder = await job_repository.live_holder_of_key(
                    session, job.unique_key, other_than=job.id
                )
                if holder is not None:
                    raise UniqueKeyTaken(job_id, holder)
            await job_repository.requeue(session, job)
        await session.flush()
        await notify(session, job.kind)
        return job

    async def retry_dead_jobs(
        self, session: AsyncSession, workspace_id: uuid.UUID | None, *, kind: str | None = None
    ) -> int:
        requeued = await job_repository.requeue_dead(session, workspace_id, kind)
        for notified_kind in sorted({k for _, k in requeued}):
            await notify(session, notified_kind)
        return len(requeued)

    async def cancel_job(
        self, session: AsyncSession, workspace_id: uuid.UUID | None, job_id: int
    ) -> Job:
        """A queued job is cancelled at once; a running one is marked, and its
        worker stops it at its next heartbeat and never retries it."""
        job = await job_repository.get(session, job_id, workspace_id, for_update=True)
        if job is None:
            raise JobNotFound(job_id)
        if job.state not in ("queued", "running"):
            raise JobFinished(job_id, job.state)
        await job_repository.cancel(session, job)
        await session.flush()
        return job


job_service = JobService()
