"""Command-line imports that outlive their process.

A CLI import runs in the `sendstream contacts import` process, with no job:
if that process dies, nothing picks the import up and it stays `running`.
It is shown as `stalled` (`is_stalled`) once it has made no committed
progress for `imports.stalled_after_minutes`, and `sendstream contacts
import FILE --resume ID` continues it after its last committed row (the
runner resumes after `rows_done`; see `imports`).

Resuming reads the file again from the start, so it must be the same file:
its size and the SHA-256 of its first MiB are recorded when the import
starts (`start_cli_import`) and compared before it resumes
(`resume_cli_import`). The options (mode, list, mapping ...) are those the
import started with; different ones given to the resuming command are
refused rather than silently ignored.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.contacts.errors import ImportFileChanged, ImportNotResumable, ResumeOptionsDiffer
from sendstream.contacts.import_repository import import_repository
from sendstream.contacts.imports import FINISHED, import_service
from sendstream.contacts.imports_detect import fingerprint
from sendstream.core.settings import Settings, get_settings
from sendstream.models.contact_import import ContactImport

# States in which a run is expected to make progress.
_UNDERWAY = frozenset({"queued", "running"})


def is_stalled(
    contact_import: ContactImport,
    *,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> bool:
    """A command-line import (no job) that is queued or running and has not
    committed progress for `imports.stalled_after_minutes`: its process most
    likely died. (An uploaded import has a job, whose lease hands it to
    another worker by itself.)"""
    if contact_import.status not in _UNDERWAY or contact_import.job_id is not None:
        return False
    minutes = (settings or get_settings()).imports.stalled_after_minutes
    now = now or datetime.now(UTC)
    return now - contact_import.updated_at > timedelta(minutes=minutes)


async def start_cli_import(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    source: IO[bytes],
    filename: str | None,
    **options: Any,
) -> ContactImport:
    """`import_service.start_local`, plus the file's fingerprint, recorded in
    the same transaction as the import row."""
    started = await import_service.start_local(
        session, workspace_id, source=source, filename=filename, **options
    )
    found = await asyncio.to_thread(fingerprint, source)
    started.bytes_total = found.size
    started.head_sha256 = found.head_sha256
    await session.flush()
    return started


async def resume_cli_import(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    import_id: uuid.UUID,
    source: IO[bytes],
    *,
    given: Mapping[str, Any],
) -> ContactImport:
    """The import to continue over `source`, once it is known to be a
    command-line import still underway, `source` is the file it started
    with, and `given` (option name -> value, only the options the command
    was given; `--list` by id or name) agrees with the options it started
    with."""
    contact_import = await import_service.get_import(session, workspace_id, import_id)
    if contact_import.status in FINISHED:
        raise ImportNotResumable(import_id, f"it already ended ({contact_import.status})")
    if contact_import.job_id is not None:
        raise ImportNotResumable(
            import_id,
            "it was uploaded through the API; a worker runs its job and, if that worker dies, "
            "another one resumes it by itself",
        )
    if contact_import.head_sha256 is None:
        raise ImportNotResumable(
            import_id, "no file fingerprint was recorded when it started; import the file again"
        )
    found = await asyncio.to_thread(fingerprint, source)
    if found.size != contact_import.bytes_total:
        raise ImportFileChanged(
            import_id, f"it has {found.size:,} bytes, that one had {contact_import.bytes_total:,}"
        )
    if found.head_sha256 != contact_import.head_sha256:
        raise ImportFileChanged(import_id, "its first MiB differs")
    differ = await _differing(session, contact_import, given)
    if differ:
        raise ResumeOptionsDiffer(import_id, differ)
    return contact_import


async def _differing(
    session: AsyncSession, contact_import: ContactImport, given: Mapping[str, Any]
) -> list[str]:
    recorded: dict[str, Any] = {
        "--mode": contact_import.mode,
        "--events": contact_import.events,
        "--format": contact_import.format,
        "--map": contact_import.mapping,
        "--consent-text": contact_import.consent_text,
    }
    differ = [name for name, value in given.items() if name in recorded and value != recorded[name]]
    if "--list" in given:
        found = await import_repository.find_list(
            session, contact_import.workspace_id, str(given["--list"])
        )
        if found is None or found.id != contact_import.list_id:
            differ.append("--list")
    return sorted(differ)
