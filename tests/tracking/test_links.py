"""The HTML rewrite and the unsubscribe headers the delivery pipeline puts
into each message: links become signed redirects, a pixel is added once,
and every other byte of the HTML stays as it was."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from sendstream.core.settings import Settings, override_settings
from sendstream.tracking import links
from sendstream.tracking.links import TrackingContext, rewrite_html, unsubscribe_headers
from sendstream.tracking.tokens import Kind, read_mailto_local_part, read_token

BASE = "https://track.example.com"
CLICK = re.compile(r'"https://track\.example\.com/t/c/([A-Za-z0-9_-]+)"')
PIXEL = re.compile(r'<img src="https://track\.example\.com/t/o/[A-Za-z0-9_-]+"[^>]*/>')
TRAP = re.compile(
    r'<a href="https://track\.example\.com/t/c/[A-Za-z0-9_-]+" style="display:none"[^>]*></a>'
)


def context(**changes: object) -> TrackingContext:
    values: dict[str, object] = {
        "workspace_id": uuid.uuid4(),
        "message_id": uuid.uuid4(),
        "contact_id": uuid.uuid4(),
        "list_id": uuid.uuid4(),
        "email": "ada@example.com",
        "track_opens": True,
        "track_clicks": True,
        "base_url": BASE,
    }
    values.update(changes)
    return TrackingContext(**values)  # type: ignore[arg-type]


@pytest.fixture
def no_trap(settings: Settings) -> Iterator[None]:
    tracking = settings.tracking.model_copy(update={"trap_link": False})
    override_settings(settings.model_copy(update={"tracking": tracking}))
    yield
    override_settings(settings)


def clicked_urls(html: str) -> list[str]:
    """The URLs of the click links, the trap link left out."""
    return [read_token(t, Kind.CLICK).url or "" for t in CLICK.findall(TRAP.sub("", html))]


def undo(rewritten: str) -> str:
    """The rewrite taken back: pixel and trap removed, each click link
    replaced by the (re-escaped) URL it carries."""
    text = PIXEL.sub("", TRAP.sub("", rewritten))
    return CLICK.sub(lambda m: '"' + (read_token(m.group(1), Kind.CLICK).url or "") + '"', text)


class TestClickLinks:
    def test_http_links_become_signed_redirects_to_the_same_url(self, settings: Settings) -> None:
        html = '<p><a href="https://a.example/x?y=1">A</a> <a href="http://b.example/">B</a></p>'
        out = rewrite_html(html, context(track_opens=False))
        assert clicked_urls(out) == ["https://a.example/x?y=1", "http://b.example/"]
        assert "a.example" not in CLICK.sub("", out)

    def test_everything_but_the_href_values_stays_byte_identical(
        self, settings: Settings, no_trap: None
    ) -> None:
        html = (
            "<!DOCTYPE html>\n<html><head><title>Hi <a href='https://no.example'></title>"
            "<style>a[href]{color:red}</style></head>\r\n<body class=x>"
            '<A HREF="https://one.example/p"  target=_blank\tstyle="c:d">One</A>'
            "<a data-x='1' href='https://two.example/'>Two</a>"
            "<a href=https://three.example/q>3</a>\n  <p>Text &amp; more</p>"
            "</body></html>"
        )
        out = rewrite_html(html, context(track_opens=False))
        assert clicked_urls(out) == [
            "https://one.example/p",
            "https://two.example/",
            "https://three.example/q",
        ]
        # Quotes become double quotes where the value was rewritten; nothing else moves.
        expected = html.replace("'https://two.example/'", '"https://two.example/"').replace(
            "href=https://three.example/q", 'href="https://three.example/q"'
        )
        assert undo(out) == expected

    @pytest.mark.parametrize(
        "href",
        [
            "mailto:ada@example.com",
            "tel:+441234567",
            "#top",
            "/relative/path",
            "ftp://files.example/x",
            "javascript:alert(1)",
            "https://x.example/{{ contact.id }}",
            "https://x.example/{% if a %}b{% endif %}",
            f"{BASE}/t/c/already",
        ],
    )
    def test_other_links_are_left_alone(self, settings: Settings, href: str) -> None:
        html = f'<body><a href="{href}">x</a></body>'
        out = rewrite_html(html, context(track_opens=False))
        assert f'<a href="{href}">x</a>' in out

    def test_a_link_marked_notrack_is_left_alone(self, settings: Settings) -> None:
        html = '<a data-sendstream-notrack href="https://secret.example/reset?t=1">Reset</a>'
        out = rewrite_html(html, context(track_opens=False))
        assert html in out
        upper = '<a href="https://s.example/" DATA-SENDSTREAM-NOTRACK="">x</a>'
        assert upper in rewrite_html(upper, context(track_opens=False))

    def test_links_in_comments_scripts_and_styles_are_not_links(
        self, settings: Settings, no_trap: None
    ) -> None:
        html = (
            '<!-- <a href="https://c.example/"> --><script>var s = \'<a href="https://s.example/">\''
            '</script><textarea><a href="https://t.example/"></textarea>'
            '<a href="https://real.example/">real</a>'
        )
        out = rewrite_html(html, context(track_opens=False))
        assert clicked_urls(out) == ["https://real.example/"]

    def test_outlook_conditional_comments_are_rewritten_inside(self, settings: Settings) -> None:
        html = '<!--[if mso]><a href="https://mso.example/">Button</a><![endif]-->'
        assert clicked_urls(rewrite_html(html, context(track_opens=False))) == [
            "https://mso.example/"
        ]

    def test_character_references_are_decoded_into_the_url(self, settings: Settings) -> None:
        html = '<a href="https://a.example/?x=1&amp;y=2&#38;z=3&quot;">x</a>'
        assert clicked_urls(rewrite_html(html, context(track_opens=False))) == [
            'https://a.example/?x=1&y=2&z=3"'
        ]

    def test_only_the_first_of_repeated_hrefs_counts_as_browsers_do(
        self, settings: Settings
    ) -> None:
        html = '<a href="https://first.example/" href="https://second.example/">x</a>'
        out = rewrite_html(html, context(track_opens=False))
        assert clicked_urls(out) == ["https://first.example/"]
        assert 'href="https://second.example/"' in out

    def test_a_quoted_greater_than_sign_does_not_end_the_tag(self, settings: Settings) -> None:
        html = '<a title="a > b" href="https://q.example/">x</a>'
        assert clicked_urls(rewrite_html(html, context(track_opens=False))) == [
            "https://q.example/"
        ]

    def test_no_click_tracking_leaves_links(self, settings: Settings) -> None:
        html = '<body><a href="https://a.example/">x</a></body>'
        out = rewrite_html(html, context(track_clicks=False))
        assert '<a href="https://a.example/">x</a>' in out
        assert not CLICK.search(out)


class TestPixelAndTrap:
    def test_the_pixel_goes_once_before_the_last_body_close(self, settings: Settings) -> None:
        html = "<html><body><p>Hi</p></BODY ></html>"
        out = rewrite_html(html, context(track_clicks=False))
        assert len(PIXEL.findall(out)) == 1
        before, _, after = out.partition("</BODY >")
        assert PIXEL.search(before)
        assert after == "</html>"
        token = re.search(r"/t/o/([A-Za-z0-9_-]+)", out)
        assert token is not None
        assert read_token(token.group(1), Kind.OPEN).kind is Kind.OPEN

    def test_without_a_body_close_the_pixel_goes_at_the_end(self, settings: Settings) -> None:
        out = rewrite_html("<p>Just a fragment</p>", context(track_clicks=False))
        assert out.startswith("<p>Just a fragment</p><img ")

    def test_rewriting_twice_adds_no_second_pixel_or_link(self, settings: Settings) -> None:
        ctx = context()
        once = rewrite_html('<body><a href="https://a.example/">x</a></body>', ctx)
        assert rewrite_html(once, ctx) == once

    def test_click_tracking_adds_one_hidden_trap_link(self, settings: Settings) -> None:
        ctx = context(track_opens=False)
        out = rewrite_html("<body><p>x</p></body>", ctx)
        [trap] = TRAP.findall(out)
        token = re.search(r"/t/c/([A-Za-z0-9_-]+)", trap)
        assert token is not None
        claim = read_token(token.group(1), Kind.CLICK, Kind.TRAP)
        assert (claim.kind, claim.message_id) == (Kind.TRAP, ctx.message_id)

    def test_no_tracking_returns_the_html_unchanged(self, settings: Settings) -> None:
        html = '<body><a href="https://a.example/">x</a></body>'
        assert rewrite_html(html, context(track_opens=False, track_clicks=False)) is html


# Fragments an email's HTML is made of, links of every kind included.
_FRAGMENTS = st.sampled_from(
    [
        "<p>",
        "</p>",
        "text ",
        "&amp; ",
        "<br/>",
        "<!-- note -->",
        '<a href="https://a.example/x">',
        "<a href='http://b.example/?q=1&amp;r=2'>",
        "<a href=https://c.example/>",
        '<a href="mailto:x@example.com">',
        '<a href="#top">',
        "</a>",
        '<img src="https://img.example/i.png" alt="">',
        "<style>p{}</style>",
        "<table><tr><td>cell</td></tr></table>",
        "</body>",
    ]
)


@hypothesis_settings(max_examples=200, deadline=None)
@given(parts=st.lists(_FRAGMENTS, max_size=40))
def test_undoing_the_rewrite_gives_back_the_input(settings: Settings, parts: list[str]) -> None:
    html = "".join(parts)
    out = rewrite_html(html, context())
    normalised = html.replace("'http://b.example/?q=1&amp;r=2'", '"http://b.example/?q=1&r=2"')
    normalised = normalised.replace("href=https://c.example/>", 'href="https://c.example/">')
    assert undo(out) == normalised
    assert len(PIXEL.findall(out)) == 1


class TestUnsubscribeHeaders:
    def test_headers_have_exactly_rfc_8058s_shape(self, settings: Settings) -> None:
        ctx = context()
        headers = unsubscribe_headers(ctx, "bounces.example.net")
        assert [name for name, _ in headers] == ["List-Unsubscribe", "List-Unsubscribe-Post"]
        assert headers[1] == ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
        match = re.fullmatch(
            r"<(https://[^>]+)>, <mailto:([^@>]+)@([^?>]+)\?subject=unsubscribe>", headers[0][1]
        )
        assert match is not None
        url, local, domain = match.groups()
        assert url == links.unsubscribe_url(ctx)
        assert domain == "bounces.example.net"
        token = url.rpartition("/u/")[2]
        claim = read_token(token, Kind.UNSUBSCRIBE)
        assert (claim.workspace_id, claim.message_id, claim.contact_id, claim.list_id) == (
            ctx.workspace_id,
            ctx.message_id,
            ctx.contact_id,
            ctx.list_id,
        )
        parsed = read_mailto_local_part(local)
        assert parsed is not None
        assert parsed[0] == ctx.message_id

    def test_the_body_link_is_the_preference_page(self, settings: Settings) -> None:
        ctx = context(base_url="https://track.example.com/")
        assert links.unsubscribe_url(ctx).startswith("https://track.example.com/u/")


class TestSwitches:
    def test_streams_and_workspaces_can_switch_tracking_off(self, settings: Settings) -> None:
        ws, other = uuid.uuid4(), uuid.uuid4()
        tracking = settings.tracking.model_copy(
            update={"streams": ["marketing"], "workspaces": {ws: False}}
        )
        changed = settings.model_copy(update={"tracking": tracking})
        assert links.tracking_enabled(other, "marketing", changed)
        assert not links.tracking_enabled(other, "transactional", changed)
        assert not links.tracking_enabled(ws, "marketing", changed)
        off = settings.model_copy(
            update={
                "tracking": tracking.model_copy(update={"enabled": False, "workspaces": {ws: True}})
            }
        )
        assert links.tracking_enabled(ws, "marketing", off)
        assert not links.tracking_enabled(other, "marketing", off)
