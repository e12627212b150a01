"""The MIME builder: structure, header encoding, injection refusal, body
encodings, and a property test that reads every built message back with the
stdlib parser and gets the input again."""

from __future__ import annotations

import base64
import email
import email.policy
import email.utils
import quopri
import re
import secrets
from datetime import UTC, datetime, timedelta, timezone
from email.header import decode_header, make_header
from email.message import EmailMessage, MIMEPart

import idna
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from sendstream.delivery.mime import (
    Address,
    Attachment,
    HeaderInjection,
    InvalidAddress,
    InvalidHeader,
    MessageParts,
    MimeError,
    build,
    new_message_id,
    normalize_text,
)

SENDER = Address("news@example.com", "Example News")
DATE = datetime(2026, 11, 26, 14, 30, 5, tzinfo=UTC)


def parts(**overrides: object) -> MessageParts:
    values: dict[str, object] = {
        "sender": SENDER,
        "to": [Address("jane@example.org", "Jane Doe")],
        "subject": "Hello",
        "text": "Hello Jane",
        "date": DATE,
        "message_id": "<m1@example.com>",
    }
    values.update(overrides)
    return MessageParts(**values)  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def header_block(raw: bytes) -> str:
    return raw[: raw.index(b"\r\n\r\n") + 2].decode("ascii")


def raw_field(raw: bytes, name: str) -> str:
    """A field's raw value, continuation lines included."""
    match = re.search(rf"^{name}:(.*(?:\r\n[ \t].*)*)\r\n", header_block(raw), re.M | re.I)
    assert match is not None, name
    return match.group(1)


def rfc2047_names(raw: bytes, field: str) -> list[tuple[str, str]]:
    """(display name, address) pairs read by RFC 2047 6.2 rules.

    The stdlib's new parser keeps the whitespace between two adjacent
    encoded-words of a display name (RFC 2047 6.2 says to drop it), so a long
    encoded name comes back with extra spaces; the legacy decoder follows the
    RFC and is used for names.
    """
    legacy = email.message_from_bytes(raw)
    pairs = email.utils.getaddresses(legacy.get_all(field, []))
    return [(str(make_header(decode_header(name))), address) for name, address in pairs]


def check_wire_format(raw: bytes) -> None:
    assert raw.endswith(b"\r\n")
    lines = raw.split(b"\r\n")[:-1]
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    assert all(len(line) <= 998 for line in lines)


class TestStructure:
    def test_text_only_is_a_single_text_part(self) -> None:
        message = parse(build(parts(text="Hi", html=None)))
        assert message.get_content_type() == "text/plain"
        assert not message.is_multipart()
        assert message.get_content() == "Hi\r\n"

    def test_html_only_is_a_single_html_part(self) -> None:
        message = parse(build(parts(text=None, html="<p>Hi</p>")))
        assert message.get_content_type() == "text/html"
        assert message.get_content() == "<p>Hi</p>\r\n"

    def test_text_and_html_are_alternatives_text_first(self) -> None:
        message = parse(build(parts(text="Hi", html="<p>Hi</p>")))
        assert message.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in message.iter_parts()] == [
            "text/plain",
            "text/html",
        ]

    def test_attachments_wrap_the_body_in_mixed(self) -> None:
        pdf = Attachment("invoice.pdf", "application/pdf", b"%PDF-1.7 ...")
        message = parse(build(parts(text="Hi", html="<p>Hi</p>", attachments=[pdf])))
        assert message.get_content_type() == "multipart/mixed"
        body, attached = list(message.iter_parts())
        assert body.get_content_type() == "multipart/alternative"
        assert attached.get_content_disposition() == "attachment"
        assert attached.get_filename() == "invoice.pdf"
        assert attached.get_content() == b"%PDF-1.7 ..."

    def test_inline_images_are_related_to_the_html(self) -> None:
        logo = Attachment("logo.png", "image/png", b"\x89PNG\r\n", content_id="logo@example.com")
        html = '<img src="cid:logo@example.com">'
        message = parse(build(parts(text="Hi", html=html, attachments=[logo])))
        assert message.get_content_type() == "multipart/alternative"
        text, related = list(message.iter_parts())
        assert text.get_content_type() == "text/plain"
        assert related.get_content_type() == "multipart/related"
        assert related.get_param("type") == "text/html"
        html_part, image = list(related.iter_parts())
        assert html_part.get_content_type() == "text/html"
        assert image["Content-ID"] == "<logo@example.com>"
        assert image.get_content_disposition() == "inline"
        assert image.get_content() == b"\x89PNG\r\n"

    def test_inline_and_ordinary_attachments_together(self) -> None:
        logo = Attachment("logo.png", "image/png", b"png", content_id="<logo>")
        pdf = Attachment("a.pdf", "application/pdf", b"pdf")
        message = parse(build(parts(text=None, html="<p/>", attachments=[logo, pdf])))
        assert message.get_content_type() == "multipart/mixed"
        related, attached = list(message.iter_parts())
        assert related.get_content_type() == "multipart/related"
        assert attached.get_filename() == "a.pdf"
        assert list(related.iter_parts())[1]["Content-ID"] == "<logo>"

    def test_inline_part_without_html_is_sent_as_an_attachment(self) -> None:
        logo = Attachment("logo.png", "image/png", b"png", content_id="logo")
        message = parse(build(parts(text="Hi", attachments=[logo])))
        assert message.get_content_type() == "multipart/mixed"
        assert list(message.iter_parts())[1].get_content_disposition() == "attachment"

    def test_attachments_without_a_body(self) -> None:
        pdf = Attachment("a.pdf", "application/pdf", b"pdf")
        message = parse(build(parts(text=None, attachments=[pdf])))
        assert [p.get_filename() for p in message.iter_parts()] == ["a.pdf"]

    def test_no_body_at_all_is_an_empty_text_part(self) -> None:
        raw = build(parts(text=None))
        assert parse(raw).get_content_type() == "text/plain"
        assert raw.endswith(b"\r\n\r\n")

    def test_boundary_is_never_one_that_occurs_in_the_content(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        taken = "0123456789abcdef01234567"
        fresh = iter([taken, taken, "fedcba9876543210fedcba98"])
        monkeypatch.setattr(secrets, "token_hex", lambda _n: next(fresh))
        raw = build(parts(text=f"see --=_{taken} here", html="<p/>"))
        message = parse(raw)
        assert message.get_boundary() == "=_fedcba9876543210fedcba98"
        assert next(message.iter_parts()).get_content() == f"see --=_{taken} here\r\n"

    @pytest.mark.parametrize("content_type", ["message/rfc822", "multipart/mixed", "pdf", "a/b c"])
    def test_unusable_attachment_content_types_are_refused(self, content_type: str) -> None:
        with pytest.raises(MimeError, match="attachment"):
            build(parts(attachments=[Attachment("x", content_type, b"")]))

    def test_empty_attachment_file_name_is_refused(self) -> None:
        with pytest.raises(MimeError, match="file name"):
            build(parts(attachments=[Attachment("", "text/plain", b"")]))


class TestStandardHeaders:
    def test_date_message_id_and_mime_version(self) -> None:
        when = datetime(2026, 3, 1, 9, 5, 0, tzinfo=timezone(timedelta(hours=-5)))
        raw = build(parts(date=when, message_id="<abc.123@example.com>"))
        block = header_block(raw)
        assert "Date: Sun, 01 Mar 2026 09:05:00 -0500\r\n" in block
        assert "Message-ID: <abc.123@example.com>\r\n" in block
        assert "MIME-Version: 1.0\r\n" in block
        assert parse(raw)["Date"].datetime == when

    def test_missing_message_id_and_date_are_filled_in(self) -> None:
        raw = build(parts(message_id=None, date=None))
        message = parse(raw)
        assert re.fullmatch(r"<[A-Za-z0-9_-]{24}@example\.com>", message["Message-ID"])
        assert abs(message["Date"].datetime - datetime.now(UTC)) < timedelta(minutes=1)

    def test_naive_date_is_refused(self) -> None:
        with pytest.raises(MimeError, match="timezone-aware"):
            build(parts(date=datetime(2026, 1, 1)))  # noqa: DTZ001

    @pytest.mark.parametrize("value", ["abc@example.com", "<abc>", "<a b@c>", "<a@b>x"])
    def test_malformed_message_id_is_refused(self, value: str) -> None:
        with pytest.raises(InvalidHeader, match="Message-ID"):
            build(parts(message_id=value))

    def test_new_message_ids_are_unique_and_use_a_labels(self) -> None:
        ids = {new_message_id("bücher.example") for _ in range(1000)}
        assert len(ids) == 1000
        assert all(i.endswith("@xn--bcher-kva.example>") for i in ids)

    def test_bcc_is_not_a_field_of_the_message(self) -> None:
        with pytest.raises(InvalidHeader, match="Bcc"):
            build(parts(headers=[("Bcc", "x@example.com")]))


class TestAddressHeaders:
    def test_plain_names_stay_readable(self) -> None:
        raw = build(parts(to=[Address("jane@example.org", "Jane Doe"), Address("bob@example.org")]))
        assert raw_field(raw, "To") == " Jane Doe <jane@example.org>, bob@example.org"

    @pytest.mark.parametrize(
        ("name", "wire"),
        [
            ("Doe, Jane", '"Doe, Jane"'),
            ('Jane "JD" Doe', r'"Jane \"JD\" Doe"'),
            ("J. Doe (Sales)", '"J. Doe (Sales)"'),
            ("back\\slash", r'"back\\slash"'),
            ("a@b", '"a@b"'),
        ],
    )
    def test_names_with_specials_are_quoted(self, name: str, wire: str) -> None:
        raw = build(parts(to=[Address("jane@example.org", name)]))
        assert raw_field(raw, "To") == f" {wire} <jane@example.org>"
        assert parse(raw)["To"].addresses[0].display_name == name

    def test_non_ascii_names_are_encoded_words(self) -> None:
        raw = build(parts(sender=Address("news@example.com", "Friedrich Dürrenmatt")))
        assert raw_field(raw, "From") == (
            " =?utf-8?q?Friedrich_D=C3=BCrrenmatt?= <news@example.com>"
        )
        assert parse(raw)["From"].addresses[0].display_name == "Friedrich Dürrenmatt"

    def test_a_name_that_looks_encoded_is_encoded(self) -> None:
        raw = build(parts(to=[Address("jane@example.org", "=?utf-8?q?x?=")]))
        assert "=?utf-8?q?x?=" not in raw_field(raw, "To")
        assert parse(raw)["To"].addresses[0].display_name == "=?utf-8?q?x?="

    def test_long_names_fold_within_78_and_read_back(self) -> None:
        name = "株式会社サンプル・エンタープライズ・ソリューションズ 営業部 お問い合わせ窓口 " * 2
        to = [Address(f"user{i}@example.org", name) for i in range(3)]
        raw = build(parts(to=to))
        assert all(len(line) <= 78 for line in header_block(raw).split("\r\n"))
        assert rfc2047_names(raw, "To") == [(name, f"user{i}@example.org") for i in range(3)]

    def test_domains_become_a_labels(self) -> None:
        raw = build(parts(to=[Address("jose@bücher.example"), Address("x@例え.テスト")]))
        assert raw_field(raw, "To") == (
            f" jose@xn--bcher-kva.example, x@{idna.encode('例え.テスト').decode()}"
        )

    def test_non_ascii_local_part_is_refused(self) -> None:
        with pytest.raises(InvalidAddress, match="SMTPUTF8"):
            build(parts(to=[Address("josé@example.org")]))

    def test_quoted_local_part_is_kept(self) -> None:
        raw = build(parts(to=[Address('"john doe"@example.org')]))
        assert parse(raw)["To"].addresses[0].addr_spec == '"john doe"@example.org'

    @pytest.mark.parametrize(
        "address",
        ["", "jane", "@example.org", "jane@", "a..b@example.org", "a@-x.org", "a@b_c.org"],
    )
    def test_malformed_addresses_are_refused(self, address: str) -> None:
        with pytest.raises(InvalidAddress):
            build(parts(to=[Address(address)]))


class TestSubject:
    def test_ascii_subject_is_sent_as_it_is(self) -> None:
        assert raw_field(build(parts(subject="Your order  #12\tshipped")), "Subject") == (
            " Your order  #12\tshipped"
        )

    def test_latin_text_uses_q_and_cjk_uses_b(self) -> None:
        latin = raw_field(build(parts(subject="Your café order is ready")), "Subject")
        cjk = raw_field(build(parts(subject="ご注文の商品を発送しました")), "Subject")
        assert latin.startswith(" =?utf-8?q?")
        assert cjk.startswith(" =?utf-8?b?")

    def test_encoded_words_hold_whole_characters(self) -> None:
        subject = "é😀日" * 40
        raw = build(parts(subject=subject))
        words = re.findall(r"=\?utf-8\?([bq])\?([^?]*)\?=", raw_field(raw, "Subject"))
        assert len(words) > 3
        decoded = []
        for kind, text in words:
            data = base64.b64decode(text) if kind == "b" else quopri.decodestring(text, header=True)
            decoded.append(data.decode("utf-8"))  # raises if a character was split
            assert len(f"=?utf-8?{kind}?{text}?=") <= 75
        assert "".join(decoded) == subject
        assert parse(raw)["Subject"] == subject

    def test_long_subjects_fold_within_78(self) -> None:
        for subject in ["word " * 60, "ü" * 300, "x" * 200, "a " + "y" * 90]:
            raw = build(parts(subject=subject))
            assert all(len(line) <= 78 for line in header_block(raw).split("\r\n")), subject
            assert parse(raw)["Subject"] == subject

    @pytest.mark.parametrize("subject", [" leading", "trailing ", "=?utf-8?q?hi?=", "bell\x07"])
    def test_text_a_reader_would_alter_is_encoded(self, subject: str) -> None:
        raw = build(parts(subject=subject))
        assert raw_field(raw, "Subject").startswith(" =?utf-8?")
        assert parse(raw)["Subject"] == subject


class TestExtraHeaders:
    def test_kept_in_order_after_the_standard_fields(self) -> None:
        headers = [
            ("List-Unsubscribe", "<https://t.example.com/u/abc>, <mailto:u@example.com>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("X-Campaign", "spring"),
            ("X-Campaign", "été"),
        ]
        raw = build(parts(headers=headers))
        message = parse(raw)
        assert message.get_all("X-Campaign") == ["spring", "été"]
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        block = header_block(raw)
        assert block.index("List-Unsubscribe:") < block.index("X-Campaign: spring")
        assert block.index("Message-ID:") < block.index("List-Unsubscribe:")

    def test_long_structured_value_folds_at_its_spaces(self) -> None:
        urls = ", ".join(f"<https://t.example.com/unsubscribe/{i}/{'a' * 30}>" for i in range(4))
        raw = build(parts(headers=[("List-Unsubscribe", urls)]))
        assert raw_field(raw, "List-Unsubscribe").replace("\r\n", "") == " " + urls
        assert all(len(line) <= 78 for line in header_block(raw).split("\r\n"))

    @pytest.mark.parametrize(
        "name",
        ["From", "to", "DKIM-Signature", "content-type", "Content-Foo", "MIME-Version",
         "Message-ID", "Date", "Subject", "Return-Path", "Received", "Sender"],
    )  # fmt: skip
    def test_reserved_names_are_refused(self, name: str) -> None:
        with pytest.raises(InvalidHeader, match="set by Sendstream"):
            build(parts(headers=[(name, "x")]))

    @pytest.mark.parametrize("name", ["", "X Bad", "X:Bad", "X-Ünï", "X-\x7f"])
    def test_malformed_names_are_refused(self, name: str) -> None:
        with pytest.raises(InvalidHeader, match="header name"):
            build(parts(headers=[(name, "x")]))

    def test_structured_fields_must_be_ascii(self) -> None:
        with pytest.raises(InvalidHeader, match="printable ASCII"):
            build(parts(headers=[("List-Unsubscribe", "<https://ü.example/u>")]))

    def test_a_word_longer_than_a_line_can_be_is_refused(self) -> None:
        with pytest.raises(InvalidHeader, match="998"):
            build(parts(headers=[("List-Unsubscribe", f"<https://x.example/{'a' * 1000}>")]))


class TestHeaderInjection:
    @pytest.mark.parametrize("bad", ["\r", "\n", "\r\n", "\x00"])
    @pytest.mark.parametrize(
        ("where", "header"),
        [
            ("subject", "Subject"),
            ("to_name", "To"),
            ("to_address", "To"),
            ("sender_name", "From"),
            ("reply_to", "Reply-To"),
            ("header_value", "X-Tag"),
            ("header_name", "header name"),
            ("structured_value", "List-Unsubscribe"),
            ("filename", "attachment name"),
            ("content_type", "attachment content type"),
            ("content_id", "Content-ID"),
            ("message_id", "Message-ID"),
        ],
    )
    def test_cr_lf_and_nul_are_refused_naming_the_header(
        self, bad: str, where: str, header: str
    ) -> None:
        evil = f"x{bad}Bcc: victim@example.net"
        cases: dict[str, dict[str, object]] = {
            "subject": {"subject": evil},
            "to_name": {"to": [Address("a@example.org", evil)]},
            "to_address": {"to": [Address(f"a{bad}@example.org")]},
            "sender_name": {"sender": Address("a@example.com", evil)},
            "reply_to": {"reply_to": [Address(f"a@example.org{bad}")]},
            "header_value": {"headers": [("X-Tag", evil)]},
            "header_name": {"headers": [(f"X{bad}Tag", "x")]},
            "structured_value": {"headers": [("List-Unsubscribe", f"<https://x{bad}>")]},
            "filename": {"attachments": [Attachment(evil, "text/plain", b"")]},
            "content_type": {"attachments": [Attachment("a", f"text/plain{bad}", b"")]},
            "content_id": {
                "html": "<p/>",
                "attachments": [Attachment("a", "image/png", b"", content_id=evil)],
            },
            "message_id": {"message_id": f"<a{bad}@b>"},
        }
        with pytest.raises(HeaderInjection) as caught:
            build(parts(**cases[where]))
        assert caught.value.header == header
        assert isinstance(caught.value, ValueError)


class TestBodies:
    def cte(self, raw: bytes) -> str:
        return str(parse(raw)["Content-Transfer-Encoding"])

    def test_short_ascii_lines_are_7bit(self) -> None:
        raw = build(parts(text="Hello\nworld\n"))
        assert self.cte(raw) == "7bit"
        assert raw.endswith(b"\r\n\r\nHello\r\nworld\r\n")

    def test_mostly_ascii_is_quoted_printable(self) -> None:
        raw = build(parts(text="Hello José, your order is ready. " * 10))
        assert self.cte(raw) == "quoted-printable"

    def test_mostly_non_ascii_is_base64(self) -> None:
        raw = build(parts(text="ご注文ありがとうございます。" * 20))
        assert self.cte(raw) == "base64"
        body = raw[raw.index(b"\r\n\r\n") + 4 :]
        assert all(len(line) <= 76 for line in body.split(b"\r\n"))

    def test_a_line_over_998_octets_is_quoted_printable(self) -> None:
        raw = build(parts(text="a" * 5000))
        assert self.cte(raw) == "quoted-printable"
        assert parse(raw).get_content() == "a" * 5000 + "\r\n"

    def test_nul_is_never_sent_raw(self) -> None:
        raw = build(parts(text="a\x00b"))
        assert self.cte(raw) == "quoted-printable"
        assert b"\x00" not in raw

    def test_trailing_spaces_survive_quoted_printable(self) -> None:
        raw = build(parts(text="ü  \nend"))
        assert parse(raw).get_content() == "ü  \r\nend\r\n"

    @pytest.mark.parametrize(
        ("given", "sent"),
        [
            ("a\nb", "a\r\nb\r\n"),
            ("a\rb\r", "a\r\nb\r\n"),
            ("a\r\n\r\nb\n\r", "a\r\n\r\nb\r\n\r\n"),
            ("", ""),
        ],
    )
    def test_line_ends_are_normalised_to_crlf(self, given: str, sent: str) -> None:
        assert normalize_text(given) == sent
        plain = parse(build(parts(text=given, html="<p/>"))).get_body(("plain",))
        assert plain is not None
        assert plain.get_content() == sent

    def test_lone_surrogates_are_refused(self) -> None:
        with pytest.raises(MimeError, match="not valid Unicode"):
            build(parts(text="a\ud800b"))

    def test_non_ascii_file_names_use_rfc_2231(self) -> None:
        name = "Rechnung März 2026 — Übersicht der Bestellungen und Lieferungen 🚚.pdf"
        raw = build(parts(attachments=[Attachment(name, "application/pdf", b"x")]))
        assert "filename*0*=utf-8''Rechnung%20M%C3%A4rz" in raw.decode()
        assert all(len(line) <= 78 for line in raw.decode().split("\r\n"))
        assert next(parse(raw).iter_attachments()).get_filename() == name

    def test_file_names_with_quotes_read_back(self) -> None:
        name = 'my "quoted" \\ file.txt'
        raw = build(parts(attachments=[Attachment(name, "text/plain", b"x")]))
        assert next(parse(raw).iter_attachments()).get_filename() == name


# --- the round trip


_HEADER_TEXT = st.one_of(
    st.text(
        alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x00"),
        max_size=120,
    ),
    st.text(alphabet=st.sampled_from('ab "\\\t=?_,;:<>@()[].ü日本😀'), max_size=40),
    st.text(alphabet=st.sampled_from("xé "), min_size=80, max_size=400),
)
_ATOM = st.text(alphabet=st.sampled_from("abcXYZ019!#$%&'*+/=?^_`{|}~-"), min_size=1, max_size=10)
_LOCAL = st.lists(_ATOM, min_size=1, max_size=3).map(".".join).filter(lambda s: len(s) <= 64)
_LABEL = st.sampled_from(["example", "mail", "x1", "bücher", "例え", "münchen", "a-b"])
_DOMAIN = st.lists(_LABEL, min_size=1, max_size=3).map(lambda labels: ".".join([*labels, "org"]))
_ADDRESS = st.builds(
    Address, address=st.builds("{}@{}".format, _LOCAL, _DOMAIN), name=st.none() | _HEADER_TEXT
)
_BODY = st.one_of(
    st.text(max_size=2000),
    st.text(alphabet=st.sampled_from("ab \t.\r\n=é日😀"), max_size=3000),
    st.builds(
        "".join,
        st.lists(
            st.sampled_from(["\r", "\n", "\r\n", ".", ". \n", "From x\n", "a" * 1100, "  \n"]),
            max_size=12,
        ),
    ),
)
_FILENAME = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x00"),
    min_size=1,
    max_size=90,
).filter(lambda name: name.strip() != "")
_ATTACHMENT = st.builds(
    Attachment,
    filename=_FILENAME,
    content_type=st.sampled_from(["application/pdf", "image/png", "text/csv", "text/plain"]),
    data=st.binary(max_size=1500),
    content_id=st.none() | st.text(alphabet=st.sampled_from("abc123.@-"), min_size=1, max_size=20),
)
_PARTS = st.builds(
    MessageParts,
    sender=_ADDRESS,
    to=st.lists(_ADDRESS, min_size=1, max_size=3),
    cc=st.lists(_ADDRESS, max_size=2),
    reply_to=st.lists(_ADDRESS, max_size=1),
    subject=_HEADER_TEXT,
    text=st.none() | _BODY,
    html=st.none() | _BODY,
    attachments=st.lists(_ATTACHMENT, max_size=3),
    headers=st.lists(st.tuples(st.sampled_from(["X-Tag", "X-Note"]), _HEADER_TEXT), max_size=2),
    date=st.just(DATE),
)


def _expected_addr_spec(address: Address) -> str:
    local, _, domain = address.address.rpartition("@")
    return f"{local}@{idna.encode(domain, uts46=True).decode()}"


def _bodies(message: EmailMessage) -> tuple[list[MIMEPart], list[MIMEPart]]:
    texts: list[MIMEPart] = []
    attachments: list[MIMEPart] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        if part.get_content_disposition() in ("attachment", "inline"):
            attachments.append(part)
        else:
            texts.append(part)
    return texts, attachments


class TestRoundTrip:
    @hypothesis_settings(
        max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(message_parts=_PARTS)
    def test_parsed_message_equals_the_input(self, message_parts: MessageParts) -> None:
        raw = build(message_parts)
        check_wire_format(raw)
        # Everything folds within 78 (RFC 5322's SHOULD) except what cannot be
        # split: a msg-id, or one address longer than a line (a 64-octet local
        # part at a long IDNA domain), which then stands alone on its line.
        head = header_block(raw).split("\r\n")
        assert all(
            len(line) <= 78 or " " not in line.strip()
            for line in head
            if not line.startswith("Message-ID:")
        )
        message = parse(raw)
        assert not message.defects

        assert message["Subject"] == message_parts.subject
        for field, given_addresses in [
            ("From", [message_parts.sender]),
            ("To", message_parts.to),
            ("Cc", message_parts.cc),
            ("Reply-To", message_parts.reply_to),
        ]:
            if not given_addresses:
                assert message[field] is None
                continue
            parsed = [a.addr_spec for a in message[field].addresses]
            assert parsed == [_expected_addr_spec(a) for a in given_addresses]
            assert rfc2047_names(raw, field) == [
                (a.name or "", _expected_addr_spec(a)) for a in given_addresses
            ]
        assert [(n, str(v)) for n, v in message.items() if n.startswith("X-")] == [
            (n, v.strip(" \t")) for n, v in message_parts.headers
        ]

        texts, attachments = _bodies(message)
        expected_texts = [
            (f"text/{kind}", normalize_text(body))
            for kind, body in [("plain", message_parts.text), ("html", message_parts.html)]
            if body is not None
        ]
        if not expected_texts and not message_parts.attachments:
            expected_texts = [("text/plain", "")]
        assert [(p.get_content_type(), p.get_content()) for p in texts] == expected_texts
        inline_ok = message_parts.html is not None
        expected_attachments = sorted(
            (a.filename.strip(), a.content_type, a.data, bool(a.content_id and inline_ok))
            for a in message_parts.attachments
        )
        got_attachments = sorted(
            (p.get_filename(), p.get_content_type(), p.get_payload(decode=True),
             p.get_content_disposition() == "inline")
            for p in attachments
        )  # fmt: skip
        assert got_attachments == expected_attachments
