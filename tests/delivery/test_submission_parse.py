"""Reading a submitted message into a send request (submission_parse.py):
recipients from the envelope, content, options; and whatever bytes arrive,
the parser answers with a request or a refusal, never a crash."""

from __future__ import annotations

import base64
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sendstream.delivery.submission_parse import Refused, parse_submission


def raw(**headers: str) -> bytes:
    mail = EmailMessage()
    mail["From"] = headers.pop("From", "Acme <news@acme.example>")
    for name, value in headers.items():
        mail[name.replace("_", "-")] = value
    mail.set_content("Hello")
    return mail.as_bytes()


class TestRecipients:
    def test_one_to_keeps_cc_and_makes_envelope_only_recipients_bcc(self) -> None:
        found = parse_submission(
            raw(To="Ada <ada@example.com>", Cc="bob@example.com"),
            ["ADA@example.com", "bob@example.com", "hidden@example.com"],
            "app@acme.example",
        )
        assert found.body["to"] == {"email": "ADA@example.com", "name": "Ada"}
        assert found.body["cc"] == [{"email": "bob@example.com"}]
        assert found.body["bcc"] == [{"email": "hidden@example.com"}]
        assert found.rows == 1

    def test_header_addresses_not_in_the_envelope_get_nothing(self) -> None:
        found = parse_submission(
            raw(To="ada@example.com", Cc="nope@example.com"), ["ada@example.com"], ""
        )
        assert found.body["to"] == {"email": "ada@example.com"}
        assert "cc" not in found.body

    def test_undisclosed_recipients_each_get_a_message(self) -> None:
        found = parse_submission(
            raw(To="undisclosed-recipients:;"), ["a@example.com", "b@example.com"], ""
        )
        assert found.body["to"] == [{"email": "a@example.com"}, {"email": "b@example.com"}]
        assert found.rows == 2

    def test_from_falls_back_to_the_envelope_sender(self) -> None:
        mail = b"To: ada@example.com\r\nSubject: x\r\n\r\nhi\r\n"
        found = parse_submission(mail, ["ada@example.com"], "app@acme.example")
        assert found.body["from"] == {"email": "app@acme.example"}
        with pytest.raises(Refused) as caught:
            parse_submission(mail, ["ada@example.com"], "<>")
        assert caught.value.reply.startswith("550 5.7.1 from_required")


class TestContent:
    def test_encoded_subject_and_names_are_decoded(self) -> None:
        found = parse_submission(
            raw(To="Zoë <zoe@example.com>", Subject="Grüße aus Köln"), ["zoe@example.com"], ""
        )
        assert found.body["subject"] == "Grüße aus Köln"
        assert found.body["to"]["name"] == "Zoë"

    def test_alternative_bodies_and_inline_image(self) -> None:
        mail = EmailMessage()
        mail["From"] = "news@acme.example"
        mail["To"] = "ada@example.com"
        mail.set_content("plain\n")
        mail.add_alternative('<p>html <img src="cid:logo"></p>', subtype="html")
        html = mail.get_payload()[1]
        html.add_related(b"\x89PNG....", maintype="image", subtype="png", cid="<logo>")
        found = parse_submission(mail.as_bytes(), ["ada@example.com"], "")
        assert found.body["text"] == "plain\n"
        assert "<img" in found.body["html"]
        [image] = found.body["attachments"]
        assert image["content_id"] == "logo"
        assert base64.b64decode(image["content"]) == b"\x89PNG...."

    def test_an_unknown_charset_is_read_as_utf8(self) -> None:
        mail = (
            b"From: a@acme.example\r\nTo: b@example.com\r\n"
            b"Content-Type: text/plain; charset=x-nonsense\r\n\r\nK\xc3\xb6ln\r\n"
        )
        found = parse_submission(mail, ["b@example.com"], "")
        assert found.body["text"] == "Köln\n"

    def test_an_attached_message_is_one_file(self) -> None:
        inner = EmailMessage()
        inner["Subject"] = "forwarded"
        inner.set_content("old")
        mail = EmailMessage()
        mail["From"] = "a@acme.example"
        mail["To"] = "b@example.com"
        mail.set_content("see attached")
        mail.add_attachment(inner)
        found = parse_submission(mail.as_bytes(), ["b@example.com"], "")
        [attached] = found.body["attachments"]
        assert attached["content_type"] == "application/octet-stream"
        assert b"forwarded" in base64.b64decode(attached["content"])

    def test_fields_sendstream_writes_are_dropped_and_others_kept(self) -> None:
        found = parse_submission(
            raw(
                To="b@example.com",
                Message_ID="<x@y>",
                Date="Mon, 1 Jan 2024 00:00:00 +0000",
                List_Unsubscribe="<https://app.example/u>",
                X_Mailer="PHPMailer",
                References="<a@b>",
            ),
            ["b@example.com"],
            "",
        )
        assert found.body["headers"] == {"X-Mailer": "PHPMailer", "References": "<a@b>"}


class TestOptions:
    def test_template_with_data_replaces_the_content(self) -> None:
        found = parse_submission(
            raw(
                To="b@example.com",
                Subject="ignored",
                X_Sendstream_Template="welcome",
                X_Sendstream_Data='{"name": "Bo"}',
            ),
            ["b@example.com"],
            "",
        )
        assert found.body["template"] == "welcome"
        assert found.body["data"] == {"name": "Bo"}
        assert "subject" not in found.body
        assert "text" not in found.body

    def test_data_without_template_is_refused(self) -> None:
        with pytest.raises(Refused, match="needs X-Sendstream-Template"):
            parse_submission(raw(To="b@example.com", X_Sendstream_Data="{}"), ["b@example.com"], "")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_any_bytes_give_a_request_or_a_refusal(data: bytes) -> None:
    reply = None
    try:
        found = parse_submission(data, ["ada@example.com"], "app@acme.example")
    except Refused as refused:
        reply = refused.reply
    if reply is not None:
        assert reply[:3].isdigit()
        assert "\r" not in reply
        assert "\n" not in reply
    else:
        assert found.rows == 1


_header_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "To",
                "Cc",
                "From",
                "Subject",
                "Reply-To",
                "Content-Type",
                "X-Sendstream-Tags",
                "X-Sendstream-Stream",
                "X-Sendstream-Metadata",
                "Content-Transfer-Encoding",
            ]
        ),
        _header_text,
    ),
    _header_text,
)
def test_any_headers_give_a_request_or_a_refusal(headers: dict[str, str], body: str) -> None:
    lines = [f"{name}: {value}" for name, value in headers.items()]
    data = ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8", "surrogateescape")
    try:
        found = parse_submission(data, ["ada@example.com", "bob@example.com"], "a@acme.example")
    except Refused:
        return
    assert found.rows in (1, 2)
    assert isinstance(found.body.get("text", ""), str)
