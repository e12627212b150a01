from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base, UUIDPrimaryKey


class TemplateVersion(UUIDPrimaryKey, Base):
    """One immutable version of a template: numbered 1, 2, 3 ... per template
    and never updated, so a message that names a version id renders the same
    content for ever.

    `html` is what renders; when `mjml` is given, `html` was compiled from it
    with mrml at save time. `headers` are extra headers whose values are
    templates too. `layout_key` names a `layout` template wrapping this one's
    HTML (templates only). `strict`: an undefined variable fails the render
    instead of printing nothing. `sample_data` is what previews render with
    when they are given no data."""

    __tablename__ = "template_versions"
    __table_args__ = (UniqueConstraint("template_id", "number"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    template_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("templates.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    mjml: Mapped[str | None] = mapped_column(Text)
    from_email: Mapped[str | None] = mapped_column(String(320))
    from_name: Mapped[str | None] = mapped_column(String(200))
    reply_to: Mapped[str | None] = mapped_column(String(320))
    headers: Mapped[dict[str, str]] = mapped_column(JSONB, server_default="{}")
    layout_key: Mapped[str | None] = mapped_column(String(64))
    # Keys of the partials the sources include or import, found at save time:
    # what a render loads, and what archiving a partial checks.
    partial_keys: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    strict: Mapped[bool] = mapped_column(Boolean, server_default="false")
    inline_css: Mapped[bool] = mapped_column(Boolean, server_default="true")
    sample_data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    # Who saved it: `api_key:<id>`, `user:<id>`, `cli`.
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
