from __future__ import annotations

from sqlalchemy import Boolean, String, text
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base, Timestamps, UUIDPrimaryKey


class Workspace(UUIDPrimaryKey, Timestamps, Base):
    """A tenant. Every tenant-owned row carries `workspace_id`."""

    __tablename__ = "workspaces"

    name: Mapped[str] = mapped_column(String(200))
    # URL-safe unique handle used by the CLI (`--workspace acme`).
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    # Webhook endpoints of this workspace may point at loopback, private and
    # link-local addresses (local development, tests); off: refused as SSRF.
    webhooks_allow_private_addresses: Mapped[bool] = mapped_column(
        Boolean, server_default=text("false")
    )
