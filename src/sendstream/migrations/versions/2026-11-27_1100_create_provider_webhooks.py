"""Provider webhooks: ESP event receivers (SES, SendGrid, Postmark, Mailgun).

provider_webhooks: one receiver per workspace and provider account, its
verification material encrypted at rest, its SNS subscription and counters.
provider_webhook_receipts: what each receiver has seen (SNS MessageIds,
Mailgun tokens, event ids) within the providers' replay windows.
messages: an index on (workspace_id, message_id_header), since ESP events
name our message by its Message-ID header.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-27 11:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "provider_webhooks",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("config_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("subscription_topic_arn", sa.Text(), nullable=True),
        sa.Column("subscription_confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("applied_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("ignored_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("duplicate_count", sa.BigInteger(), server_default="0", nullable=False),
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
            "provider IN ('ses', 'sendgrid', 'postmark', 'mailgun')",
            name=op.f("ck_provider_webhooks_provider"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_provider_webhooks_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_webhooks")),
    )
    op.create_index(
        "ix_provider_webhooks_workspace_id_id", "provider_webhooks", ["workspace_id", "id"]
    )
    op.create_table(
        "provider_webhook_receipts",
        sa.Column("webhook_id", sa.UUID(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column(
            "seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["provider_webhooks.id"],
            name=op.f("fk_provider_webhook_receipts_webhook_id_provider_webhooks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_provider_webhook_receipts_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("webhook_id", "key", name=op.f("pk_provider_webhook_receipts")),
    )
    op.create_index(
        "ix_provider_webhook_receipts_webhook_id_seen_at",
        "provider_webhook_receipts",
        ["webhook_id", "seen_at"],
    )
    op.create_index(
        "ix_messages_workspace_id_message_id_header",
        "messages",
        ["workspace_id", "message_id_header"],
    )


def downgrade() -> None:
    op.drop_index("ix_messages_workspace_id_message_id_header", table_name="messages")
    op.drop_index(
        "ix_provider_webhook_receipts_webhook_id_seen_at", table_name="provider_webhook_receipts"
    )
    op.drop_table("provider_webhook_receipts")
    op.drop_index("ix_provider_webhooks_workspace_id_id", table_name="provider_webhooks")
    op.drop_table("provider_webhooks")
