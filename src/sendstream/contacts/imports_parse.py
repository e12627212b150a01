"""Reading contact import files: what the file is, which column is which
field, and each row checked in Python before anything is written.

The hot path (`read_chunks`) runs once per row of files with millions of
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

import codecs
import csv
import gzip
import hmac
import io
import json
import re
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from math import isfinite
from typing import IO, Any, Final, Literal
from zoneinfo import available_timezones

from sendstream.contacts.addresses import InvalidAddress, normalize_address
from sendstream.contacts.values import check_value, parse_text

ImportFormat = Literal["csv", "jsonl"]
ImportMode = Literal["upsert", "create_only", "update_only"]

BUILTINS: Final = ("email", "external_id", "first_name", "last_name", "timezone", "locale", "tags")
IGNORE: Final = "-"
# Columns an export writes that an import cannot set: ignored, so an
# exported file imports back as it is.
READ_ONLY: Final = ("id", "status", "created_at", "updated_at")
# Tags travel to the database joined by this (a control character, which tags may not hold).
TAG_JOIN: Final = "\x1f"
MAX_TAGS: Final = 100
MAX_TAG_LENGTH: Final = 100
MAX_NAME_LENGTH: Final = 200
MAX_EXTERNAL_ID_LENGTH: Final = 255
MAX_SHOWN_VALUE: Final = 200
# Big enough for a 10 MB cell to be read and then rejected by its field's own
# limit, with a clear message, instead of failing the whole file.
CSV_FIELD_LIMIT: Final = 16 * 1024 * 1024
SAMPLE_BYTES: Final = 64 * 1024
_READ_BLOCK: Final = 1024 * 1024
_DELIMITERS: Final = (",", ";", "\t", "|")
_DELIMITER_NAMES: Final = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_TAG_BAD: Final = re.compile(r"[\x00-\x1f\x7f,;]")
# A tags cell none of whose tags needs stripping or is refused for a character.
_TAG_PLAIN_BAD: Final = re.compile(r"[\x00-\x1f\x7f,\s]")
_LOCALE: Final = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
_ZONES: Final = frozenset(available_timezones())
_GZIP_MAGIC: Final = b"\x1f\x8b"
# Integers beyond this lose precision as JSON numbers (values.check_value's rule).
MAX_EXACT: Final = 2**53
# Field types with few distinct values (enum, boolean): a cell's parsed
# value is remembered per column, up to this many distinct cells.
_MEMO_KINDS: Final = frozenset({"enum", "boolean"})
_MEMO_CELLS: Final = 1024
_UNSEEN: Final = object()
# Field types whose values travel to the database as JSON text (the others
# as text, numeric or boolean, turned into JSON by the merge).
_JSON_KINDS: Final = frozenset({"text_list", "json"})
# One encoder built once: json.dumps with options builds a new one per call.
_ENCODE: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

csv.field_size_limit(CSV_FIELD_LIMIT)


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (empty, undecodable, unknown
    columns ...); the message says what and where."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    key: str
    type: str
    options: Sequence[str] | None
    default: Any


@dataclass(frozen=True, slots=True)
class Detected:
    format: ImportFormat
    compression: str | None
    encoding: str
    delimiter: str | None
    # Newlines in the file: an estimate of the rows (exact for plain files).
    lines: int | None


@dataclass(slots=True)
class RowError:
    row: int
    field: str | None
    message: str
    value: str | None


@dataclass(slots=True)
class Chunk:
    """Rows `first_row`..`last_row` of the file, checked. `rows` are COPY
    tuples (row, email, email_key, external_id, first_name, last_name,
    timezone, locale, tags, then one value per `RowReader.stage_fields`);
    `hashes` are the address hashes
    of `rows` in order when erasure checks are on. `fatal` ends the file."""

    first_row: int
    last_row: int
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    fatal: str | None = None
    # `rows` in COPY text format, made in the parser's thread, and how many
    # rows it holds (`rows` itself may then be let go: see `imports._next`).
    copy_data: bytes | None = None
    copied: int = 0


_COPY_ESCAPES: Final = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    return str(value)


def copy_text(rows: Sequence[tuple[Any, ...]]) -> bytes:
    """`rows` in COPY's text format, built in the parser's thread so the
    connection only has to send bytes. Nearly every row is plain text with no
    tab, newline, carriage return or backslash; it is joined as is, and only
    a row holding one of them is escaped value by value. (Each null is one
    `\\N`, so a row's backslashes beyond its nulls are in its values.)"""
    lines = []
    for row in rows:
        line = "\t".join(
            [v if type(v) is str else "\\N" if v is None else _copy_value(v) for v in row]
        )
        if (
            line.count("\\") != row.count(None)
            or "\n" in line
            or "\r" in line
            or line.count("\t") != len(row) - 1
        ):
            line = "\t".join([_copy_value(v) for v in row])
        lines.append(line)
    lines.append("")
    return "\n".join(lines).encode()


def shown(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.replace("\x00", "\\0")
    return value if len(value) <= MAX_SHOWN_VALUE else value[: MAX_SHOWN_VALUE - 3] + "..."


# --- what the file is


def open_decompressed(source: IO[bytes]) -> tuple[IO[bytes], str | None]:
    """The byte stream to parse: `source` itself, or its gzip content when it
    starts with the gzip magic bytes (whatever its name says)."""
    source.seek(0)
    magic = source.read(2)
    source.seek(0)
    if magic == _GZIP_MAGIC:
        unpacked: IO[bytes] = gzip.GzipFile(fileobj=source, mode="rb")  # type: ignore[assignment]
        return unpacked, "gzip"
    return source, None


def _bom_encoding(head: bytes) -> str | None:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


def _utf8_ok(stream: IO[bytes], head: bytes) -> tuple[bool, int]:
    """Whether the whole stream is UTF-8, and its newline count."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 0
    block = head
    try:
        while block:
            decoder.decode(block)
            lines += block.count(b"\n")
            block = stream.read(_READ_BLOCK)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False, 0
    return True, lines


def _count_lines(stream: IO[bytes], head: bytes, encoding: str) -> int:
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    lines = 0
    block = head
    while block:
        lines += decoder.decode(block).count("\n")
        block = stream.read(_READ_BLOCK)
    return lines


def _utf8_head_ok(head: bytes) -> bool:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head)
    except UnicodeDecodeError:
        return False
    return True


def detect(
    source: IO[bytes],
    *,
    filename: str | None = None,
    format: ImportFormat | None = None,
    full: bool = True,
) -> Detected:
    """Read the whole file once: compression (gzip by magic bytes), encoding
    (a BOM says UTF-8 or UTF-16; otherwise UTF-8 when every byte decodes as
    UTF-8, else Windows-1252), format (CSV or JSON lines, by name or by the
    first character) and the CSV delimiter (, ; tab or |, from the header).
    With `full=False` only the first 64 KiB are read (a quick look at upload
    time; the run decides again on the whole file)."""
    stream, compression = open_decompressed(source)
    lines: int | None = None
    try:
        head = stream.read(SAMPLE_BYTES)
        if not head.strip(b" \t\r\n\x00\xef\xbb\xbf\xff\xfe"):
            raise ImportFileError("the file is empty")
        encoding = _bom_encoding(head)
        if not full:
            encoding = encoding or ("utf-8" if _utf8_head_ok(head) else "windows-1252")
        elif encoding is not None:
            lines = _count_lines(stream, head, encoding)
        else:
            ok, count = _utf8_ok(stream, head)
            encoding = "utf-8" if ok else "windows-1252"
            lines = count if ok else None
        sample = _decode_sample(head, encoding)
    except (OSError, EOFError) as exc:
        raise ImportFileError(f"the file cannot be read: {exc}") from None
    finally:
        if stream is not source:
            stream.close()
    if full and lines is None:
        source.seek(0)
        stream, _ = open_decompressed(source)
        try:
            lines = _count_lines(stream, b"", "cp1252")
        finally:
            if stream is not source:
                stream.close()
    source.seek(0)
    fmt = format or _guess_format(filename, sample)
    delimiter = _sniff_delimiter(sample) if fmt == "csv" else None
    return Detected(fmt, compression, encoding, delimiter, lines)


def _decode_sample(head: bytes, encoding: str) -> str:
    codec = "cp1252" if encoding == "windows-1252" else encoding
    decoder = codecs.getincrementaldecoder(codec)(errors="replace")
    return decoder.decode(head)


def _guess_format(filename: str | None, sample: str) -> ImportFormat:
    name = (filename or "").lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    return "jsonl" if sample.lstrip("\ufeff \t\r\n").startswith("{") else "csv"


def _sniff_delimiter(sample: str) -> str:
    """The candidate that splits the header line into the most columns
    (outside quotes); a comma when the header has a single column."""
    header = sample.lstrip("\ufeff").split("\n", 1)[0]
    counts = dict.fromkeys(_DELIMITERS, 0)
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def open_text(source: IO[bytes], detected: Detected) -> io.TextIOWrapper:
    """The file as text lines, decoded the way `detect` decided."""
    stream, _ = open_decompressed(source)
    codec = "cp1252" if detected.encoding == "windows-1252" else detected.encoding
    # cp1252 leaves five bytes undefined; they become U+FFFD rather than
    # failing a file a spreadsheet wrote.
    errors = "replace" if codec == "cp1252" else "strict"
    return io.TextIOWrapper(stream, encoding=codec, errors=errors, newline="")


def describe(detected: Detected) -> str:
    """`CSV, utf-8, semicolon-separated, gzip`: what the importer read the file as."""
    parts = [detected.format.upper(), detected.encoding]
    if detected.delimiter:
        parts.append(f"{_DELIMITER_NAMES[detected.delimiter]}-separated")
    if detected.compression:
        parts.append(detected.compression)
    return ", ".join(parts)


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


def _normal(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _target(name: str, mapping: Mapping[str, str], fields: Mapping[str, FieldSpec]) -> str | None:
    """The field a column feeds: a mapping wins (by exact or normalised
    name); otherwise the column's normalised name if it is a built-in or a
    declared field; None when unknown."""
    for candidate in (name, name.strip(), _normal(name)):
        if candidate in mapping:
            return mapping[candidate]
    normal = _normal(name)
    if normal in BUILTINS or normal in fields:
        return normal
    if normal in READ_ONLY:
        return IGNORE
    return None


def check_mapping(mapping: Mapping[str, str], fields: Mapping[str, FieldSpec]) -> None:
    bad = sorted(
        f"{column}={target}"
        for column, target in mapping.items()
        if target != IGNORE and target not in BUILTINS and target not in fields
    )
    if bad:
        raise ImportFileError(
            f"--map names unknown fields: {', '.join(bad)}; a target is a built-in "
            f"({', '.join(BUILTINS)}), a custom field declared under /v1/fields, or - to "
            "ignore the column"
        )


def plan_columns(
    header: Sequence[str], mapping: Mapping[str, str], fields: Mapping[str, FieldSpec]
) -> ColumnPlan:
    """Match the header to fields. Unknown columns are an error naming every
    one of them, before any row is read."""
    check_mapping(mapping, fields)
    targets: dict[str, int] = {}
    unknown: list[str] = []
    for index, name in enumerate(header):
        target = _target(name, mapping, fields)
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
    # The custom fields of each row tuple after the built-ins, in order; set
    # once the header (or, for JSON lines, the field list) is known.
    stage_fields: list[FieldSpec] = field(default_factory=list)

    def read(self, text: IO[str], detected: Detected) -> Generator[Chunk, None, None]:
        if detected.format == "jsonl":
            return self._jsonl(text)
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
        dumps = _ENCODE
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
                            len(ext) > MAX_EXTERNAL_ID_LENGTH or _CONTROL.search(ext)
                        ):
                            bad = _bad_text("external_id", ext, MAX_EXTERNAL_ID_LENGTH)
                    if first_i >= 0:
                        first = row[first_i].strip() or None
                        if first is not None and (
                            len(first) > MAX_NAME_LENGTH or _CONTROL.search(first)
                        ):
                            bad = _bad_text("first_name", first, MAX_NAME_LENGTH)
                    if last_i >= 0:
                        last = row[last_i].strip() or None
                        if last is not None and (
                            len(last) > MAX_NAME_LENGTH or _CONTROL.search(last)
                        ):
                            bad = _bad_text("last_name", last, MAX_NAME_LENGTH)
                    if tz_i >= 0:
                        tz = row[tz_i].strip() or None
                        if tz is not None and tz not in _ZONES:
                            bad = RowError(
                                n,
                                "timezone",
                                "unknown time zone; use an IANA name such as Europe/Paris",
                                shown(tz),
                            )
                    if loc_i >= 0:
                        loc = row[loc_i].strip() or None
                        if loc is not None:
                            if len(loc) > 35 or not _LOCALE.match(loc):
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
                                # long or bad tag): as `_tags` would give it.
                                len(parts) <= MAX_TAGS
                                and not _TAG_PLAIN_BAD.search(cell)
                                and len(set(parts)) == len(parts)
                                and all(0 < len(t) <= MAX_TAG_LENGTH for t in parts)
                            ):
                                tags = TAG_JOIN.join(parts)
                            else:
                                tags, tag_error = _tags(parts)
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
                                if value is not None and kind in _JSON_KINDS:
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

    def _jsonl(self, text: IO[str]) -> Generator[Chunk, None, None]:
        check_mapping(self.mapping, self.fields)
        self.stage_fields = list(self.fields.values())
        chunk = Chunk(1, 0)
        n = 0
        first = True
        while True:
            try:
                line = text.readline()
            except UnicodeDecodeError as exc:
                chunk.fatal = f"row {n + 1}: the file is not valid {exc.encoding}: {exc.reason}"
                chunk.last_row = n
                yield chunk
                return
            if not line:
                break
            if not line.strip():
                continue
            n += 1
            if first:
                line = line.lstrip("\ufeff")
            try:
                self._json_row(n, line, chunk, first)
            except _StopFile:
                yield chunk
                return
            first = False
            if n - chunk.first_row + 1 >= self.chunk_rows:
                chunk.last_row = n
                yield chunk
                chunk = Chunk(n + 1, n)
        chunk.last_row = n
        if n == 0:
            chunk.fatal = "the file is empty"
        yield chunk

    def _json_row(self, n: int, line: str, chunk: Chunk, first: bool) -> None:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            chunk.errors.append(
                RowError(n, None, f"not valid JSON: {exc.msg} at character {exc.pos}", shown(line))
            )
            return
        if not isinstance(obj, dict):
            chunk.errors.append(RowError(n, None, "not a JSON object", shown(line)))
            return
        flat: dict[str, Any] = {}
        unknown: list[str] = []
        for key, value in obj.items():
            if key == "attributes" and isinstance(value, dict) and "attributes" not in self.mapping:
                for sub, sub_value in value.items():
                    target = sub if sub in self.fields else None
                    if target is None:
                        unknown.append(f"attributes.{sub}")
                    else:
                        flat[target] = sub_value
                continue
            target = _target(key, self.mapping, self.fields)
            if target is None:
                unknown.append(key)
            elif target != IGNORE:
                flat[target] = value
        if unknown:
            message = (
                f"unknown field(s) {', '.join(repr(u) for u in unknown)}: declare them under "
                "/v1/fields, or map them (`--map key=field` or `key=-` to ignore)"
            )
            if first:
                chunk.fatal = f"row {n}: {message}"
                chunk.last_row = n - 1
                raise _StopFile
            chunk.errors.append(RowError(n, unknown[0], message, None))
            return
        self._json_values(n, flat, chunk)

    def _json_values(self, n: int, flat: dict[str, Any], chunk: Chunk) -> None:
        raw = flat.get("email")
        if not isinstance(raw, str):
            chunk.errors.append(RowError(n, "email", "missing or not text", shown(json.dumps(raw))))
            return
        try:
            address = normalize_address(raw)
        except InvalidAddress as exc:
            chunk.errors.append(RowError(n, "email", f"not a valid address: {exc}", shown(raw)))
            return
        texts: dict[str, str | None] = {}
        for name, limit in (
            ("external_id", MAX_EXTERNAL_ID_LENGTH),
            ("first_name", MAX_NAME_LENGTH),
            ("last_name", MAX_NAME_LENGTH),
            ("timezone", 64),
            ("locale", 35),
        ):
            value = flat.get(name)
            if value is None or value == "":
                texts[name] = None
                continue
            if not isinstance(value, str):
                chunk.errors.append(
                    RowError(n, name, "expected text", shown(json.dumps(value, default=str)))
                )
                return
            value = value.strip()
            if len(value) > limit or _CONTROL.search(value):
                chunk.errors.append(_bad_text(name, value, limit))
                chunk.errors[-1].row = n
                return
            texts[name] = value or None
        tz, loc = texts["timezone"], texts["locale"]
        if tz is not None and tz not in _ZONES:
            chunk.errors.append(
                RowError(n, "timezone", "unknown time zone; use an IANA name", shown(tz))
            )
            return
        if loc is not None:
            if not _LOCALE.match(loc):
                chunk.errors.append(RowError(n, "locale", "not a BCP 47 language tag", shown(loc)))
                return
            texts["locale"] = loc.replace("_", "-")
        tags: str | None = None
        raw_tags = flat.get("tags")
        if raw_tags is not None and raw_tags != "":
            items = raw_tags.split(";") if isinstance(raw_tags, str) else raw_tags
            if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
                chunk.errors.append(
                    RowError(n, "tags", "expected a list of text", shown(json.dumps(raw_tags)))
                )
                return
            tags, tag_error = _tags(items)
            if tag_error is not None:
                chunk.errors.append(RowError(n, "tags", tag_error, shown(json.dumps(items))))
                return
        values: list[Any] = []
        for key, spec in self.fields.items():
            if key not in flat:
                values.append(None)
                continue
            value = flat[key]
            try:
                checked = (
                    parse_text(spec.type, value, spec.options)
                    if isinstance(value, str) and spec.type not in ("text", "enum")
                    else check_value(spec.type, value, spec.options)
                )
            except ValueError as exc:
                chunk.errors.append(
                    RowError(n, key, str(exc), shown(json.dumps(value, default=str)))
                )
                return
            if checked is not None and spec.type in _JSON_KINDS:
                checked = _ENCODE(checked)
            values.append(checked)
        key_hash = hash(address.key)
        previous = self.seen.get(key_hash)
        if previous is not None:
            chunk.errors.append(RowError(n, "email", f"duplicate of row {previous}", shown(raw)))
            return
        self.seen[key_hash] = n
        chunk.rows.append(
            (n, address.email, address.key, texts["external_id"], texts["first_name"],
             texts["last_name"], texts["timezone"], texts["locale"], tags, *values)
        )  # fmt: skip
        if self.hash_key is not None:
            chunk.hashes.append(hmac.digest(self.hash_key, address.key.encode(), "sha256").hex())


class _StopFile(Exception):
    pass


def _bad_text(name: str, value: str, limit: int) -> RowError:
    if len(value) > limit:
        return RowError(0, name, f"longer than {limit} characters ({len(value)})", shown(value))
    return RowError(0, name, "contains a control character", shown(value))


def _tags(items: Sequence[str]) -> tuple[str | None, str | None]:
    tags = list(dict.fromkeys(t.strip() for t in items if t.strip()))
    if len(tags) > MAX_TAGS:
        return None, f"more than {MAX_TAGS} tags ({len(tags)})"
    for tag in tags:
        if len(tag) > MAX_TAG_LENGTH:
            return None, f"tag longer than {MAX_TAG_LENGTH} characters: {shown(tag)!r}"
        if _TAG_BAD.search(tag):
            return None, f"tag {shown(tag)!r} contains a comma, semicolon or control character"
    return (TAG_JOIN.join(tags) if tags else None), None
