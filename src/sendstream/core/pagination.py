"""Cursor pagination: opaque cursors (base64url JSON of the last row's sort
key), a `limit` with a ceiling, and one page shape for every list endpoint."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel, Field

from sendstream.core.errors import InvalidInput
from sendstream.core.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy import Select
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import InstrumentedAttribute

T = TypeVar("T")
R = TypeVar("R")


class Page(BaseModel, Generic[T]):
    data: list[T]
    # Pass back as `cursor` for the next page; null on the last page.
    next_cursor: str | None = Field(default=None)


def encode_cursor(key: dict[str, Any]) -> str:
    raw = json.dumps(key, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def trim_page(
    rows: Sequence[T], limit: int, key: Callable[[T], dict[str, Any]]
) -> tuple[list[T], str | None]:
    """`rows` as fetched with `limit + 1`: the page, and the cursor of the
    next one (`key` of the page's last row), or None when this is the last."""
    if len(rows) <= limit:
        return list(rows), None
    page = list(rows[:limit])
    return page, encode_cursor(key(page[-1]))


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, dict):
        raise InvalidInput(
            "cursor: not a cursor this API issued; pass back `next_cursor` unchanged.",
            code="invalid_cursor",
        )
    return value


def _not_ours() -> InvalidInput:
    return InvalidInput(
        "cursor: not a cursor this list issued; pass back `next_cursor` unchanged.",
        code="invalid_cursor",
    )


def cursor_uuid(cursor: dict[str, Any] | None, key: str = "id") -> uuid.UUID | None:
    """The UUID a list's cursor holds under `key` (None on the first page)."""
    if cursor is None:
        return None
    try:
        return uuid.UUID(str(cursor[key]))
    except (KeyError, ValueError):
        raise _not_ours() from None


def cursor_int(cursor: dict[str, Any] | None, key: str) -> int | None:
    """The positive bigint a list's cursor holds under `key`."""
    if cursor is None:
        return None
    value = cursor.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**63:
        raise _not_ours()
    return value


class PageParams:
    """`limit` (already capped) and the cursor, decoded on first use.

    Decoding waits until the endpoint runs, after authentication: a request
    without a valid key gets 401 whatever its cursor looks like."""

    def __init__(self, limit: int, raw_cursor: str | None) -> None:
        self.limit = limit
        self.raw_cursor = raw_cursor

    @property
    def cursor(self) -> dict[str, Any] | None:
        return decode_cursor(self.raw_cursor) if self.raw_cursor else None


def _page_params(
    limit: Annotated[
        int | None,
        Query(ge=1, description="Items per page; capped at the server's page ceiling (500)."),
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=512, description="`next_cursor` of the previous page.")
    ] = None,
) -> PageParams:
    api = get_settings().api
    effective = min(limit or api.page_default_limit, api.page_max_limit)
    return PageParams(effective, cursor)


PageQuery = Annotated[PageParams, Depends(_page_params)]


async def rows_after(
    session: AsyncSession,
    query: Select[R],
    id_column: InstrumentedAttribute[uuid.UUID],
    *,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[R]:
    """One keyset page of `query` (already scoped to its workspace): up to
    `limit` rows in id order, after the cursor's id."""
    if after is not None:
        query = query.where(id_column > after)
    return (await session.scalars(query.order_by(id_column).limit(limit))).all()
