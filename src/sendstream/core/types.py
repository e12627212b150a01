"""Field types every domain's schemas share."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator, StringConstraints

# Names and addresses are one line of printable text; PostgreSQL text cannot
# hold NUL at all, so refusing control characters here keeps that a 422.
NO_CONTROL_CHARS = r"^[^\x00-\x1f\x7f]*$"
Line = Annotated[str, StringConstraints(pattern=NO_CONTROL_CHARS)]
# A name shown to people: one line with something in it besides spaces (the
# service trims it, so "   " would be an empty name).
Name = Annotated[
    str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$")
]
# Free text may span lines, but PostgreSQL text cannot hold NUL.
NO_NUL = r"^[^\x00]*$"


def _iso_8601_only(value: Any) -> Any:
    # pydantic also reads numbers as Unix times; the documented (and OpenAPI)
    # format is an RFC 3339 date-time, so `until=0.5` is refused, not guessed at.
    if isinstance(value, str) and not re.match(r"^\d{4}-\d{2}-\d{2}", value):
        raise ValueError("must be an ISO 8601 date-time with an offset, e.g. 2026-01-31T09:00:00Z")
    return value


# An RFC 3339 time with its offset: a bare local time would be ambiguous.
Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_8601_only)]
