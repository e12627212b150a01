"""Consent records: the append-only history of every change of consent.

Whoever changes a global or per-list state (API, import, form, unsubscribe
link, confirmation, CRM sync, bounce handling) calls `record_consent` in the
same transaction, with the context the change came with. Records are never
updated; erasure is the only thing that deletes them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final, Literal, get_args

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.models.consent import ConsentRecord

ConsentSource = Literal[
    "api",
    "import",
    "form",
    "unsubscribe_link",
    "confirmation",
    "crm_sync",
    "bounce",
    "complaint",
    "admin",
]
CONSENT_SOURCES: Final = get_args(ConsentSource)


@dataclass(frozen=True)
class ConsentContext:
    """How a change of consent came about; stored on its record."""

    source: ConsentSource
    # Who made the change: `key:<prefix>`, `user:<id>`, `cli`, `system`.
    actor: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    # The words the person agreed to, as shown to them.
    text: str | None = None


def consent_row(
    *,
    workspace_id: uuid.UUID,
    contact_id: uuid.UUID,
    list_id: uuid.UUID | None,
    status: str,
    previous_status: str | None,
    context: ConsentContext,
) -> dict[str, object]:
    """One consent record as a row, for writers that insert many at once
    (`record_consents`)."""
    return {
        "workspace_id": workspace_id,
        "contact_id": contact_id,
        "list_id": list_id,
        "status": status,
        "previous_status": previous_status,
        "source": context.source,
        "actor": context.actor,
        "ip": context.ip,
        "user_agent": context.user_agent[:1000] if context.user_agent else None,
        "consent_text": context.text,
    }


async def record_consents(session: AsyncSession, rows: list[dict[str, object]]) -> None:
    """Insert many consent records in one round trip."""
    if rows:
        await session.execute(insert(ConsentRecord), rows)


def record_consent(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    contact_id: uuid.UUID,
    list_id: uuid.UUID | None,
    status: str,
    previous_status: str | None,
    context: ConsentContext,
) -> None:
    """Add one consent record to the session's unit of work."""
    session.add(
        ConsentRecord(
            **consent_row(
                workspace_id=workspace_id,
                contact_id=contact_id,
                list_id=list_id,
                status=status,
                previous_status=previous_status,
                context=context,
            )
        )
    )
