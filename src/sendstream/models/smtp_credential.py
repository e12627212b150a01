from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base, Timestamps, UUIDPrimaryKey


class SmtpCredential(UUIDPrimaryKey, Timestamps, Base):
    """A login for the SMTP submission relay. `username` is unique across
    workspaces (AUTH names no workspace, so the username finds it); only a
    hash of the password is stored (the password is 256 random bits, shown
    once, so SHA-256 is enough, as for API keys). `allowed_streams` None:
    any stream."""

    __tablename__ = "smtp_credentials"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    username: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    allowed_streams: Mapped[list[str] | None] = mapped_column(ARRAY(String(32)))
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    last_used_ip: Mapped[str | None] = mapped_column(String(64))
