"""The `bounces.process` and `inbound.process` jobs and the inbound mailbox's
housekeeping.

`inbound.process` takes mail the MX routed to a workspace's inbound domain
and turns it into an inbound email and `inbound.received` (inbound_mail.py),
with the same failure handling as `bounces.process`, described here:

`bounces.process` takes an inbound message id, classifies the mail and acts
on it in the job's transaction (intake.py). A database or network failure
is retried by the queue (the work rolls back whole); any other exception
means this mail cannot be handled by this code: the work is rolled back
and the mail kept as `failed`, with the error, for inspection (a bug fixed
later can be re-run by setting it back to `received` and queueing the job).
"""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.bounces.intake import PROCESS, PROCESS_ROUTED, inbound_service
from sendstream.core.jobs import Cancel, JobContext, job
from sendstream.core.jobs.registry import cleanup
from sendstream.core.settings import get_settings

log = structlog.get_logger("sendstream.bounces.tasks")

# Inbound rows deleted per cleanup run.
PRUNE_SLICE = 1_000
# Errors worth another try: the database (down, or its pool busy) or the
# network, not the mail.
_TRANSIENT = (OperationalError, InterfaceError, PoolTimeout, OSError, TimeoutError)


def _is_transient(exc: Exception) -> bool:
    if isinstance(exc, _TRANSIENT):
        return True
    # A connection dropped mid-statement surfaces as a DBAPIError flagged so.
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


@job(PROCESS, max_attempts=10, timeout=600)
async def process_inbound(ctx: JobContext) -> None:
    try:
        inbound_id = uuid.UUID(str(ctx.job.payload["inbound_message_id"]))
    except (KeyError, ValueError):
        raise Cancel("payload has no valid 'inbound_message_id'") from None
    session = ctx.session
    try:
        status = await inbound_service.process(session, inbound_id)
    except IntegrityError:
        raise  # a concurrent run of the same mail: retried, it finds the work done
    except Exception as exc:
        if _is_transient(exc):
            raise
        log.exception("bounces.process_failed", inbound_message_id=str(inbound_id))
        await session.rollback()  # drops the half-done work and its events
        await inbound_service.fail(session, inbound_id, f"{type(exc).__name__}: {exc}")
        return
    log.info("bounces.processed", inbound_message_id=str(inbound_id), status=status)


@job(PROCESS_ROUTED, max_attempts=10, timeout=600)
async def process_routed_inbound(ctx: JobContext) -> None:
    try:
        inbound_id = uuid.UUID(str(ctx.job.payload["inbound_message_id"]))
    except (KeyError, ValueError):
        raise Cancel("payload has no valid 'inbound_message_id'") from None
    session = ctx.session
    try:
        status = await inbound_service.process_routed(session, inbound_id)
    except IntegrityError:
        raise  # a concurrent run of the same mail: retried, it finds the work done
    except Exception as exc:
        if _is_transient(exc):
            raise
        log.exception("inbound.process_failed", inbound_message_id=str(inbound_id))
        await session.rollback()  # drops the half-done work and its events
        await inbound_service.fail(session, inbound_id, f"{type(exc).__name__}: {exc}")
        return
    log.info("inbound.processed", inbound_message_id=str(inbound_id), status=status)


@cleanup("bounces.inbound_messages")
async def prune_inbound_messages(session: AsyncSession) -> int:
    """Finished inbound mail past `bounces.inbound_retention_days` (their
    bounce records stay, pointing nowhere)."""
    seconds = get_settings().bounces.inbound_retention_days * 86_400
    return await inbound_service.prune(session, older_than_seconds=seconds, limit=PRUNE_SLICE)
