from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base, Timestamps, UUIDPrimaryKey


class ContactImport(UUIDPrimaryKey, Timestamps, Base):
    """One import of a contacts file (CSV or JSON lines).

    `status`: queued -> running -> completed | failed; queued or running ->
    cancelled. Rows are processed in chunks of `chunk_rows`; each chunk's merge
    commits together with `rows_done` and the counters, so a run that dies
    resumes after the last committed chunk and never applies a row twice.
    The uploaded bytes live in `contact_import_chunks` (none for an import
    run from the CLI, which reads its local file)."""

    __tablename__ = "contact_imports"
    __table_args__ = (Index("ix_contact_imports_workspace_id_id", "workspace_id", "id"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), server_default="queued")
    # csv | jsonl
    format: Mapped[str] = mapped_column(String(8))
    # upsert | create_only | update_only
    mode: Mapped[str] = mapped_column(String(16))
    # summary | each: how the contacts it creates are announced (ImportEvents).
    events: Mapped[str] = mapped_column(String(8), server_default="summary")
    list_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("lists.id", ondelete="SET NULL"))
    # Column (or JSON key) -> field key, or "-" to ignore the column.
    mapping: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    filename: Mapped[str | None] = mapped_column(String(255))
    consent_text: Mapped[str | None] = mapped_column(Text)
    # Who started it: `key:<id>`, `cli`.
    actor: Mapped[str | None] = mapped_column(String(100))
    # What the file turned out to be: `utf-8`, `windows-1252` ...; `gzip` when compressed.
    encoding: Mapped[str | None] = mapped_column(String(32))
    delimiter: Mapped[str | None] = mapped_column(String(4))
    compression: Mapped[str | None] = mapped_column(String(8))
    bytes_total: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # Command-line imports: SHA-256 of the file's first MiB, recorded with
    # `bytes_total` (its size) at start, so `--resume` refuses another file.
    head_sha256: Mapped[str | None] = mapped_column(String(64))
    chunk_rows: Mapped[int] = mapped_column(Integer, server_default="20000")
    # An estimate (line count) until the import completes, then exact.
    rows_total: Mapped[int | None] = mapped_column(BigInteger)
    rows_done: Mapped[int] = mapped_column(BigInteger, server_default="0")
    created: Mapped[int] = mapped_column(BigInteger, server_default="0")
    updated: Mapped[int] = mapped_column(BigInteger, server_default="0")
    unchanged: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # Rows the mode left alone: existing contacts in create_only, unknown ones in update_only.
    skipped: Mapped[int] = mapped_column(BigInteger, server_default="0")
    rejected: Mapped[int] = mapped_column(BigInteger, server_default="0")
    subscribed: Mapped[int] = mapped_column(BigInteger, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class ContactImportChunk(Base):
    """About 1 MB of the uploaded file, in order, so any worker on any machine
    can read the upload back from the database."""

    __tablename__ = "contact_import_chunks"
    __table_args__ = (PrimaryKeyConstraint("import_id", "seq"),)

    import_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contact_imports.id", ondelete="CASCADE")
    )
    seq: Mapped[int] = mapped_column(Integer)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ContactImportError(Base):
    """One rejected row (or a problem with the whole file, row 0)."""

    __tablename__ = "contact_import_errors"
    __table_args__ = (Index("ix_contact_import_errors_import_id_row", "import_id", "row"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    import_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contact_imports.id", ondelete="CASCADE")
    )
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    row: Mapped[int] = mapped_column(BigInteger)
    field: Mapped[str | None] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    # The raw value, truncated to 200 characters.
    value: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
