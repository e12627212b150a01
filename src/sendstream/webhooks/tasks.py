"""Webhook housekeeping run by every worker (core.jobs `cleanup`)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.jobs.registry import cleanup
from sendstream.core.settings import get_settings

# Deliveries removed per run (their attempts go with them, ON DELETE CASCADE).
PRUNE_SLICE = 5_000

_PRUNE = text(
    """
    DELETE FROM webhook_deliveries
    WHERE id IN (
        SELECT id FROM webhook_deliveries
        WHERE status IN ('succeeded', 'failed', 'cancelled')
          AND completed_at < now() - make_interval(secs => :seconds)
        LIMIT :slice
    )
    """
)


@cleanup("webhooks.finished_deliveries")
async def prune_finished_deliveries(session: AsyncSession) -> int:
    """Finished deliveries past `webhooks.retention_days`, with their attempts."""
    seconds = get_settings().webhooks.retention_days * 86_400
    result = await session.execute(_PRUNE, {"seconds": seconds, "slice": PRUNE_SLICE})
    return int(result.rowcount)  # type: ignore[attr-defined]
