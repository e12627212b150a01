from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base, Timestamps, UUIDPrimaryKey


class Field(UUIDPrimaryKey, Timestamps, Base):
    """A custom contact field the workspace declared. Values live in
    `contacts.attributes[key]`; `type` decides how they are validated:
    text, number, boolean, date, datetime, enum, text_list or json."""

    __tablename__ = "fields"
    __table_args__ = (UniqueConstraint("workspace_id", "key"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(16))
    # Allowed values of an `enum` field, in display order.
    options: Mapped[list[str] | None] = mapped_column(JSONB)
    # Stored on contacts created without a value for this field.
    default: Mapped[Any | None] = mapped_column(JSONB)
    description: Mapped[str | None] = mapped_column(String(1000))
