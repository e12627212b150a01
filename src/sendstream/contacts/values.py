"""Custom field types and the validation of their values.

Every write (API, batch, import, sync) passes values through `check_value`
(JSON input) or `parse_text` (CSV cells), so a stored value always matches
its field's type. Errors are `ValueError`s whose message says what was
expected and what came, for the caller to prefix with where (`row 4812:`,
`attributes.plan:`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Final, Literal, get_args

FieldType = Literal["text", "number", "boolean", "date", "datetime", "enum", "text_list", "json"]
FIELD_TYPES: Final = get_args(FieldType)

MAX_TEXT_LENGTH: Final = 10_000
MAX_LIST_ITEMS: Final = 100
MAX_LIST_ITEM_LENGTH: Final = 1_000
MAX_JSON_BYTES: Final = 65_536
# CSV cells of a `text_list` field hold items separated by this.
LIST_SEPARATOR: Final = ";"

_TRUE: Final = frozenset({"true", "t", "yes", "y", "1", "on"})
_FALSE: Final = frozenset({"false", "f", "no", "n", "0", "off"})


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {_shown(value)}")
    if len(value) > MAX_TEXT_LENGTH:
        raise ValueError(f"text longer than {MAX_TEXT_LENGTH} characters ({len(value)})")
    if "\x00" in value:
        raise ValueError("text contains a NUL character")
    return value


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {_shown(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value}")
    if isinstance(value, int) and abs(value) > 2**53:
        raise ValueError(f"number too large to store exactly: {value}")
    return value


def _date(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a date (YYYY-MM-DD), got {_shown(value)}")
    try:
        return date.fromisoformat(value).isoformat() if len(value) == 10 else _bad_date(value)
    except ValueError:
        return _bad_date(value)


def _bad_date(value: str) -> str:
    raise ValueError(f"not a date (YYYY-MM-DD): {_shown(value)}")


def _datetime(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a date-time (ISO 8601 with offset), got {_shown(value)}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 date-time: {_shown(value)}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"date-time without a UTC offset: {_shown(value)} (add Z or +hh:mm)")
    return parsed.isoformat()


def _enum(value: Any, options: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in options:
        allowed = ", ".join(options)
        raise ValueError(f"{_shown(value)} is not one of the allowed values ({allowed})")
    return value


def _text_list(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of text, got {_shown(value)}")
    if len(value) > MAX_LIST_ITEMS:
        raise ValueError(f"more than {MAX_LIST_ITEMS} items ({len(value)})")
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"list item is not text: {_shown(item)}")
        if len(item) > MAX_LIST_ITEM_LENGTH:
            raise ValueError(f"list item longer than {MAX_LIST_ITEM_LENGTH} characters")
    return list(dict.fromkeys(value))


def _json(value: Any) -> Any:
    text = json.dumps(value, ensure_ascii=False)
    if "\x00" in text or "\\u0000" in text:
        raise ValueError("JSON value contains a NUL character, which cannot be stored")
    size = len(text.encode())
    if size > MAX_JSON_BYTES:
        raise ValueError(f"JSON value of {size} bytes; the limit is {MAX_JSON_BYTES}")
    return value


def check_value(field_type: str, value: Any, options: Sequence[str] | None = None) -> Any:
    """Validate a JSON value for a field of `field_type`; return it as stored
    (dates and date-times in canonical ISO form, list items de-duplicated).
    `None` is returned as is: it clears the value."""
    if value is None:
        return None
    if field_type == "text":
        return _text(value)
    if field_type == "number":
        return _number(value)
    if field_type == "boolean":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {_shown(value)}")
        return value
    if field_type == "date":
        return _date(value)
    if field_type == "datetime":
        return _datetime(value)
    if field_type == "enum":
        return _enum(value, options or ())
    if field_type == "text_list":
        return _text_list(value)
    if field_type == "json":
        return _json(value)
    raise ValueError(f"unknown field type {field_type!r}")


def parse_text(field_type: str, cell: str, options: Sequence[str] | None = None) -> Any:
    """Parse a CSV cell for a field of `field_type`. An empty cell is `None`
    (no value), so a blank column never overwrites with an empty string."""
    cell = cell.strip()
    if cell == "":
        return None
    if field_type == "number":
        try:
            number = float(cell.replace(",", ".")) if any(c in cell for c in ".,eE") else int(cell)
        except ValueError:
            raise ValueError(f"not a number: {_shown(cell)}") from None
        return _number(number)
    if field_type == "boolean":
        lowered = cell.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"not a boolean (true/false, yes/no, 1/0): {_shown(cell)}")
    if field_type == "text_list":
        return _text_list([item.strip() for item in cell.split(LIST_SEPARATOR) if item.strip()])
    if field_type == "json":
        try:
            return _json(json.loads(cell))
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg} at character {exc.pos}") from None
    return check_value(field_type, cell, options)
