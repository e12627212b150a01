"""Webhook endpoints: where a workspace's events are delivered over HTTP,
with their signing secrets (encrypted at rest, a previous one kept while a
rotation overlaps), the event types and filters they want, and how they are
delivered (FIFO, concurrency, batching).

workspaces.webhooks_allow_private_addresses: the per-workspace exception to
the SSRF rule (endpoints on loopback and private networks), off by default.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26 19:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "workspaces",
        sa.Column(
            "webhooks_allow_private_addresses",
            sa.Boolean(),
            server_default=sa.text("false"),
            nullable=False,
        ),
    )
    op.create_table(
        "webhook_endpoints",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("event_types", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column(
            "filters",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("headers_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("secret_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("previous_secret_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("signature_scheme", sa.String(length=16), server_default="v1", nullable=False),
        sa.Column("ed25519_private_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("fifo", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("max_concurrency", sa.Integer(), server_default="10", nullable=False),
        sa.Column("batch_max_events", sa.Integer(), nullable=True),
        sa.Column("batch_window_ms", sa.Integer(), server_default="1000", nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "signature_scheme IN ('v1', 'v1a', 'v1,v1a')",
            name=op.f("ck_webhook_endpoints_signature_scheme"),
        ),
        sa.CheckConstraint(
            "max_concurrency BETWEEN 1 AND 100", name=op.f("ck_webhook_endpoints_max_concurrency")
        ),
        sa.CheckConstraint(
            "batch_max_events IS NULL OR batch_max_events BETWEEN 1 AND 1000",
            name=op.f("ck_webhook_endpoints_batch_max_events"),
        ),
        sa.CheckConstraint(
            "batch_window_ms BETWEEN 0 AND 60000", name=op.f("ck_webhook_endpoints_batch_window_ms")
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_webhook_endpoints_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_index(
        "ix_webhook_endpoints_workspace_id_created_at",
        "webhook_endpoints",
        ["workspace_id", "created_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_endpoints_workspace_id_created_at", table_name="webhook_endpoints")
    op.drop_table("webhook_endpoints")
    op.drop_column("workspaces", "webhooks_allow_private_addresses")
