"""Bounces: inbound mail accepted by the MX and what classifying it found.

inbound_messages: every mail received for the bounce domain (MX, IMAP ...),
stored whole before it is acknowledged; `bounces.process` classifies it.
bounce_records: one row per recipient verdict acted on, from any channel;
`dedup_key` makes acting on a verdict idempotent.

suppressions.source may also be `soft_bounce_policy` (an address suppressed
because its soft bounces reached `bounces.soft_bounce_limit`).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27 10:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INBOUND_STATUSES = "'received', 'processed', 'ignored', 'failed'"
SOURCES = "'api', 'cli', 'import', 'unsubscribe_link', 'bounce', 'complaint', 'erasure', 'manual'"
SOURCES_WITH_POLICY = f"{SOURCES}, 'soft_bounce_policy'"


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("mail_from", sa.String(length=512), nullable=True),
        sa.Column(
            "rcpt_to", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="received", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_inbound_messages_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_messages")),
        sa.CheckConstraint(
            f"status IN ({INBOUND_STATUSES})", name=op.f("ck_inbound_messages_status")
        ),
    )
    op.create_index(
        op.f("ix_inbound_messages_workspace_id_received_at"),
        "inbound_messages",
        ["workspace_id", "received_at"],
    )
    op.create_index("ix_inbound_messages_status", "inbound_messages", ["status", "received_at"])

    op.create_table(
        "bounce_records",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("message_id", sa.UUID(), nullable=True),
        sa.Column("inbound_message_id", sa.UUID(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=True),
        sa.Column("recipient_key", sa.String(length=320, collation="C"), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("hard", sa.Boolean(), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("diagnostic", sa.Text(), nullable=True),
        sa.Column("remote_mta", sa.String(length=255), nullable=True),
        sa.Column("feedback_type", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("dedup_key", sa.String(length=64, collation="C"), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_bounce_records_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_bounce_records_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["inbound_message_id"],
            ["inbound_messages.id"],
            name=op.f("fk_bounce_records_inbound_message_id_inbound_messages"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bounce_records")),
    )
    op.create_index(
        "uq_bounce_records_workspace_id_dedup_key",
        "bounce_records",
        ["workspace_id", "dedup_key"],
        unique=True,
    )
    op.create_index(
        op.f("ix_bounce_records_workspace_id_recipient_key_occurred_at"),
        "bounce_records",
        ["workspace_id", "recipient_key", "occurred_at"],
    )
    op.create_index(
        "ix_bounce_records_workspace_id_message_id",
        "bounce_records",
        ["workspace_id", "message_id"],
        postgresql_where=sa.text("message_id IS NOT NULL"),
    )
    op.create_index(
        op.f("ix_bounce_records_inbound_message_id"), "bounce_records", ["inbound_message_id"]
    )

    op.drop_constraint(op.f("ck_suppressions_source"), "suppressions", type_="check")
    op.create_check_constraint(
        op.f("ck_suppressions_source"), "suppressions", f"source IN ({SOURCES_WITH_POLICY})"
    )


def downgrade() -> None:
    # Entries the policy made stay, as plain bounce suppressions.
    op.execute("UPDATE suppressions SET source = 'bounce' WHERE source = 'soft_bounce_policy'")
    op.drop_constraint(op.f("ck_suppressions_source"), "suppressions", type_="check")
    op.create_check_constraint(
        op.f("ck_suppressions_source"), "suppressions", f"source IN ({SOURCES})"
    )
    op.drop_table("bounce_records")
    op.drop_table("inbound_messages")
