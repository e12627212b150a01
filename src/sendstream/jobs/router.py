"""HTTP routes of the job queue's operator view. Every query is scoped to the
caller's workspace: another workspace's job, or a system job, is a 404."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.http import UnitOfWorkRoute, get_session
from sendstream.core.pagination import PageQuery
from sendstream.jobs.schemas import JobPage, JobRead, JobState
from sendstream.jobs.service import job_service
from sendstream.workspaces.auth import Principal, require_scope

router = APIRouter(route_class=UnitOfWorkRoute, tags=["jobs"])
Session = Annotated[AsyncSession, Depends(get_session)]
# Bounded to bigint so an absurd id is a 422, not a database error.
JobId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The job's id.")]


@router.get("/jobs", summary="List jobs, newest first")
async def list_jobs(
    session: Session,
    page: PageQuery,
    state: Annotated[JobState | None, Query(description="Only jobs in this state.")] = None,
    kind: Annotated[
        str | None, Query(max_length=100, description="Only jobs of this kind, e.g. `jobs.noop`.")
    ] = None,
    principal: Principal = require_scope("jobs:read"),
) -> JobPage:
    jobs, cursor = await job_service.list_jobs(
        session, principal.workspace_id, page, state=state, kind=kind
    )
    return JobPage(data=[JobRead.model_validate(j) for j in jobs], next_cursor=cursor)


@router.get("/jobs/{job_id}", summary="Get a job")
async def get_job(
    job_id: JobId, session: Session, principal: Principal = require_scope("jobs:read")
) -> JobRead:
    return JobRead.model_validate(
        await job_service.get_job(session, principal.workspace_id, job_id)
    )


@router.post(
    "/jobs/{job_id}/retry",
    summary="Retry a job",
    description="A dead or cancelled job is queued again with fresh attempts; a queued job "
    "waiting out a backoff becomes due now. 409 `job_running` or `job_succeeded` otherwise.",
)
async def retry_job(
    job_id: JobId, session: Session, principal: Principal = require_scope("jobs:write")
) -> JobRead:
    return JobRead.model_validate(
        await job_service.retry_job(session, principal.workspace_id, job_id)
    )


@router.post(
    "/jobs/{job_id}/cancel",
    summary="Cancel a job",
    description="A queued job is cancelled at once; a running job is stopped by its worker "
    "at the next heartbeat and not retried. 409 `job_finished` if it already ended.",
)
async def cancel_job(
    job_id: JobId, session: Session, principal: Principal = require_scope("jobs:write")
) -> JobRead:
    return JobRead.model_validate(
        await job_service.cancel_job(session, principal.workspace_id, job_id)
    )
