"""Response shapes of /v1/events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from sendstream.core.outbox import EventRecord
from sendstream.core.pagination import Page


class EventRead(BaseModel):
    position: int = Field(
        description="1, 2, 3 ... per workspace in commit order, without gaps; pass the last "
        "one you handled as `after_position` to continue from it."
    )
    type: str = Field(examples=["message.sent"])
    occurred_at: datetime
    subject_type: str | None = Field(description="What the event is about (`contact`, ...).")
    subject_id: str | None
    data: dict[str, Any] = Field(description="As documented per type in docs/webhooks.md.")

    @classmethod
    def of(cls, record: EventRecord) -> EventRead:
        return cls(
            position=record.position,
            type=record.type,
            occurred_at=record.occurred_at,
            subject_type=record.subject_type,
            subject_id=record.subject_id,
            data=record.data,
        )


class EventPage(Page[EventRead]):
    pass
