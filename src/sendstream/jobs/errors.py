"""Errors of the jobs domain, each with its stable problem+json `code`."""

from __future__ import annotations

from sendstream.core.errors import Conflict, NotFound


class JobNotFound(NotFound):
    code = "job_not_found"

    def __init__(self, job_id: int) -> None:
        super().__init__(f"No job {job_id} in this workspace.")


class JobRunning(Conflict):
    code = "job_running"

    def __init__(self, job_id: int) -> None:
        super().__init__(
            f"Job {job_id} is running; it can be retried once it has failed or been cancelled."
        )


class JobAlreadySucceeded(Conflict):
    code = "job_succeeded"

    def __init__(self, job_id: int) -> None:
        super().__init__(f"Job {job_id} already succeeded; there is nothing to retry.")


class JobFinished(Conflict):
    code = "job_finished"

    def __init__(self, job_id: int, state: str) -> None:
        super().__init__(
            f"Job {job_id} is already {state}; only queued or running jobs can be cancelled."
        )


class UniqueKeyTaken(Conflict):
    code = "job_unique_key_taken"

    def __init__(self, job_id: int, live_id: int) -> None:
        super().__init__(
            f"Job {job_id} cannot be queued again: job {live_id} with the same unique key is "
            "already queued or running."
        )
