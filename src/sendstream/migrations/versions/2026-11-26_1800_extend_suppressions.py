"""The suppression list becomes an API: entries keep the address as it was
suppressed (NULL for `erased`, which keeps only the keyed hash), whole
domains (`domain` set; the key is the keyed hash of `@domain`), how each
came (`source`) and a note; reasons and sources are checked; an index pages
the list newest first.

Existing entries keep their reason; their source becomes `erasure` for
`erased` and `manual` for the others.

contact_imports.head_sha256: SHA-256 of a command-line import's first MiB,
recorded with its size at start, so `sendstream contacts import --resume`
continues only with the same file.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 18:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REASONS = "'unsubscribed', 'bounced', 'complained', 'manual', 'erased'"
SOURCES = "'api', 'cli', 'import', 'unsubscribe_link', 'bounce', 'complaint', 'erasure', 'manual'"


def upgrade() -> None:
    op.add_column("suppressions", sa.Column("address", sa.String(length=320), nullable=True))
    op.add_column("suppressions", sa.Column("domain", sa.String(length=255), nullable=True))
    op.add_column("suppressions", sa.Column("source", sa.String(length=32), nullable=True))
    op.add_column("suppressions", sa.Column("note", sa.Text(), nullable=True))
    op.execute(
        "UPDATE suppressions SET source = CASE reason WHEN 'erased' THEN 'erasure' "
        "ELSE 'manual' END"
    )
    op.alter_column("suppressions", "source", nullable=False)
    op.create_check_constraint(
        op.f("ck_suppressions_reason"), "suppressions", f"reason IN ({REASONS})"
    )
    op.create_check_constraint(
        op.f("ck_suppressions_source"), "suppressions", f"source IN ({SOURCES})"
    )
    op.create_check_constraint(
        op.f("ck_suppressions_address_or_domain"),
        "suppressions",
        "address IS NULL OR domain IS NULL",
    )
    op.create_check_constraint(
        op.f("ck_suppressions_erased_keeps_only_the_hash"),
        "suppressions",
        "reason <> 'erased' OR (address IS NULL AND domain IS NULL AND note IS NULL)",
    )
    op.create_index(
        op.f("ix_suppressions_workspace_id_created_at_address_hash"),
        "suppressions",
        ["workspace_id", "created_at", "address_hash"],
        unique=False,
    )
    op.add_column("contact_imports", sa.Column("head_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("contact_imports", "head_sha256")
    op.drop_index(
        op.f("ix_suppressions_workspace_id_created_at_address_hash"), table_name="suppressions"
    )
    for name in ("erased_keeps_only_the_hash", "address_or_domain", "source", "reason"):
        op.drop_constraint(op.f(f"ck_suppressions_{name}"), "suppressions", type_="check")
    # Domain entries have no meaning for the old list (addresses only).
    op.execute("DELETE FROM suppressions WHERE domain IS NOT NULL")
    for column in ("note", "source", "domain", "address"):
        op.drop_column("suppressions", column)
