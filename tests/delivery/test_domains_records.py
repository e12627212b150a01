"""The pure rules behind sending domains: domain names, TXT string splitting
and SPF merging."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from sendstream.delivery.domain_records import (
    is_spf,
    normalize_domain_name,
    spf_includes,
    spf_with_include,
    txt_strings,
    unicode_name,
)
from sendstream.delivery.errors import InvalidDomainName

INCLUDE = "spf.sendstream.test"


class TestDomainNames:
    @pytest.mark.parametrize(
        ("raw", "stored"),
        [
            ("Example.COM", "example.com"),
            ("example.com.", "example.com"),
            ("  mail.example.co.uk ", "mail.example.co.uk"),
            ("bücher.example", "xn--bcher-kva.example"),
            ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
            ("straße.example", "xn--strae-oqa.example"),
            ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
            ("a-b.example", "a-b.example"),
        ],
    )
    def test_names_are_stored_as_lower_case_a_labels(self, raw: str, stored: str) -> None:
        assert normalize_domain_name(raw) == stored

    def test_a_label_reads_back_as_unicode(self) -> None:
        assert unicode_name("xn--bcher-kva.example") == "bücher.example"
        assert unicode_name("example.com") == "example.com"

    @hypothesis_settings(deadline=None, max_examples=300)
    @given(st.text(max_size=80))
    def test_any_text_is_refused_cleanly_or_normalised_for_good(self, raw: str) -> None:
        try:
            name = normalize_domain_name(raw)
        except InvalidDomainName:
            return  # the only exception allowed out
        assert name.isascii()
        assert name == name.lower()
        assert len(name) <= 253
        assert normalize_domain_name(name) == name
        assert normalize_domain_name(unicode_name(name)) == name


class TestTxtStrings:
    @given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=1200))
    def test_strings_rejoin_to_the_value_and_fit_dns(self, value: str) -> None:
        strings = txt_strings(value)
        assert "".join(strings) == value
        assert all(len(s.encode()) <= 255 for s in strings)


class TestSpf:
    @pytest.mark.parametrize(
        ("record", "spf"),
        [("v=spf1 -all", True), ("V=SPF1 mx", True), ("v=spf1", True), ("v=spf10 mx", False)],
    )
    def test_spf_records_are_recognised_by_their_version(self, record: str, spf: bool) -> None:
        assert is_spf(record) is spf

    @pytest.mark.parametrize(
        ("record", "included"),
        [
            (f"v=spf1 include:{INCLUDE} ~all", True),
            (f"v=spf1 +include:{INCLUDE.upper()}. -all", True),
            (f"v=spf1 -include:{INCLUDE} ~all", False),
            (f"v=spf1 ~include:{INCLUDE} ~all", False),
            (f"v=spf1 include:x{INCLUDE} ~all", False),
        ],
    )
    def test_only_a_passing_include_counts(self, record: str, included: bool) -> None:
        assert spf_includes(record, INCLUDE) is included

    @pytest.mark.parametrize(
        ("existing", "merged"),
        [
            (["v=spf1 mx -all"], f"v=spf1 mx include:{INCLUDE} -all"),
            (["v=spf1 a"], f"v=spf1 a include:{INCLUDE} ~all"),
            (
                ["v=spf1 ip4:192.0.2.1 redirect=_spf.example"],
                f"v=spf1 ip4:192.0.2.1 include:{INCLUDE} redirect=_spf.example",
            ),
            ([f"v=spf1 include:{INCLUDE} -all"], f"v=spf1 include:{INCLUDE} -all"),
            (
                ["v=spf1 mx ~all", "v=spf1 include:other.example MX -all"],
                f"v=spf1 mx include:other.example include:{INCLUDE} ~all",
            ),
        ],
    )
    def test_our_include_goes_before_the_final_term(self, existing: list[str], merged: str) -> None:
        assert spf_with_include(existing, INCLUDE) == merged
