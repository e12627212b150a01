"""IMAP mailboxes polled for bounces.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-27 13:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "imap_mailboxes",
        sa.Column("workspace_id", sa.UUID(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("tls", sa.String(length=16), server_default="implicit", nullable=False),
        sa.Column("ca_certificates", sa.Text(), nullable=True),
        sa.Column("username", sa.String(length=320), nullable=False),
        sa.Column("auth", sa.String(length=16), server_default="password", nullable=False),
        sa.Column("password_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("oauth_token_url", sa.Text(), nullable=True),
        sa.Column("oauth_client_id", sa.String(length=500), nullable=True),
        sa.Column("oauth_client_secret_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("oauth_refresh_token_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("oauth_scope", sa.Text(), nullable=True),
        sa.Column("access_token_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("access_token_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("folder", sa.String(length=255), server_default="INBOX", nullable=False),
        sa.Column("processed_action", sa.String(length=16), server_default="move", nullable=False),
        sa.Column("processed_folder", sa.String(length=255), nullable=True),
        sa.Column("processed_flag", sa.String(length=64), nullable=True),
        sa.Column("mode", sa.String(length=16), server_default="idle", nullable=False),
        sa.Column("poll_interval", sa.Integer(), server_default="60", nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=True),
        sa.Column("last_uid", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.CheckConstraint("tls IN ('implicit', 'starttls')", name=op.f("ck_imap_mailboxes_tls")),
        sa.CheckConstraint("auth IN ('password', 'xoauth2')", name=op.f("ck_imap_mailboxes_auth")),
        sa.CheckConstraint(
            "processed_action IN ('move', 'flag', 'delete')",
            name=op.f("ck_imap_mailboxes_processed_action"),
        ),
        sa.CheckConstraint("mode IN ('idle', 'poll')", name=op.f("ck_imap_mailboxes_mode")),
        sa.CheckConstraint("port BETWEEN 1 AND 65535", name=op.f("ck_imap_mailboxes_port")),
        sa.CheckConstraint(
            "poll_interval BETWEEN 5 AND 86400", name=op.f("ck_imap_mailboxes_poll_interval")
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_imap_mailboxes_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imap_mailboxes")),
    )
    op.create_index(
        "ix_imap_mailboxes_workspace_id_created_at",
        "imap_mailboxes",
        ["workspace_id", "created_at"],
    )
    op.create_table(
        "imap_messages",
        sa.Column("mailbox_id", sa.UUID(), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("message_key", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("inbound_message_id", sa.UUID(), nullable=True),
        sa.Column(
            "processed_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False
        ),
        sa.CheckConstraint(
            "outcome IN ('accepted', 'duplicate', 'oversized')",
            name=op.f("ck_imap_messages_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["imap_mailboxes.id"],
            name=op.f("fk_imap_messages_mailbox_id_imap_mailboxes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("mailbox_id", "uidvalidity", "uid", name=op.f("pk_imap_messages")),
    )
    op.create_index(
        "ix_imap_messages_mailbox_id_message_key", "imap_messages", ["mailbox_id", "message_key"]
    )


def downgrade() -> None:
    op.drop_index("ix_imap_messages_mailbox_id_message_key", table_name="imap_messages")
    op.drop_table("imap_messages")
    op.drop_index("ix_imap_mailboxes_workspace_id_created_at", table_name="imap_mailboxes")
    op.drop_table("imap_mailboxes")
