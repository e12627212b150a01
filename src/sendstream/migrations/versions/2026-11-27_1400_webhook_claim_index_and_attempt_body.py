"""The webhook claim's index ends with the delivery id, so its
`ORDER BY next_attempt_at, id LIMIT n` stops after n entries instead of
reading and sorting every delivery a fan-out wrote with the same
`next_attempt_at` (500 per endpoint per fan-out batch).

An attempt no longer stores its request body when it is the delivery's
payload (NULL), as it is for every attempt the sender makes: the payload
was written twice per attempt.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-27 14:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _due(columns: list[str]) -> None:
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        columns,
        postgresql_where=sa.text("status = 'pending'"),
    )


def upgrade() -> None:
    _due(["endpoint_id", "next_attempt_at", "id"])
    op.alter_column("webhook_attempts", "request_body", nullable=True)


def downgrade() -> None:
    op.execute(
        "UPDATE webhook_attempts a SET request_body = d.payload::text "
        "FROM webhook_deliveries d WHERE d.id = a.delivery_id AND a.request_body IS NULL"
    )
    op.alter_column("webhook_attempts", "request_body", nullable=False)
    _due(["endpoint_id", "next_attempt_at"])
