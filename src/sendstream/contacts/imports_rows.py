"""What a checked import row is, shared by the CSV reader (`imports_parse`)
and the JSON lines reader (`imports_jsonl`): the limits of the built-in
fields, which field a column or key feeds, the row errors, and the chunks of
COPY-ready row tuples both readers produce and `imports_merge` consumes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from zoneinfo import available_timezones

from sendstream.contacts.imports_detect import ImportFileError

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
CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_TAG_BAD: Final = re.compile(r"[\x00-\x1f\x7f,;]")
LOCALE_TAG: Final = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
ZONES: Final = frozenset(available_timezones())
# Integers beyond this lose precision as JSON numbers (values.check_value's rule).
MAX_EXACT: Final = 2**53
# Field types whose values travel to the database as JSON text (the others
# as text, numeric or boolean, turned into JSON by the merge).
JSON_KINDS: Final = frozenset({"text_list", "json"})
# One encoder built once: json.dumps with options builds a new one per call.
ENCODE_JSON: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class FieldSpec:
    key: str
    type: str
    options: Sequence[str] | None
    default: Any


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


# --- which column (or key) is which field


def _normal(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def target_of(name: str, mapping: Mapping[str, str], fields: Mapping[str, FieldSpec]) -> str | None:
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


# --- values


def bad_text(name: str, value: str, limit: int) -> RowError:
    """The error of a built-in text value that is too long or holds a
    control character (row 0: the caller sets it)."""
    if len(value) > limit:
        return RowError(0, name, f"longer than {limit} characters ({len(value)})", shown(value))
    return RowError(0, name, "contains a control character", shown(value))


def clean_tags(items: Sequence[str]) -> tuple[str | None, str | None]:
    """The tags stripped, blanks and repeats dropped, joined by `TAG_JOIN`;
    or the error that refuses them."""
    tags = list(dict.fromkeys(t.strip() for t in items if t.strip()))
    if len(tags) > MAX_TAGS:
        return None, f"more than {MAX_TAGS} tags ({len(tags)})"
    for tag in tags:
        if len(tag) > MAX_TAG_LENGTH:
            return None, f"tag longer than {MAX_TAG_LENGTH} characters: {shown(tag)!r}"
        if _TAG_BAD.search(tag):
            return None, f"tag {shown(tag)!r} contains a comma, semicolon or control character"
    return (TAG_JOIN.join(tags) if tags else None), None
