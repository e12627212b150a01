"""Reading contact import files: which column is which field, and each
row checked in Python before anything is written. What the file is
(encoding, delimiter, gzip) is decided in `imports_detect`; the JSON lines
reader is `imports_jsonl`; what a checked row is, in `imports_rows`. This
module keeps the names other modules import from it (see `__all__`).

The hot path (`RowReader._csv`) runs once per row of files with millions of
rows, so it does few Python operations a row: the csv module splits the line,
`normalize_address` takes its one-regex fast path, built-in columns are
stripped and length-checked inline, custom fields go through
`values.parse_text`, and the row leaves as one tuple of text ready for COPY
(custom field values as plain values, one column each, which the merge turns
into the JSON attributes; tags joined by a unit separator). No dict per row.

Row numbers count data rows from 1 (the header is not a row), for CSV and
JSON lines alike.
"""

from __future__ import annotations

import csv
import hmac
import re
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from math import isfinite
from typing import IO, Any, Final, Literal

from sendstream.contacts.addresses import InvalidAddress, normalize_address
from sendstream.contacts.imports_detect import (
    SAMPLE_BYTES,
    Detected,
    ImportFileError,
    ImportFormat,
    describe,
    detect,
    open_decompressed,
    open_text,
)
from sendstream.contacts.imports_jsonl import read_jsonl
from sendstream.contacts.imports_rows import (
    BUILTINS,
    CONTROL,
    ENCODE_JSON,
    IGNORE,
    JSON_KINDS,
    LOCALE_TAG,
    MAX_EXACT,
    MAX_EXTERNAL_ID_LENGTH,
    MAX_NAME_LENGTH,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    READ_ONLY,
    TAG_JOIN,
    ZONES,
    Chunk,
    FieldSpec,
    RowError,
    bad_text,
    check_mapping,
    clean_tags,
    copy_text,
    shown,
    target_of,
)
from sendstream.contacts.values import parse_text

# The names other modules import from here, wherever they are defined.
__all__ = [
    "BUILTINS",
    "IGNORE",
    "READ_ONLY",
    "SAMPLE_BYTES",
    "TAG_JOIN",
    "Chunk",
    "ColumnPlan",
    "Detected",
    "FieldSpec",
    "ImportEvents",
    "ImportFileError",
    "ImportFormat",
    "ImportMode",
    "RowError",
    "RowReader",
    "check_mapping",
    "copy_text",
    "describe",
    "detect",
    "open_decompressed",
    "open_text",
    "plan_columns",
    "shown",
]

ImportMode = Literal["upsert", "create_only", "update_only"]
# How an import announces the contacts it creates: together in
# `contact_import.completed` (summary) or one `contact.created` each (each).
ImportEvents = Literal["summary", "each"]

# Big enough for a 10 MB cell to be read and then rejected by its field's own
# limit, with a clear message, instead of failing the whole file.
CSV_FIELD_LIMIT: Final = 16 * 1024 * 1024
# A tags cell none of whose tags needs stripping or is refused for a character.
_TAG_PLAIN_BAD: Final = re.compile(r"[\x00-\x1f\x7f,\s]")
# Field types with few distinct values (enum, boolean): a cell's parsed
# value is remembered per column, up to this many distinct cells.
_MEMO_KINDS: Final = frozenset({"enum", "boolean"})
_MEMO_CELLS: Final = 1024
_UNSEEN: Final = object()

csv.field_size_limit(CSV_FIELD_LIMIT)


# --- which column is which field


@dataclass(frozen=True)
class ColumnPlan:
    """Where each target is: column indexes (CSV) or keys (JSON lines)."""

    columns: int
    email: int
    builtins: dict[str, int]
    customs: list[tuple[int, FieldSpec]]
    # JSON lines: source key -> target (builtin name or field key), "-" ignored.
    keys: dict[str, str]


def plan_columns(
    header: Sequence[str], mapping: Mapping[str, str], fields: Mapping[str, FieldSpec]
) -> ColumnPlan:
    """Match the header to fields. Unknown columns are an error naming every
    one of them, before any row is read."""
    check_mapping(mapping, fields)
    targets: dict[str, int] = {}
    unknown: list[str] = []
    for index, name in enumerate(header):
        target = target_of(name, mapping, fields)
        if target is None:
            unknown.append(name)
            continue
        if target == IGNORE:
            continue
        if target in targets:
            raise ImportFileError(
                f"columns {targets[target] + 1} ({header[targets[target]]!r}) and "
                f"{index + 1} ({name!r}) both map to {target!r}; map one of them to -"
            )
        targets[target] = index
    if unknown:
        listed = ", ".join(repr(u) for u in unknown)
        raise ImportFileError(
            f"unknown column(s) {listed}: declare them as fields under /v1/fields, map them "
            "to a field (`--map column=field`, or the `map` form field), or ignore them "
            "(`--map column=-`)"
        )
    if "email" not in targets:
        raise ImportFileError(
            "no email column: the header needs a column named email, or map one "
            "(`--map column=email`)"
        )
    email = targets.pop("email")
    builtins = {name: index for name, index in targets.items() if name in BUILTINS}
    customs = [(index, fields[name]) for name, index in targets.items() if name not in BUILTINS]
    return ColumnPlan(len(header), email, builtins, customs, {})


# --- rows


@dataclass
class RowReader:
    """Checks rows and groups them in chunks; keeps the addresses seen so far
    so a later row with the same address is rejected as a duplicate."""

    fields: Mapping[str, FieldSpec]
    mapping: Mapping[str, str]
    chunk_rows: int
    # When set: compute each row's address hash with this HMAC key, for the
    # erasure check (only workspaces that have erased addresses pay for it).
    hash_key: bytes | None = None
    # Hash of matching key -> the row that brought it. 64-bit hashes: a
    # million addresses take ~100 MB here instead of ~250 MB for the keys
    # themselves; a false "duplicate" needs a 64-bit collision (~1e-8 at 1M).
    seen: dict[int, int] = field(default_factory=dict)
    # The same for external ids (only rows that have one pay for it).
    seen_external: dict[int, int] = field(default_factory=dict)
    # The custom fields of each row tuple after the built-ins, in order; set
    # once the header (or, for JSON lines, the field list) is known.
    stage_fields: list[FieldSpec] = field(default_factory=list)

    def read(self, text: IO[str], detected: Detected) -> Generator[Chunk, None, None]:
        if detected.format == "jsonl":
            return read_jsonl(self, text)
        return self._csv(text, detected.delimiter or ",")

    def header(self, text: IO[str], delimiter: str) -> tuple[Any, ColumnPlan]:
        reader = csv.reader(text, delimiter=delimiter, strict=True)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise ImportFileError(f"the header row is not valid CSV: {exc}") from None
        if header is None or not any(h.strip() for h in header):
            raise ImportFileError("the file is empty")
        if header[0].startswith("\ufeff"):
            header[0] = header[0][1:]
        return reader, plan_columns(header, self.mapping, self.fields)

    def _csv(self, text: IO[str], delimiter: str) -> Generator[Chunk, None, None]:
        reader, plan = self.header(text, delimiter)
        self.stage_fields = [f for _, f in plan.customs]
        email_i = plan.email
        b = plan.builtins
        ext_i = b.get("external_id", -1)
        first_i = b.get("first_name", -1)
        last_i = b.get("last_name", -1)
        tz_i = b.get("timezone", -1)
        loc_i = b.get("locale", -1)
        tags_i = b.get("tags", -1)
        customs: list[tuple[int, str, str, Sequence[str] | None, dict[str, Any]]] = [
            (i, f.key, f.type, f.options, {}) for i, f in plan.customs
        ]
        width = plan.columns
        chunk_rows = self.chunk_rows
        seen = self.seen
        hash_key = self.hash_key
        chunk = Chunk(1, 0)
        rows = chunk.rows
        errors = chunk.errors
        hashes = chunk.hashes
        n = 0
        dumps = ENCODE_JSON
        while True:
            try:
                row = next(reader, None)
            except csv.Error as exc:
                chunk.fatal = (
                    f"row {n + 1} (line {reader.line_num} of the file) is not valid CSV: {exc}; "
                    "usually a quote that is opened and never closed. Rows before it were "
                    "imported; fix the file and import the rest."
                )
                chunk.last_row = n
                yield chunk
                return
            except UnicodeDecodeError as exc:
                chunk.fatal = f"row {n + 1}: the file is not valid {exc.encoding}: {exc.reason}"
                chunk.last_row = n
                yield chunk
                return
            if row is None:
                break
            n += 1
            if len(row) != width:
                if not row or (len(row) == 1 and not row[0].strip()):
                    pass  # a blank line
                else:
                    errors.append(
                        RowError(
                            n,
                            None,
                            f"has {len(row)} columns; the header has {width}",
                            shown(row[0] if row else None),
                        )
                    )
            else:
                raw = row[email_i]
                try:
                    address = normalize_address(raw)
                except InvalidAddress as exc:
                    errors.append(RowError(n, "email", f"not a valid address: {exc}", shown(raw)))
                    address = None
                if address is not None:
                    bad = None
                    ext = first = last = tz = loc = tags = None
                    if ext_i >= 0:
                        ext = row[ext_i].strip() or None
                        if ext is not None and (
                            len(ext) > MAX_EXTERNAL_ID_LENGTH or CONTROL.search(ext)
                        ):
                            bad = bad_text("external_id", ext, MAX_EXTERNAL_ID_LENGTH)
                    if first_i >= 0:
                        first = row[first_i].strip() or None
                        if first is not None and (
                            len(first) > MAX_NAME_LENGTH or CONTROL.search(first)
                        ):
                            bad = bad_text("first_name", first, MAX_NAME_LENGTH)
                    if last_i >= 0:
                        last = row[last_i].strip() or None
                        if last is not None and (
                            len(last) > MAX_NAME_LENGTH or CONTROL.search(last)
                        ):
                            bad = bad_text("last_name", last, MAX_NAME_LENGTH)
                    if tz_i >= 0:
                        tz = row[tz_i].strip() or None
                        if tz is not None and tz not in ZONES:
                            bad = RowError(
                                n,
                                "timezone",
                                "unknown time zone; use an IANA name such as Europe/Paris",
                                shown(tz),
                            )
                    if loc_i >= 0:
                        loc = row[loc_i].strip() or None
                        if loc is not None:
                            if len(loc) > 35 or not LOCALE_TAG.match(loc):
                                bad = RowError(
                                    n,
                                    "locale",
                                    "not a BCP 47 language tag (for example fr-FR)",
                                    shown(loc),
                                )
                            else:
                                loc = loc.replace("_", "-")
                    if tags_i >= 0:
                        cell = row[tags_i]
                        if cell.strip():
                            parts = cell.split(";")
                            if (
                                # Already clean (no blank, spaced, repeated,
                                # long or bad tag): as `clean_tags` would give it.
                                len(parts) <= MAX_TAGS
                                and not _TAG_PLAIN_BAD.search(cell)
                                and len(set(parts)) == len(parts)
                                and all(0 < len(t) <= MAX_TAG_LENGTH for t in parts)
                            ):
                                tags = TAG_JOIN.join(parts)
                            else:
                                tags, tag_error = clean_tags(parts)
                                if tag_error is not None:
                                    bad = RowError(n, "tags", tag_error, shown(cell))
                    values: list[Any] = []
                    if customs:
                        for index, key, kind, options, memo in customs:
                            cell = row[index]
                            if kind == "text":
                                value: Any = cell.strip()
                                if not value:
                                    values.append(None)
                                    continue
                                if len(value) > 10_000 or "\x00" in value:
                                    try:
                                        value = parse_text(kind, cell, options)
                                    except ValueError as exc:
                                        bad = RowError(n, key, str(exc), shown(cell))
                                        continue
                            elif kind == "number":
                                value = cell.strip()
                                if not value:
                                    values.append(None)
                                    continue
                                try:
                                    if "." in value or "," in value or "e" in value or "E" in value:
                                        value = float(value.replace(",", "."))
                                        if not isfinite(value):
                                            raise ValueError
                                    else:
                                        value = int(value)
                                        if not -MAX_EXACT <= value <= MAX_EXACT:
                                            raise ValueError
                                except ValueError:
                                    # The slow path words the error.
                                    try:
                                        value = parse_text(kind, cell, options)
                                    except ValueError as exc:
                                        bad = RowError(n, key, str(exc), shown(cell))
                                        continue
                            elif kind == "date":
                                # `values.parse_text`'s own rule, inline; the
                                # slow path words the error.
                                value = cell.strip()
                                if not value:
                                    values.append(None)
                                    continue
                                try:
                                    if len(value) != 10:
                                        raise ValueError
                                    value = date.fromisoformat(value).isoformat()
                                except ValueError:
                                    try:
                                        value = parse_text(kind, cell, options)
                                    except ValueError as exc:
                                        bad = RowError(n, key, str(exc), shown(cell))
                                        continue
                            elif kind in _MEMO_KINDS:
                                value = memo.get(cell, _UNSEEN)
                                if value is _UNSEEN:
                                    try:
                                        value = parse_text(kind, cell, options)
                                    except ValueError as exc:
                                        bad = RowError(n, key, str(exc), shown(cell))
                                        continue
                                    if len(memo) < _MEMO_CELLS:
                                        memo[cell] = value
                            else:
                                try:
                                    value = parse_text(kind, cell, options)
                                except ValueError as exc:
                                    bad = RowError(n, key, str(exc), shown(cell))
                                    continue
                                if value is not None and kind in JSON_KINDS:
                                    value = dumps(value)
                            values.append(value)
                    if bad is not None:
                        bad.row = n
                        errors.append(bad)
                    else:
                        key_hash = hash(address.key)
                        previous = seen.get(key_hash)
                        if previous is not None:
                            errors.append(
                                RowError(n, "email", f"duplicate of row {previous}", shown(raw))
                            )
                        elif ext is not None and (taken := self.external_taken(n, ext)):
                            errors.append(taken)
                        else:
                            seen[key_hash] = n
                            rows.append(
                                (n, address.email, address.key, ext, first, last, tz, loc,
                                 tags, *values)
                            )  # fmt: skip
                            if hash_key is not None:
                                hashes.append(
                                    hmac.digest(hash_key, address.key.encode(), "sha256").hex()
                                )
            if n - chunk.first_row + 1 >= chunk_rows:
                chunk.last_row = n
                yield chunk
                chunk = Chunk(n + 1, n)
                rows = chunk.rows
                errors = chunk.errors
                hashes = chunk.hashes
        chunk.last_row = n
        if n == 0:
            chunk.fatal = "the file has a header row but no data rows"
        yield chunk

    def external_taken(self, n: int, external_id: str) -> RowError | None:
        """The error for a row whose external id an earlier row of the file
        gave to another address; else remembers it as this row's."""
        key = hash(external_id)
        previous = self.seen_external.get(key)
        if previous is not None:
            return RowError(n, "external_id", f"duplicate of row {previous}", shown(external_id))
        self.seen_external[key] = n
        return None
