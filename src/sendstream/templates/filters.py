"""Filters (and the same functions as globals) templates format values with,
through Babel's CLDR data.

    {{ order.placed_at|date }}                     -> Mar 1, 2026
    {{ order.placed_at|datetime("short", tz="America/New_York") }}
    {{ order.placed_at|date("d MMMM y", locale="fr") }}   -> 1 mars 2026
    {{ order.total|money("EUR") }}                 -> €1,234.50 / 1.234,50 €
    {{ money(order.total, "EUR", locale="de") }}

Locale and time zone default to the render context's `locale` and
`timezone` (the contact's own when it has them, else the workspace
defaults; see docs/templates.md), so one template reads naturally for every
recipient. A value that cannot be formatted raises `FilterError`, reported as
`template_render_error` with its line.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_time
from babel.numbers import format_currency, format_decimal
from jinja2 import Undefined, pass_context
from jinja2.runtime import Context

from sendstream.templates.deadline import outside_deadline

_CURRENCY = re.compile(r"^[A-Z]{3}$")
FALLBACK_LOCALE = "en"


class FilterError(ValueError):
    """A filter was given a value or option it cannot use."""


@lru_cache(maxsize=512)
def _parse_locale(tag: str) -> Locale:
    # Babel reads a locale's data from disk on first use (tens to hundreds of
    # milliseconds): load it here, once, outside the render's time limit.
    with outside_deadline():
        locale = Locale.parse(tag.replace("-", "_"))
        _ = locale.datetime_formats, locale.time_zones, locale.currency_formats
    return locale


def parse_locale(tag: str) -> Locale:
    """A Babel locale from a BCP 47 tag (`fr-FR`) or POSIX name (`fr_FR`)."""
    try:
        return _parse_locale(tag.strip())
    except (UnknownLocaleError, ValueError, TypeError):
        raise FilterError(f"unknown locale {tag!r}") from None


@lru_cache(maxsize=512)
def parse_zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise FilterError(f"unknown time zone {name!r}") from None


def _locale(context: Context, explicit: Any) -> Locale:
    if explicit is not None and not isinstance(explicit, Undefined):
        return parse_locale(str(explicit))
    try:
        return parse_locale(str(context.get("locale") or FALLBACK_LOCALE))
    except FilterError:
        # A contact's stored locale that CLDR does not know must not stop a send.
        return parse_locale(FALLBACK_LOCALE)


def _zone(context: Context, explicit: Any) -> tzinfo:
    if explicit is not None and not isinstance(explicit, Undefined):
        return parse_zone(str(explicit))
    try:
        return parse_zone(str(context.get("timezone") or "UTC"))
    except FilterError:
        return UTC


def _as_datetime(value: Any, name: str) -> datetime | date:
    """A datetime (naive ones are UTC) or date from what data usually holds:
    datetime and date objects, ISO 8601 strings, Unix timestamps."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise FilterError(f"{name}: {value!r} is not a Unix time") from None
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                return date.fromisoformat(text)
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise FilterError(f"{name}: {value!r} is not an ISO 8601 date or date-time") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise FilterError(f"{name}: cannot format a {type(value).__name__} as a date")


def _format_name(fmt: Any) -> str:
    if not isinstance(fmt, str) or not fmt:
        raise FilterError(f"date format must be short, medium, long, full or a pattern: {fmt!r}")
    return fmt


@pass_context
def date_filter(
    context: Context, value: Any, format: Any = "medium", tz: Any = None, locale: Any = None
) -> Any:
    """The date (in `tz`, for a date-time) as `format`: short, medium, long,
    full or a CLDR pattern such as `d MMMM y`."""
    if isinstance(value, Undefined) or value is None:
        return "" if value is None else value
    moment = _as_datetime(value, "date")
    if isinstance(moment, datetime):
        moment = moment.astimezone(_zone(context, tz)).date()
    return format_date(moment, _format_name(format), locale=_locale(context, locale))


@pass_context
def datetime_filter(
    context: Context, value: Any, format: Any = "medium", tz: Any = None, locale: Any = None
) -> Any:
    """The date and time in `tz` (default: the context's zone) as `format`."""
    if isinstance(value, Undefined) or value is None:
        return "" if value is None else value
    moment = _as_datetime(value, "datetime")
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return format_datetime(
        moment, _format_name(format), tzinfo=_zone(context, tz), locale=_locale(context, locale)
    )


@pass_context
def time_filter(
    context: Context, value: Any, format: Any = "short", tz: Any = None, locale: Any = None
) -> Any:
    """The time of day in `tz` as `format`."""
    if isinstance(value, Undefined) or value is None:
        return "" if value is None else value
    moment = _as_datetime(value, "time")
    if not isinstance(moment, datetime):
        raise FilterError(f"time: {value!r} has no time of day")
    return format_time(
        moment, _format_name(format), tzinfo=_zone(context, tz), locale=_locale(context, locale)
    )


def _decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool):
        raise FilterError(f"{name}: {value!r} is not a number")
    try:
        # Through str: 0.1 is "0.1", not 0.1000000000000000055511151231257827.
        result = Decimal(value) if isinstance(value, int | Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise FilterError(f"{name}: {value!r} is not a number") from None
    if not result.is_finite():
        raise FilterError(f"{name}: {value!r} is not a finite number")
    return result


@pass_context
def money(context: Context, amount: Any, currency: Any, locale: Any = None) -> Any:
    """`amount` (a number or numeric string, in major units: 12.5 is 12.50)
    in `currency` (ISO 4217, `EUR`) the way `locale` writes money."""
    if isinstance(amount, Undefined) or amount is None:
        return "" if amount is None else amount
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise FilterError(f"money: currency must be an ISO 4217 code such as EUR: {currency!r}")
    return _format_money(_decimal(amount, "money"), currency, _locale(context, locale))


@lru_cache(maxsize=4096)
def _format_money(amount: Decimal, currency: str, locale: Locale) -> str:
    # Babel takes ~20 µs a call; order lines and prices repeat across a campaign.
    return format_currency(amount, currency, locale=locale)


@pass_context
def number(context: Context, value: Any, locale: Any = None) -> Any:
    """A number with the locale's grouping and decimal separators."""
    if isinstance(value, Undefined) or value is None:
        return "" if value is None else value
    return format_decimal(_decimal(value, "number"), locale=_locale(context, locale))


FILTERS: dict[str, Any] = {
    "date": date_filter,
    "datetime": datetime_filter,
    "time": time_filter,
    "money": money,
    "number": number,
}
# The same, callable as functions: `{{ money(total, "EUR") }}`.
FUNCTIONS: dict[str, Any] = {"money": money}
