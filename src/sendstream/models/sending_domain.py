from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base, Timestamps, UUIDPrimaryKey


class SendingDomain(UUIDPrimaryKey, Timestamps, Base):
    """A domain a workspace sends from, with its DKIM keys and the state of
    its DNS verification.

    `name` is the lower-case A-label (`xn--bcher-kva.example`), without a
    trailing dot. `status`: `pending` (never checked conclusively),
    `verified` (every required record was right at the last conclusive
    check), `failed` (a required record was missing or wrong). The private
    keys are `core.secrets` tokens bound to `sending_domains.<column>:<id>`;
    the public keys are the base64 `p=` values of the DKIM records.
    `check_results` holds the last check per record key (see
    `delivery.domain_records`)."""

    __tablename__ = "sending_domains"
    __table_args__ = (
        UniqueConstraint("workspace_id", "name"),
        CheckConstraint("status IN ('pending', 'verified', 'failed')", name="status"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(253))
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    dkim_selector: Mapped[str] = mapped_column(String(63))
    # core.secrets tokens (see core/secrets_rotation.py).
    dkim_private_key: Mapped[bytes] = mapped_column(LargeBinary, info={"encrypted": True})
    dkim_public_key: Mapped[str] = mapped_column(Text)
    # Set when the domain dual-signs with Ed25519 (RFC 8463) besides RSA.
    ed25519_selector: Mapped[str | None] = mapped_column(String(63))
    ed25519_private_key: Mapped[bytes | None] = mapped_column(LargeBinary, info={"encrypted": True})
    ed25519_public_key: Mapped[str | None] = mapped_column(String(64))
    # Single labels under `name`: `<return_path_subdomain>.<name>` is the
    # envelope sender's domain (MX to the bounce domain), the other serves
    # tracking links (CNAME to the tracking host).
    return_path_subdomain: Mapped[str] = mapped_column(String(63))
    tracking_subdomain: Mapped[str] = mapped_column(String(63))
    check_results: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    checked_at: Mapped[datetime | None] = mapped_column()
    verified_at: Mapped[datetime | None] = mapped_column()
