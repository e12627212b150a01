from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base, Timestamps, UUIDPrimaryKey

IMAP_TLS_MODES = ("implicit", "starttls")
IMAP_AUTH_METHODS = ("password", "xoauth2")
IMAP_ACTIONS = ("move", "flag", "delete")
IMAP_MODES = ("idle", "poll")
IMAP_OUTCOMES = ("accepted", "duplicate", "oversized")


def _in(column: str, values: tuple[str, ...]) -> str:
    return "{} IN ({})".format(column, ", ".join(f"'{v}'" for v in values))


class ImapMailbox(UUIDPrimaryKey, Timestamps, Base):
    """An IMAP folder where bounces land, read by the worker's IMAP loop
    (bounces/imap_runner.py) and handed to the inbound intake.

    `workspace_id` NULL: a deployment-wide mailbox (like the bounce domain),
    whose mail acts only through verified VERP return paths; set: the mail
    may act only on that workspace's messages. Secrets are `core.secrets`
    tokens bound to `imap_mailboxes.<column>:<id>`: the password, the OAuth2
    client secret and refresh token, and the access token (static, or the
    last one obtained with the refresh token, until `access_token_expires_at`).

    `uidvalidity`/`last_uid`: the folder's UIDVALIDITY and the highest UID
    handed to the intake (or skipped); advanced only after the intake
    committed and the processed action was applied. A new UIDVALIDITY starts
    over from UID 0 (imap_messages keeps that from processing mail twice)."""

    __tablename__ = "imap_mailboxes"
    __table_args__ = (
        CheckConstraint(_in("tls", IMAP_TLS_MODES), name="tls"),
        CheckConstraint(_in("auth", IMAP_AUTH_METHODS), name="auth"),
        CheckConstraint(_in("processed_action", IMAP_ACTIONS), name="processed_action"),
        CheckConstraint(_in("mode", IMAP_MODES), name="mode"),
        CheckConstraint("port BETWEEN 1 AND 65535", name="port"),
        CheckConstraint("poll_interval BETWEEN 5 AND 86400", name="poll_interval"),
        Index("ix_imap_mailboxes_workspace_id_created_at", "workspace_id", "created_at"),
    )

    workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(200))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    tls: Mapped[str] = mapped_column(String(16), server_default="implicit")
    # PEM certificates trusted besides the system's (a private CA, a
    # self-signed server); verification itself is never switched off.
    ca_certificates: Mapped[str | None] = mapped_column(Text)
    username: Mapped[str] = mapped_column(String(320))
    auth: Mapped[str] = mapped_column(String(16), server_default="password")
    password_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary, info={"encrypted": True})
    oauth_token_url: Mapped[str | None] = mapped_column(Text)
    oauth_client_id: Mapped[str | None] = mapped_column(String(500))
    oauth_client_secret_encrypted: Mapped[bytes | None] = mapped_column(
        LargeBinary, info={"encrypted": True}
    )
    oauth_refresh_token_encrypted: Mapped[bytes | None] = mapped_column(
        LargeBinary, info={"encrypted": True}
    )
    oauth_scope: Mapped[str | None] = mapped_column(Text)
    access_token_encrypted: Mapped[bytes | None] = mapped_column(
        LargeBinary, info={"encrypted": True}
    )
    access_token_expires_at: Mapped[datetime | None]
    folder: Mapped[str] = mapped_column(String(255), server_default="INBOX")
    processed_action: Mapped[str] = mapped_column(String(16), server_default="move")
    # The folder processed mail is moved to (action move; created if missing).
    processed_folder: Mapped[str | None] = mapped_column(String(255))
    # The flag or keyword set on processed mail (action flag), e.g. \Seen.
    processed_flag: Mapped[str | None] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(16), server_default="idle")
    # Seconds between checks in poll mode (and when the server lacks IDLE).
    poll_interval: Mapped[int] = mapped_column(Integer, server_default="60")
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]
    last_checked_at: Mapped[datetime | None]
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))


class ImapMessage(Base):
    """One message of a mailbox's folder that was dealt with, by
    (mailbox, UIDVALIDITY, UID): written in the intake's transaction, so a
    re-fetch after a crash (before the move/flag or before `last_uid` was
    saved) finds it and only applies the action again. `message_key`
    (SHA-256 of Message-ID, Date and size) recognises the same mail under a
    new UIDVALIDITY. `outcome`: accepted (handed to the intake), duplicate
    (seen before under another UID), oversized (skipped, not read)."""

    __tablename__ = "imap_messages"
    __table_args__ = (
        CheckConstraint(_in("outcome", IMAP_OUTCOMES), name="outcome"),
        Index("ix_imap_messages_mailbox_id_message_key", "mailbox_id", "message_key"),
    )

    mailbox_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("imap_mailboxes.id", ondelete="CASCADE"), primary_key=True
    )
    uidvalidity: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    uid: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    message_key: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(Integer)
    # The intake row (not a foreign key: inbound mail is pruned after its
    # retention, this key must outlive it).
    inbound_message_id: Mapped[uuid.UUID | None]
    processed_at: Mapped[datetime] = mapped_column(server_default=func.now())
