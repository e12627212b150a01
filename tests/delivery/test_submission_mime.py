"""The relay's own MIME reader (`submission_parse.read_message`) builds the
very tree Python's feedparser builds, for the shapes it takes on, and
leaves everything else to the feedparser."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sendstream.delivery.submission_parse import _read_part, read_message

FEEDPARSER = BytesParser(policy=policy.compat32)


def tree(message: Message) -> dict[str, Any]:
    """Everything the feedparser sets on a message, parts included (not its
    defects: the fast path only takes messages that have none)."""
    found = {k: v for k, v in vars(message).items() if k not in ("defects", "policy")}
    payload = found.get("_payload")
    if isinstance(payload, list):
        found["_payload"] = [tree(part) for part in payload]
    return found


def crlf(mail: EmailMessage) -> bytes:
    """The message as SMTP carries it: CRLF line ends."""
    return mail.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def taken(raw: bytes) -> bool:
    """Whether the fast path reads it (rather than the feedparser)."""
    return _read_part(raw.decode("ascii", "surrogateescape"), "text/plain", False) is not None


def plain() -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "Acme <news@acme.example>"
    mail["To"] = "Ada <ada@example.com>"
    mail["Subject"] = "A subject long enough to be folded by the generator " * 3
    mail.set_content("Hello\n.leading dot\n\nbye\n")
    return mail


def alternative() -> EmailMessage:
    mail = plain()
    mail.add_alternative("<p>Hello <b>Ada</b> ünïcödé</p>", subtype="html")
    return mail


def mixed() -> EmailMessage:
    mail = alternative()
    mail.add_attachment(
        bytes(range(256)) * 4, maintype="application", subtype="pdf", filename="Rechnung.pdf"
    )
    mail.add_attachment("a,b\n1,2\n", subtype="csv", filename="data.csv")
    return mail


def related() -> EmailMessage:
    mail = plain()
    mail.add_alternative('<p><img src="cid:logo"></p>', subtype="html")
    html = mail.get_payload()[1]
    html.add_related(b"\x89PNG....", maintype="image", subtype="png", cid="<logo>")
    return mail


def eight_bit() -> EmailMessage:
    mail = plain()
    mail.set_content("Grüße aus Köln\n", cte="8bit")
    return mail


def quoted_printable() -> EmailMessage:
    mail = plain()
    mail.set_content("Grüße " * 40 + "\n", cte="quoted-printable")
    return mail


SHAPES = [plain, alternative, mixed, related, eight_bit, quoted_printable]

HAND_WRITTEN = [
    # preamble, boundary with trailing blanks, epilogue
    b'From: a@acme.example\r\nContent-Type: multipart/alternative; boundary="b1"\r\n\r\n'
    b"This is a preamble\r\n\r\n--b1  \r\nContent-Type: text/plain\r\n\r\nText\r\n\r\n"
    b"--b1\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--b1--\r\nepilogue\r\n",
    # a part without headers; the close boundary at the very end, no CRLF
    b"From: a@acme.example\r\nContent-Type: multipart/mixed; boundary=b2\r\n\r\n"
    b"--b2\r\n\r\nno headers\r\n--b2--",
    # nested multipart whose epilogue is empty, folded and empty header values
    b"From: a@acme.example\r\nSubject:\r\n folded\r\nX-Empty:\r\n"
    b"Content-Type: multipart/mixed;\r\n\tboundary=outer\r\n\r\n--outer\r\n"
    b"Content-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\n"
    b"Content-Type: text/plain\r\n\r\nt\r\n--inner--\r\n\r\n--outer\r\n"
    b"Content-Type: text/html\r\n\r\n<i>h</i>\r\n--outer--\r\n",
    # no headers at all
    b"\r\njust a body\r\n",
]

FEEDPARSER_ONLY = [
    b"From: a@acme.example\nSubject: bare LF\n\nbody\n",  # not CRLF
    b"From someone Mon Jan 1\r\nFrom: a@acme.example\r\n\r\nbody\r\n",  # unix From line
    b"From: a@acme.example\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
    b"--x\r\n\r\nno close boundary\r\n",
    b"From: a@acme.example\r\nContent-Type: message/rfc822\r\n\r\nFrom: b@c.example\r\n\r\nhi\r\n",
    b"From: a@acme.example\r\nContent-Type: multipart/mixed\r\n\r\nno boundary\r\n",
    b"not a header line\r\n\r\nbody\r\n",
    b"From: a@acme.example\r\nno blank line after the headers\r\n",
]


class TestSameTreeAsTheFeedparser:
    @pytest.mark.parametrize("shape", SHAPES, ids=lambda f: f.__name__)
    def test_common_messages_take_the_fast_path_and_read_the_same(self, shape: Any) -> None:
        raw = crlf(shape())
        assert taken(raw)
        assert tree(read_message(raw)) == tree(FEEDPARSER.parsebytes(raw))

    @pytest.mark.parametrize("raw", HAND_WRITTEN)
    def test_preambles_epilogues_and_nesting_read_the_same(self, raw: bytes) -> None:
        assert taken(raw)
        assert tree(read_message(raw)) == tree(FEEDPARSER.parsebytes(raw))

    @pytest.mark.parametrize("raw", FEEDPARSER_ONLY)
    def test_unusual_messages_go_to_the_feedparser(self, raw: bytes) -> None:
        assert not taken(raw)
        assert tree(read_message(raw)) == tree(FEEDPARSER.parsebytes(raw))


_LINE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
_PIECES = st.sampled_from(
    [
        "--b",
        "--b--",
        "--b \t",
        "--c",
        "--c--",
        "Content-Type: multipart/mixed; boundary=c",
        "Content-Type: multipart/alternative; boundary=b",
        "Content-Type: text/html",
        "Content-Type: message/rfc822",
        "X-A: 1",
        " folded",
        "",
        ".",
        "From x",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.one_of(_PIECES, _LINE), max_size=25),
    st.sampled_from(["\r\n", "\n"]),
    st.booleans(),
)
def test_any_text_reads_as_the_feedparser_reads_it(
    lines: list[str], end: str, multipart: bool
) -> None:
    head = "From: a@acme.example\r\n"
    if multipart:
        head += "Content-Type: multipart/mixed; boundary=b\r\n"
    raw = (head + "\r\n" + end.join(lines) + end).encode()
    assert tree(read_message(raw)) == tree(FEEDPARSER.parsebytes(raw))
