from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, PrimaryKeyConstraint, String, func
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base


class Suppression(Base):
    """An address that must not come back or be mailed, held only as a keyed
    hash (HMAC-SHA256 of the matching key under a key derived from the master
    key), so an erased person leaves no readable address behind.

    `reason`: erased (GDPR erasure; only an explicit new opt-in lifts it),
    unsubscribed, bounced, complained, manual."""

    __tablename__ = "suppressions"
    __table_args__ = (PrimaryKeyConstraint("workspace_id", "address_hash"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    address_hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
