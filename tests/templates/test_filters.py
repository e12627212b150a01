"""The date, time, money and number filters: CLDR formats, time zones,
locales from the contact, and a clear error for values they cannot format."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Any

import pytest

from sendstream.templates import filters
from sendstream.templates.errors import TemplateRenderError
from sendstream.templates.render import RenderContext
from sendstream.templates.sandbox import RenderLimits
from tests.templates.helpers import compiled, render_text, version

# 23:30 UTC on 1 March is already 2 March in Paris and still 1 March in New York.
LATE = "2026-03-01T23:30:00Z"


class TestLocaleLoading:
    def test_loading_a_locale_s_data_does_not_count_against_the_time_limit(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Babel reads a locale from disk on its first use; make that slow.
        real_parse = filters.Locale.parse

        def slow_parse(identifier: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(identifier, str):
                time.sleep(0.3)
            return real_parse(identifier, *args, **kwargs)

        monkeypatch.setattr(filters.Locale, "parse", slow_parse)
        filters._parse_locale.cache_clear()
        try:
            main = version(text="{{ t|date('medium', locale='it-IT') }}")
            rendered = compiled(main, limits=RenderLimits(100, 1_000_000, 1000)).render(
                RenderContext(data={"t": LATE})
            )
        finally:
            filters._parse_locale.cache_clear()

        assert rendered.text == "1 mar 2026"


class TestDates:
    def test_date_in_the_given_time_zone(self) -> None:
        assert render_text("{{ t|date('yyyy-MM-dd', tz='Europe/Paris') }}", t=LATE) == "2026-03-02"
        assert (
            render_text("{{ t|date('yyyy-MM-dd', tz='America/New_York') }}", t=LATE) == "2026-03-01"
        )

    def test_datetime_with_zone_and_locale(self) -> None:
        assert (
            render_text("{{ t|datetime('medium', tz='Europe/Paris', locale='fr-FR') }}", t=LATE)
            == "2 mars 2026, 00:30:00"
        )
        assert (
            render_text("{{ t|datetime('long', tz='America/New_York', locale='en-US') }}", t=LATE)
            == "March 1, 2026, 6:30:00\u202fPM EST"
        )

    def test_locale_and_zone_default_to_the_contacts(self) -> None:
        main = version(subject="s", text="{{ data.t|date('full') }} {{ data.t|time }}")
        rendered = compiled(main).render(
            RenderContext(contact={"locale": "de-DE", "timezone": "Asia/Tokyo"}, data={"t": LATE})
        )
        assert rendered.text == "Montag, 2. März 2026 08:30"

    def test_a_contact_locale_cldr_does_not_know_falls_back_instead_of_failing(self) -> None:
        main = version(subject="s", text="{{ data.t|date }}")
        rendered = compiled(main).render(
            RenderContext(contact={"locale": "xx-YY", "timezone": "Not/AZone"}, data={"t": LATE})
        )
        assert rendered.text == "Mar 1, 2026"

    @pytest.mark.parametrize(
        "value",
        [
            datetime(2026, 3, 1, 23, 30, tzinfo=UTC),
            datetime(2026, 3, 1, 23, 30),  # noqa: DTZ001  (naive values are read as UTC)
            1772407800,
        ],
    )
    def test_datetimes_naive_datetimes_and_unix_times(self, value: object) -> None:
        assert render_text("{{ t|datetime('yyyy-MM-dd HH:mm') }}", t=value) == "2026-03-01 23:30"

    def test_plain_dates_and_patterns(self) -> None:
        assert (
            render_text("{{ t|date('d MMMM y', locale='fr') }}", t="2026-07-14")
            == "14 juillet 2026"
        )
        assert render_text("{{ t|date('short', locale='en-GB') }}", t=date(2026, 7, 14)) == (
            "14/07/2026"
        )

    def test_missing_values_print_nothing(self) -> None:
        assert render_text("[{{ data.nothing|date }}][{{ none|datetime }}]", none=None) == "[][]"

    @pytest.mark.parametrize(
        ("source", "message"),
        [
            ("{{ 'soon'|date }}", "not an ISO 8601 date"),
            ("{{ t|date(tz='Mars/Olympus') }}", "unknown time zone 'Mars/Olympus'"),
            ("{{ t|date(locale='xx-YY') }}", "unknown locale 'xx-YY'"),
            ("{{ [1]|date }}", "cannot format a list as a date"),
        ],
    )
    def test_bad_values_are_render_errors_with_their_line(self, source: str, message: str) -> None:
        with pytest.raises(TemplateRenderError) as caught:
            render_text(f"first line\n{source}", t=LATE)
        [error] = caught.value.errors
        assert message in error["message"]
        assert error["line"] == 2
        assert error["column"] is not None


class TestMoney:
    @pytest.mark.parametrize(
        ("locale", "currency", "expected"),
        [
            ("en-US", "USD", "$1,234.50"),
            ("de-DE", "EUR", "1.234,50\u00a0€"),
            ("fr-FR", "EUR", "1\u202f234,50\u00a0€"),
            ("ja-JP", "JPY", "￥1,234"),
            ("en-IN", "INR", "₹1,234.50"),
        ],
    )
    def test_money_in_the_locale(self, locale: str, currency: str, expected: str) -> None:
        source = f"{{{{ 1234.5|money('{currency}', locale='{locale}') }}}}"
        assert render_text(source) == expected

    def test_money_as_a_function_and_from_strings(self) -> None:
        assert render_text("{{ money('19.99', 'EUR', 'en') }}") == "€19.99"
        assert render_text("{{ 0.1|money('USD', locale='en-US') }}") == "$0.10"

    def test_money_uses_the_contact_locale(self) -> None:
        main = version(subject="s", text="{{ data.total|money('EUR') }}")
        rendered = compiled(main).render(
            RenderContext(contact={"locale": "de-DE"}, data={"total": 5})
        )
        assert rendered.text == "5,00\u00a0€"

    @pytest.mark.parametrize(
        ("source", "message"),
        [
            ("{{ 'ten'|money('EUR') }}", "'ten' is not a number"),
            ("{{ 10|money('euro') }}", "ISO 4217"),
            ("{{ 'nan'|money('EUR') }}", "not a finite number"),
        ],
    )
    def test_bad_amounts_and_currencies(self, source: str, message: str) -> None:
        with pytest.raises(TemplateRenderError) as caught:
            render_text(source)
        assert message in caught.value.errors[0]["message"]

    def test_number_grouping(self) -> None:
        assert render_text("{{ 1234567.891|number(locale='de') }}") == "1.234.567,891"


class TestJinjaBuiltins:
    def test_default_title_and_truncate_still_work(self) -> None:
        assert render_text("{{ data.name|default('friend')|title }}") == "Friend"
        assert render_text("{{ 'a long sentence here'|truncate(10, leeway=0) }}") == "a long..."
