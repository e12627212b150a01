from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base, Timestamps, UUIDPrimaryKey


class Workspace(UUIDPrimaryKey, Timestamps, Base):
    """A tenant. Every tenant-owned row carries `workspace_id`."""

    __tablename__ = "workspaces"

    name: Mapped[str] = mapped_column(String(200))
    # URL-safe unique handle used by the CLI (`--workspace acme`).
    slug: Mapped[str] = mapped_column(String(63), unique=True)
