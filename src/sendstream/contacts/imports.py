"""Contact imports: start one (API upload or CLI file), run it chunk by
chunk, report on it.

A run reads the file once to learn its encoding (and the rows to expect),
then streams it: a thread checks the next chunk of rows (`imports_parse`)
while the database merges the current ones (`imports_merge`), so Python and
PostgreSQL work at the same time and memory holds three chunks at most.

Chunks merge on two connections (the caller's session and a sibling on the
same engine), alternately: chunk k+1 does its heavy part (staging, the
contact upsert, building its events) while chunk k finishes. Each chunk
commits its merge, its events, its rejected rows and the progress counters
together, and chunks commit strictly in file order: a chunk locks the
import row, writes its events (the event counter's row lock, held to the
commit) and commits only after the chunk before it committed. So progress
stays one committed row offset (`rows_done`), and event positions stay in
commit order. A run that dies resumes after the last committed chunk: chunk
boundaries are fixed by `chunk_rows`, the rows of committed chunks are read
again only to remember their addresses (for duplicate detection), and the
row lock plus the `rows_done` check make a second runner skip, never repeat,
a chunk (a chunk merged ahead by a runner that then finds it was overtaken
is rolled back).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, Final

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from sendstream.contacts.errors import (
    ImportFinished,
    ImportNotFound,
    InvalidImportFile,
    ListNotFound,
)
from sendstream.contacts.import_repository import import_repository
from sendstream.contacts.imports_merge import (
    MergeCounts,
    MergeOptions,
    any_erased,
    copy_errors,
    erased_among,
    merge_chunk,
    write_staged_events,
)
from sendstream.contacts.imports_parse import (
    Chunk,
    Detected,
    ImportEvents,
    ImportFileError,
    ImportFormat,
    ImportMode,
    RowError,
    RowReader,
    check_mapping,
    copy_text,
    describe,
    detect,
    open_text,
)
from sendstream.contacts.suppression import HASH_PURPOSE
from sendstream.core.errors import InvalidInput
from sendstream.core.ids import uuid7
from sendstream.core.jobs import enqueue
from sendstream.core.keys import subkey
from sendstream.core.outbox import emit
from sendstream.core.pagination import PageParams, encode_cursor
from sendstream.models.contact_import import ContactImport

JOB_KIND: Final = "contacts.import"
PARSE_SWITCH_INTERVAL: Final = 0.0005
DEFAULT_CHUNK_ROWS: Final = 20_000
# Connections a run merges chunks on: PostgreSQL runs one statement on one
# core, and the merge is what bounds an import.
LANES: Final = 2
FINISHED: Final = frozenset({"completed", "failed", "cancelled"})
ERASED_MESSAGE: Final = (
    "this address was erased at the person's request; only an explicit new opt-in "
    "(through the API) can bring it back, never an import"
)

Commit = Callable[[], Awaitable[None]]
Progress = Callable[[ContactImport], None]


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """`["Mail=email", "Notes=-"]` -> {"Mail": "email", "Notes": "-"}."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        column, sep, target = pair.partition("=")
        if not sep or not column.strip() or not target.strip():
            raise InvalidImportFile(
                f"map: {pair!r} is not column=field (or column=- to ignore the column)"
            )
        mapping[column.strip()] = target.strip()
    return mapping


def _next(chunks: Generator[Chunk, None, None]) -> Chunk | ImportFileError | None:
    """One step of the parser, run in a worker thread."""
    try:
        chunk = next(chunks, None)
    except ImportFileError as exc:
        return exc
    if chunk is not None:
        chunk.copy_data = copy_text(chunk.rows)
        chunk.copied = len(chunk.rows)
        if not chunk.hashes:
            # Only the erasure check needs the rows again: the COPY text is
            # a tenth of their size in memory.
            chunk.rows = []
    return chunk


def _sibling(session: AsyncSession) -> AsyncSession | None:
    """A second session on the engine `session` uses (None when it is bound
    to something else, such as one connection)."""
    bind = session.bind
    if not isinstance(bind, AsyncEngine):
        return None
    return AsyncSession(
        bind=bind, sync_session_class=type(session.sync_session), expire_on_commit=False
    )


@dataclass
class _Lane:
    """A session that merges every other chunk, and its last chunk's task."""

    session: AsyncSession
    commit: Commit
    task: asyncio.Task[ContactImport | None] | None = None


class ImportService:
    # --- starting

    async def _prepare(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        source: IO[bytes],
        filename: str | None,
        format: ImportFormat | None,
        mode: ImportMode,
        events: ImportEvents,
        list_ref: str | uuid.UUID | None,
        mapping: Mapping[str, str],
        consent_text: str | None,
        actor: str | None,
    ) -> ContactImport:
        """Check what can be checked before anything is written (the list,
        the mapping, the header and the first row) and add the import row."""
        list_id: uuid.UUID | None = None
        if list_ref is not None:
            contact_list = await import_repository.find_list(session, workspace_id, list_ref)
            if contact_list is None:
                raise ListNotFound(list_ref)
            list_id = contact_list.id
        fields = await import_repository.fields(session, workspace_id)
        try:
            check_mapping(mapping, fields)
            detected = await asyncio.to_thread(
                self._look, source, filename, format, fields, mapping
            )
        except ImportFileError as exc:
            raise InvalidImportFile(f"{filename or 'file'}: {exc}") from None
        contact_import = ContactImport(
            id=uuid7(),
            workspace_id=workspace_id,
            status="queued",
            format=detected.format,
            mode=mode,
            events=events,
            list_id=list_id,
            mapping=dict(mapping),
            filename=(filename or None) and filename[:255],
            consent_text=consent_text,
            actor=actor,
            encoding=detected.encoding,
            delimiter=detected.delimiter,
            compression=detected.compression,
            chunk_rows=DEFAULT_CHUNK_ROWS,
        )
        import_repository.add(session, contact_import)
        await session.flush()
        # Server defaults (timestamps, counters) are read back now, not lazily.
        await session.refresh(contact_import)
        return contact_import

    @staticmethod
    def _look(
        source: IO[bytes],
        filename: str | None,
        format: ImportFormat | None,
        fields: Mapping[str, Any],
        mapping: Mapping[str, str],
    ) -> Detected:
        """A quick look at the first 64 KiB: header and first row."""
        detected = detect(source, filename=filename, format=format, full=False)
        text = open_text(source, detected)
        try:
            reader = RowReader(fields, mapping, chunk_rows=1)
            first = next(reader.read(text, detected), None)
            if first is not None and first.fatal:
                raise ImportFileError(first.fatal)
        except UnicodeDecodeError as exc:
            raise ImportFileError(f"the file is not valid {exc.encoding}: {exc.reason}") from None
        finally:
            with contextlib.suppress(ValueError):
                text.detach()
            source.seek(0)
        return detected

    async def start_upload(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        upload: IO[bytes],
        filename: str | None,
        format: ImportFormat | None = None,
        mode: ImportMode = "upsert",
        events: ImportEvents = "summary",
        list_id: uuid.UUID | None = None,
        mapping: Mapping[str, str] | None = None,
        consent_text: str | None = None,
        actor: str | None = None,
    ) -> ContactImport:
        """Store the uploaded file in the database and queue the job that
        imports it; a worker on any machine can run it."""
        contact_import = await self._prepare(
            session,
            workspace_id,
            source=upload,
            filename=filename,
            format=format,
            mode=mode,
            events=events,
            list_ref=list_id,
            mapping=mapping or {},
            consent_text=consent_text,
            actor=actor,
        )
        contact_import.bytes_total = await import_repository.store_upload(
            session, contact_import, upload
        )
        contact_import.job_id = await enqueue(
            session,
            JOB_KIND,
            {"import_id": str(contact_import.id)},
            workspace_id=workspace_id,
            unique_key=f"{JOB_KIND}:{contact_import.id}",
        )
        contact_import.updated_at = utcnow()
        await session.flush()
        return contact_import

    async def start_local(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        source: IO[bytes],
        filename: str | None,
        format: ImportFormat | None = None,
        mode: ImportMode = "upsert",
        events: ImportEvents = "summary",
        list_ref: str | None = None,
        mapping: Mapping[str, str] | None = None,
        consent_text: str | None = None,
        actor: str | None = "cli",
    ) -> ContactImport:
        """An import the caller runs in-process from its own file (the CLI):
        the file is not copied into the database."""
        return await self._prepare(
            session,
            workspace_id,
            source=source,
            filename=filename,
            format=format,
            mode=mode,
            events=events,
            list_ref=list_ref,
            mapping=mapping or {},
            consent_text=consent_text,
            actor=actor,
        )

    # --- reading

    async def get_import(
        self, session: AsyncSession, workspace_id: uuid.UUID, import_id: uuid.UUID
    ) -> ContactImport:
        found = await import_repository.get(session, workspace_id, import_id)
        if found is None:
            raise ImportNotFound(import_id)
        return found

    async def list_imports(
        self, session: AsyncSession, workspace_id: uuid.UUID, page: PageParams
    ) -> tuple[list[ContactImport], str | None]:
        before: uuid.UUID | None = None
        cursor = page.cursor
        if cursor is not None:
            try:
                before = uuid.UUID(str(cursor.get("id")))
            except ValueError:
                raise InvalidInput(
                    "cursor: not a cursor this list issued; pass back `next_cursor` unchanged.",
                    code="invalid_cursor",
                ) from None
        rows = list(
            await import_repository.page(session, workspace_id, before=before, limit=page.limit + 1)
        )
        next_cursor = None
        if len(rows) > page.limit:
            rows = rows[: page.limit]
            next_cursor = encode_cursor({"id": str(rows[-1].id)})
        return rows, next_cursor

    # --- cancelling

    async def cancel_import(
        self, session: AsyncSession, workspace_id: uuid.UUID, import_id: uuid.UUID
    ) -> ContactImport:
        """A queued import never starts; a running one stops before its next
        chunk (chunks already committed stay)."""
        contact_import = await self.get_import(session, workspace_id, import_id)
        locked = await import_repository.lock(session, contact_import.id) or contact_import
        if locked.status in FINISHED:
            raise ImportFinished(locked.id, locked.status)
        locked.status = "cancelled"
        locked.finished_at = utcnow()
        locked.updated_at = utcnow()
        await session.flush()
        return locked

    # --- running

    async def download_upload(
        self, session: AsyncSession, import_id: uuid.UUID, into: IO[bytes]
    ) -> int:
        written = await import_repository.read_upload(session, import_id, into)
        into.seek(0)
        return written

    async def run_import(
        self,
        session: AsyncSession,
        import_id: uuid.UUID,
        source: IO[bytes],
        *,
        commit: Commit,
        progress: Progress | None = None,
        lanes: int = LANES,
    ) -> ContactImport | None:
        """Run (or resume) the import over `source`. Commits after each chunk
        (through `commit` for `session`; a sibling session on the same
        engine, which this opens, merges every other chunk and commits its
        own); the final state is left for the caller's commit."""
        contact_import = await import_repository.lock(session, import_id)
        if contact_import is None or contact_import.status in FINISHED:
            return contact_import
        contact_import.status = "running"
        contact_import.started_at = contact_import.started_at or utcnow()
        contact_import.updated_at = utcnow()
        await commit()

        workspace_id = contact_import.workspace_id
        fields = await import_repository.fields(session, workspace_id)
        try:
            detected = await asyncio.to_thread(
                detect,
                source,
                filename=contact_import.filename,
                format=contact_import.format,  # type: ignore[arg-type]
            )
        except ImportFileError as exc:
            return await self._fail(session, contact_import, 0, str(exc))
        contact_import.encoding = detected.encoding
        contact_import.delimiter = detected.delimiter
        contact_import.compression = detected.compression
        if detected.lines is not None and not contact_import.rows_total:
            header = 1 if detected.format == "csv" else 0
            contact_import.rows_total = max(detected.lines - header, 0)
        await commit()
        # Read now: a chunk that fails on `session` rolls it back, which
        # expires `contact_import` (its attributes would then load lazily).
        done_before = contact_import.rows_done
        mode, list_id = contact_import.mode, contact_import.list_id
        each_created = contact_import.events == "each"
        actor, consent_text = contact_import.actor, contact_import.consent_text
        defaults = {k: f.default for k, f in fields.items() if f.default is not None}

        hash_key = subkey(HASH_PURPOSE) if await any_erased(session, workspace_id) else None
        switch_interval = sys.getswitchinterval()
        # The parser thread is pure Python and holds the GIL; the event loop
        # needs it for every round trip of the merge. With the default 5 ms
        # switch interval each round trip waits for it (~20% of an import's
        # time); 0.5 ms keeps the connection busy. Restored afterwards.
        sys.setswitchinterval(min(switch_interval, PARSE_SWITCH_INTERVAL))
        reader = RowReader(fields, contact_import.mapping, contact_import.chunk_rows, hash_key)
        text = open_text(source, detected)
        chunks = reader.read(text, detected)
        pending: asyncio.Future[Chunk | ImportFileError | None] | None = asyncio.ensure_future(
            asyncio.to_thread(_next, chunks)
        )
        sibling = _sibling(session) if lanes > 1 else None
        pool = [_Lane(session, commit)]
        if sibling is not None:
            pool.append(_Lane(sibling, sibling.commit))
        previous: asyncio.Task[ContactImport | None] | None = None
        tasks: list[asyncio.Task[ContactImport | None]] = []
        fatal: Chunk | None = None
        stopped = False
        merged = 0
        try:
            while pending is not None:
                item = await pending
                pending = None
                if item is None:
                    break
                if isinstance(item, ImportFileError):
                    if tasks and await self._drain(tasks) is None:
                        return await import_repository.lock(session, import_id)
                    found = await import_repository.lock(session, import_id)
                    return await self._fail(session, found or contact_import, 0, str(item))
                if item.fatal is None:
                    # Read the next chunk while this one is merged.
                    pending = asyncio.ensure_future(asyncio.to_thread(_next, chunks))
                if item.last_row <= done_before and item.fatal is None:
                    continue  # committed by an earlier run
                # The custom fields are known once the header is read.
                options = MergeOptions(
                    workspace_id=workspace_id,
                    import_id=import_id,
                    mode=mode,
                    list_id=list_id,
                    actor=actor,
                    consent_text=consent_text,
                    fields=reader.stage_fields,
                    defaults=defaults,
                    each_created=each_created,
                )
                # A file error ends the file: its chunk's rows before the
                # error commit with the failure, in the caller's commit.
                lane = pool[0] if item.fatal is not None else pool[merged % len(pool)]
                merged += 1
                if lane.task is not None and await lane.task is None:
                    stopped = True  # cancelled, or another runner is ahead
                    break
                previous = lane.task = asyncio.create_task(
                    self._chunk(lane, item, options, previous, progress)
                )
                tasks.append(previous)
                if item.fatal is not None:
                    fatal = item
                    break
            last = await self._drain(tasks)
            if stopped or (previous is not None and last is None):
                return await import_repository.lock(session, import_id)
        except BaseException as exc:
            # No chunk is left running on a session: on an error the others
            # end by themselves (a chunk whose predecessor failed rolls back).
            if isinstance(exc, asyncio.CancelledError):
                for task in tasks:
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            if pending is not None:
                with contextlib.suppress(Exception):
                    await pending
            chunks.close()
            text.close()
            sys.setswitchinterval(switch_interval)
            if sibling is not None:
                await sibling.close()
        final = await import_repository.lock(session, import_id)
        if final is None or final.status != "running":
            return final
        if fatal is not None:
            return await self._fail(session, final, fatal.last_row + 1, fatal.fatal or "")
        final.status = "completed"
        final.rows_total = final.rows_done
        final.finished_at = utcnow()
        final.updated_at = utcnow()
        _announce(session, final)
        await session.flush()
        if progress is not None:
            progress(final)
        return final

    @staticmethod
    async def _drain(
        tasks: list[asyncio.Task[ContactImport | None]],
    ) -> ContactImport | None:
        """Wait for every chunk in flight; the last one's import (None when
        the run stopped). The first error, if any, is raised once all ended."""
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results[-1] if results else None  # type: ignore[return-value]

    async def _chunk(
        self,
        lane: _Lane,
        chunk: Chunk,
        options: MergeOptions,
        previous: asyncio.Task[ContactImport | None] | None,
        progress: Progress | None,
    ) -> ContactImport | None:
        """Merge `chunk` on `lane`, then, once the chunk before it committed,
        finish and commit it (a file error's chunk is left to the caller's
        commit). None when the run stops here."""
        session = lane.session
        try:
            counts, errors = await self._merge(session, chunk, options)
            if previous is not None and await previous is None:
                await session.rollback()
                return None
            applied = await self._apply(session, options.import_id, chunk, counts, errors)
        except BaseException:
            with contextlib.suppress(Exception):
                await session.rollback()
            raise
        if applied is None:
            await session.rollback()
            return None
        if chunk.fatal is None:
            await lane.commit()
            if progress is not None:
                progress(applied)
        return applied

    async def _merge(
        self, session: AsyncSession, chunk: Chunk, options: MergeOptions
    ) -> tuple[MergeCounts, list[RowError]]:
        """The heavy half of a chunk, before it takes any lock the chunk
        before it holds: erased addresses out, rows merged, events staged."""
        errors = chunk.errors
        copy_data = chunk.copy_data
        count = chunk.copied
        if chunk.hashes:
            erased = await erased_among(session, options.workspace_id, chunk.hashes)
            if erased:
                keep = []
                for row, address_hash in zip(chunk.rows, chunk.hashes, strict=True):
                    if address_hash in erased:
                        errors.append(RowError(row[0], "email", ERASED_MESSAGE, row[1]))
                    else:
                        keep.append(row)
                errors.sort(key=lambda e: e.row)
                copy_data = copy_text(keep)
                count = len(keep)
        if copy_data is None:
            copy_data = copy_text(chunk.rows)
            count = len(chunk.rows)
        counts = await merge_chunk(session, options, count, copy_data)
        if counts.rejected:
            errors = sorted([*errors, *counts.rejected], key=lambda e: e.row)
        return counts, errors

    async def _apply(
        self,
        session: AsyncSession,
        import_id: uuid.UUID,
        chunk: Chunk,
        counts: MergeCounts,
        errors: list[RowError],
    ) -> ContactImport | None:
        """The short half, in file order: check this runner still owns the
        next chunk, write the events and the rejected rows, count."""
        locked = await import_repository.lock(session, import_id)
        if locked is None or locked.status != "running":
            return None
        if locked.rows_done != chunk.first_row - 1:
            # Another runner took over and is elsewhere in the file.
            return None
        await write_staged_events(session, locked.workspace_id, counts)
        await copy_errors(session, locked.workspace_id, locked.id, errors)
        locked.rows_done = chunk.last_row
        locked.created += counts.created
        locked.updated += counts.updated
        locked.unchanged += counts.unchanged
        locked.skipped += counts.skipped
        locked.subscribed += counts.subscribed
        locked.rejected += len(errors)
        locked.updated_at = utcnow()
        await session.flush()
        return locked

    async def _fail(
        self, session: AsyncSession, contact_import: ContactImport, row: int, message: str
    ) -> ContactImport:
        locked = await import_repository.lock(session, contact_import.id) or contact_import
        locked.status = "failed"
        locked.error = message
        locked.finished_at = utcnow()
        locked.updated_at = utcnow()
        await import_repository.add_error(session, locked, row, None, message)
        _announce(session, locked)
        await session.flush()
        return locked


def _announce(session: AsyncSession, contact_import: ContactImport) -> None:
    """`contact_import.completed` / `.failed`: one event with the totals, for
    consumers that would rather sync an import as a whole than follow its
    per-contact events (which name the import)."""
    emit(
        session,
        contact_import.workspace_id,
        f"contact_import.{contact_import.status}",
        {
            "id": str(contact_import.id),
            "status": contact_import.status,
            "list_id": str(contact_import.list_id) if contact_import.list_id else None,
            "mode": contact_import.mode,
            "events": contact_import.events,
            "rows": contact_import.rows_done,
            "created": contact_import.created,
            "updated": contact_import.updated,
            "unchanged": contact_import.unchanged,
            "skipped": contact_import.skipped,
            "subscribed": contact_import.subscribed,
            "rejected": contact_import.rejected,
            "error": contact_import.error,
        },
        subject_type="contact_import",
        subject_id=contact_import.id,
    )


def summary(contact_import: ContactImport) -> str:
    """`CSV, utf-8, comma-separated`: how the file was read."""
    if contact_import.encoding is None:
        return contact_import.format.upper()
    return describe(
        Detected(
            contact_import.format,  # type: ignore[arg-type]
            contact_import.compression,
            contact_import.encoding,
            contact_import.delimiter,
            None,
        )
    )


import_service = ImportService()
