"""Sending domains: the domains a workspace sends from, their DKIM keys
(private keys encrypted at rest) and the state of their DNS verification.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 14:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sending_domains",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("dkim_selector", sa.String(length=63), nullable=False),
        sa.Column("dkim_private_key", sa.LargeBinary(), nullable=False),
        sa.Column("dkim_public_key", sa.Text(), nullable=False),
        sa.Column("ed25519_selector", sa.String(length=63), nullable=True),
        sa.Column("ed25519_private_key", sa.LargeBinary(), nullable=True),
        sa.Column("ed25519_public_key", sa.String(length=64), nullable=True),
        sa.Column("return_path_subdomain", sa.String(length=63), nullable=False),
        sa.Column("tracking_subdomain", sa.String(length=63), nullable=False),
        sa.Column("check_results", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
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
            "status IN ('pending', 'verified', 'failed')",
            name=op.f("ck_sending_domains_status"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_sending_domains_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sending_domains")),
        sa.UniqueConstraint(
            "workspace_id", "name", name=op.f("uq_sending_domains_workspace_id_name")
        ),
    )


def downgrade() -> None:
    op.drop_table("sending_domains")
