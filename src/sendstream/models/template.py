from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base, Timestamps, UUIDPrimaryKey


class Template(UUIDPrimaryKey, Timestamps, Base):
    """A named template of a workspace; its content lives in immutable
    `TemplateVersion` rows, and `active_version_id` says which one sends.

    `key` is the slug the send API, `{% include %}` and `layout` use, unique
    per workspace. `kind`: `template` (sendable), `layout` (wraps a
    template's HTML as `{{ content }}`) or `partial` (included). Deleting
    archives (`archived_at`): versions stay for the messages that refer to
    them, but an archived template is never sent or given new versions.
    `latest_version` hands out version numbers under the row's lock."""

    __tablename__ = "templates"
    __table_args__ = (
        UniqueConstraint("workspace_id", "key"),
        Index("ix_templates_workspace_id_id", "workspace_id", "id"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(String(1000))
    # `use_alter`: templates and versions point at each other.
    active_version_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("template_versions.id", ondelete="SET NULL", use_alter=True)
    )
    latest_version: Mapped[int] = mapped_column(Integer, server_default="0")
    archived_at: Mapped[datetime | None]
