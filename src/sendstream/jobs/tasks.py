"""Built-in job kinds of the jobs domain."""

from __future__ import annotations

from sendstream.core.jobs import JobContext, job


@job("jobs.noop", max_attempts=1)
async def noop(ctx: JobContext) -> None:
    """Does nothing: measures the queue itself (bench) and checks a worker is
    alive end to end (`sendstream jobs` smoke tests)."""
