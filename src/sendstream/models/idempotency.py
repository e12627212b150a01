from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base


class IdempotencyKey(Base):
    """A create request's `Idempotency-Key` and the response it produced.

    The row is inserted before the create runs, in the same transaction, so a
    concurrent retry with the same key waits on the row lock and then replays
    the committed response instead of creating twice."""

    __tablename__ = "idempotency_keys"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # SHA-256 of method, path, query and body: the same key with another request is a 422.
    request_hash: Mapped[str] = mapped_column(String(64))
    # Null until the first request commits; then the response replayed byte
    # for byte (JSONB would reorder keys and drop non-JSON bodies).
    response_status: Mapped[int | None]
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    response_headers: Mapped[dict[str, str] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
