"""Inbound routing: a workspace's inbound domains and routes, and the parsed
inbound mail delivered to webhooks as `inbound.received`.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-27 15:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now() -> sa.TextClause:
    return sa.text("now()")


def _workspace_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["workspace_id"],
        ["workspaces.id"],
        name=op.f(f"fk_{table}_workspace_id_workspaces"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "inbound_domains",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("check_results", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'verified', 'failed')", name=op.f("ck_inbound_domains_status")
        ),
        _workspace_fk("inbound_domains"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_domains")),
    )
    op.create_index("ix_inbound_domains_name", "inbound_domains", ["name"], unique=True)
    op.create_index("ix_inbound_domains_workspace_id_id", "inbound_domains", ["workspace_id", "id"])

    op.create_table(
        "inbound_routes",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("domain_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("pattern", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="100", nullable=False),
        sa.Column("action", sa.String(length=16), server_default="webhook", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.CheckConstraint("action IN ('webhook', 'drop')", name=op.f("ck_inbound_routes_action")),
        sa.CheckConstraint(
            "priority BETWEEN 0 AND 1000000", name=op.f("ck_inbound_routes_priority")
        ),
        _workspace_fk("inbound_routes"),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["inbound_domains.id"],
            name=op.f("fk_inbound_routes_domain_id_inbound_domains"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_routes")),
    )
    op.create_index(
        "ix_inbound_routes_domain_id_priority", "inbound_routes", ["domain_id", "priority"]
    )
    op.create_index("ix_inbound_routes_workspace_id_id", "inbound_routes", ["workspace_id", "id"])

    jsonb = postgresql.JSONB(astext_type=sa.Text())
    op.create_table(
        "inbound_emails",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("inbound_message_id", sa.UUID(), nullable=True),
        sa.Column("route_id", sa.UUID(), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("mail_from", sa.String(length=512), nullable=True),
        sa.Column("recipients", jsonb, nullable=False),
        sa.Column("from_address", sa.Text(), nullable=True),
        sa.Column("from_name", sa.Text(), nullable=True),
        sa.Column("to_addresses", jsonb, nullable=False),
        sa.Column("cc_addresses", jsonb, nullable=False),
        sa.Column("reply_to", jsonb, nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("message_id_header", sa.Text(), nullable=True),
        sa.Column("text_body", sa.Text(), nullable=True),
        sa.Column("html_body", sa.Text(), nullable=True),
        sa.Column("text_truncated", sa.Boolean(), nullable=False),
        sa.Column("html_truncated", sa.Boolean(), nullable=False),
        sa.Column("headers", jsonb, nullable=False),
        sa.Column("spf", sa.String(length=16), nullable=False),
        sa.Column("dkim", sa.String(length=16), nullable=False),
        sa.Column("dmarc", sa.String(length=16), nullable=False),
        sa.Column("auth_details", jsonb, nullable=False),
        sa.Column("auto_submitted", sa.Boolean(), nullable=False),
        sa.Column("in_reply_to_message_id", sa.UUID(), nullable=True),
        sa.Column("in_reply_to_contact_id", sa.UUID(), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("notes", jsonb, nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        _workspace_fk("inbound_emails"),
        sa.ForeignKeyConstraint(
            ["inbound_message_id"],
            ["inbound_messages.id"],
            name=op.f("fk_inbound_emails_inbound_message_id_inbound_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["route_id"],
            ["inbound_routes.id"],
            name=op.f("fk_inbound_emails_route_id_inbound_routes"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_emails")),
    )
    op.create_index(
        "ix_inbound_emails_inbound_message_id",
        "inbound_emails",
        ["inbound_message_id"],
        unique=True,
    )
    op.create_index("ix_inbound_emails_workspace_id_id", "inbound_emails", ["workspace_id", "id"])
    op.create_index(
        "ix_inbound_emails_workspace_id_in_reply_to_message_id",
        "inbound_emails",
        ["workspace_id", "in_reply_to_message_id"],
    )

    op.create_table(
        "inbound_attachments",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("inbound_email_id", sa.UUID(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("filename", sa.Text(), nullable=True),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("content_id", sa.Text(), nullable=True),
        sa.Column("disposition", sa.String(length=16), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("omitted", sa.Boolean(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        _workspace_fk("inbound_attachments"),
        sa.ForeignKeyConstraint(
            ["inbound_email_id"],
            ["inbound_emails.id"],
            name=op.f("fk_inbound_attachments_inbound_email_id_inbound_emails"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_attachments")),
    )
    op.create_index(
        "ix_inbound_attachments_inbound_email_id_position",
        "inbound_attachments",
        ["inbound_email_id", "position"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_inbound_attachments_inbound_email_id_position", table_name="inbound_attachments"
    )
    op.drop_table("inbound_attachments")
    op.drop_index(
        "ix_inbound_emails_workspace_id_in_reply_to_message_id", table_name="inbound_emails"
    )
    op.drop_index("ix_inbound_emails_workspace_id_id", table_name="inbound_emails")
    op.drop_index("ix_inbound_emails_inbound_message_id", table_name="inbound_emails")
    op.drop_table("inbound_emails")
    op.drop_index("ix_inbound_routes_workspace_id_id", table_name="inbound_routes")
    op.drop_index("ix_inbound_routes_domain_id_priority", table_name="inbound_routes")
    op.drop_table("inbound_routes")
    op.drop_index("ix_inbound_domains_workspace_id_id", table_name="inbound_domains")
    op.drop_index("ix_inbound_domains_name", table_name="inbound_domains")
    op.drop_table("inbound_domains")
