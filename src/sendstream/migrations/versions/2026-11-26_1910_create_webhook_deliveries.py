"""Webhook deliveries (one request body owed to one endpoint, with its
retry state) and attempts (every HTTP request made and what came back), and
the `webhooks` outbox consumer that fans events out into deliveries.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26 19:10:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "'pending', 'delivering', 'succeeded', 'failed', 'cancelled'"


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("endpoint_id", sa.UUID(), nullable=False),
        sa.Column("webhook_id", sa.String(length=100, collation="C"), nullable=False),
        sa.Column(
            "event_positions",
            postgresql.ARRAY(sa.BigInteger()),
            server_default="{}",
            nullable=False,
        ),
        sa.Column("event_type", sa.String(length=100, collation="C"), nullable=False),
        sa.Column("ordering_key", sa.String(length=64, collation="C"), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False
        ),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.CheckConstraint(f"status IN ({STATUSES})", name=op.f("ck_webhook_deliveries_status")),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["endpoint_id", "next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_delivering",
        "webhook_deliveries",
        ["endpoint_id", "lease_until"],
        postgresql_where=sa.text("status = 'delivering'"),
    )
    op.create_index(
        "ix_webhook_deliveries_ordering",
        "webhook_deliveries",
        ["endpoint_id", "ordering_key", "id"],
        postgresql_where=sa.text(
            "ordering_key IS NOT NULL AND status IN ('pending', 'delivering')"
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_endpoint_id_id", "webhook_deliveries", ["endpoint_id", "id"]
    )
    op.create_index(
        "ix_webhook_deliveries_finished",
        "webhook_deliveries",
        ["completed_at"],
        postgresql_where=sa.text("status IN ('succeeded', 'failed', 'cancelled')"),
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("endpoint_id", sa.UUID(), nullable=False),
        sa.Column(
            "attempted_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False
        ),
        sa.Column(
            "request_headers",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
        sa.Column("request_body", sa.Text(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("latency_ms", sa.REAL(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_attempts_endpoint_id_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index("ix_webhook_attempts_endpoint_id_id", "webhook_attempts", ["endpoint_id", "id"])
    op.create_index("ix_webhook_attempts_delivery_id", "webhook_attempts", ["delivery_id"])
    op.create_index(
        "ix_webhook_attempts_endpoint_id_attempted_at",
        "webhook_attempts",
        ["endpoint_id", "attempted_at"],
    )
    # The fan-out consumer starts at the beginning: an endpoint only gets
    # events that happened after it was created, so history costs one scan.
    op.execute(
        "INSERT INTO event_consumers (name, types) VALUES ('webhooks', '[]') "
        "ON CONFLICT (name) DO NOTHING"
    )


def downgrade() -> None:
    op.execute("DELETE FROM event_consumers WHERE name = 'webhooks'")
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
