"""Response bodies of the jobs API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sendstream.core.pagination import Page

JobState = Literal["queued", "running", "succeeded", "dead", "cancelled"]


class JobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    workspace_id: uuid.UUID | None
    kind: str = Field(description="What the job does, `domain.verb`.")
    state: JobState
    payload: dict[str, Any] = Field(description="Ids the handler reloads; never whole objects.")
    priority: int = Field(description="Lower runs first.")
    run_at: datetime = Field(description="Not run before this time (retries move it forward).")
    attempts: int = Field(description="Attempts made so far, including one running now.")
    max_attempts: int
    unique_key: str | None
    locked_by: str | None = Field(description="The worker running it, or that ran it last.")
    lease_until: datetime | None
    last_error: str | None = Field(
        description="Type, message and innermost frames of the last failure."
    )
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class JobPage(Page[JobRead]):
    pass
