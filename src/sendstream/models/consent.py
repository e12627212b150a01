from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Identity, Index, String, Text, func
from sqlalchemy.dialects.postgresql import INET
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base


class ConsentRecord(Base):
    """One change of consent, append-only: never updated, deleted only when
    the contact is erased. `list_id` is None for the global state.

    `source` says how: api, import, form, unsubscribe_link, confirmation,
    crm_sync, bounce, complaint, admin."""

    __tablename__ = "consent_records"
    __table_args__ = (Index("ix_consent_records_contact_id_id", "contact_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    list_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("lists.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16))
    previous_status: Mapped[str | None] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(32))
    ip: Mapped[str | None] = mapped_column(INET)
    user_agent: Mapped[str | None] = mapped_column(String(1000))
    # The words the person agreed to, as shown to them.
    consent_text: Mapped[str | None] = mapped_column(Text)
    # Who made the change: `key:<prefix>`, `user:<id>`, `cli`, `system`.
    actor: Mapped[str | None] = mapped_column(String(100))
    occurred_at: Mapped[datetime] = mapped_column(server_default=func.now())
