"""The JSON lines reader of contact imports: one object per line, with the
keys of the CSV columns (custom fields may also sit in an `attributes`
object, `tags` may be a list). Values are checked as JSON values, not as
text. Rows leave as the same COPY tuples the CSV reader makes.

JSON lines files are rarer and smaller than CSV, so this reader is written
for clarity, one row at a time, not for the CSV reader's speed.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Generator
from typing import IO, TYPE_CHECKING, Any

from sendstream.contacts.addresses import InvalidAddress, normalize_address
from sendstream.contacts.imports_rows import (
    CONTROL,
    ENCODE_JSON,
    IGNORE,
    JSON_KINDS,
    LOCALE_TAG,
    MAX_EXTERNAL_ID_LENGTH,
    MAX_NAME_LENGTH,
    ZONES,
    Chunk,
    RowError,
    bad_text,
    check_mapping,
    clean_tags,
    shown,
    target_of,
)
from sendstream.contacts.values import check_value, parse_text

if TYPE_CHECKING:
    from sendstream.contacts.imports_parse import RowReader


class _StopFile(Exception):
    pass


def read_jsonl(reader: RowReader, text: IO[str]) -> Generator[Chunk, None, None]:
    """`text`'s rows in chunks of `reader.chunk_rows`, checked; blank lines
    are skipped and not counted as rows."""
    check_mapping(reader.mapping, reader.fields)
    reader.stage_fields = list(reader.fields.values())
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
            _json_row(reader, n, line, chunk, first)
        except _StopFile:
            yield chunk
            return
        first = False
        if n - chunk.first_row + 1 >= reader.chunk_rows:
            chunk.last_row = n
            yield chunk
            chunk = Chunk(n + 1, n)
    chunk.last_row = n
    if n == 0:
        chunk.fatal = "the file is empty"
    yield chunk


def _json_row(reader: RowReader, n: int, line: str, chunk: Chunk, first: bool) -> None:
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
        if key == "attributes" and isinstance(value, dict) and "attributes" not in reader.mapping:
            for sub, sub_value in value.items():
                target = sub if sub in reader.fields else None
                if target is None:
                    unknown.append(f"attributes.{sub}")
                else:
                    flat[target] = sub_value
            continue
        target = target_of(key, reader.mapping, reader.fields)
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
    _json_values(reader, n, flat, chunk)


def _json_values(reader: RowReader, n: int, flat: dict[str, Any], chunk: Chunk) -> None:
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
        if len(value) > limit or CONTROL.search(value):
            chunk.errors.append(bad_text(name, value, limit))
            chunk.errors[-1].row = n
            return
        texts[name] = value or None
    tz, loc = texts["timezone"], texts["locale"]
    if tz is not None and tz not in ZONES:
        chunk.errors.append(
            RowError(n, "timezone", "unknown time zone; use an IANA name", shown(tz))
        )
        return
    if loc is not None:
        if not LOCALE_TAG.match(loc):
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
        tags, tag_error = clean_tags(items)
        if tag_error is not None:
            chunk.errors.append(RowError(n, "tags", tag_error, shown(json.dumps(items))))
            return
    values: list[Any] = []
    for key, spec in reader.fields.items():
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
            chunk.errors.append(RowError(n, key, str(exc), shown(json.dumps(value, default=str))))
            return
        if checked is not None and spec.type in JSON_KINDS:
            checked = ENCODE_JSON(checked)
        values.append(checked)
    key_hash = hash(address.key)
    previous = reader.seen.get(key_hash)
    if previous is not None:
        chunk.errors.append(RowError(n, "email", f"duplicate of row {previous}", shown(raw)))
        return
    if texts["external_id"] is not None and (
        taken := reader.external_taken(n, texts["external_id"])
    ):
        chunk.errors.append(taken)
        return
    reader.seen[key_hash] = n
    chunk.rows.append(
        (n, address.email, address.key, texts["external_id"], texts["first_name"],
         texts["last_name"], texts["timezone"], texts["locale"], tags, *values)
    )  # fmt: skip
    if reader.hash_key is not None:
        chunk.hashes.append(hmac.digest(reader.hash_key, address.key.encode(), "sha256").hex())
