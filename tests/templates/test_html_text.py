"""The text part made from HTML."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sendstream.templates.html_text import html_to_text


class TestHtmlToText:
    def test_blocks_become_paragraphs_and_lines(self) -> None:
        html = "<h1>Welcome</h1><p>First   paragraph\n with  spaces.</p><div>a line</div>b<br>c"
        assert html_to_text(html) == "Welcome\n\nFirst paragraph with spaces.\n\na line\nb\nc\n"

    def test_links_show_their_target_once(self) -> None:
        html = (
            '<p><a href="https://x.test/order/1">your order</a>, '
            '<a href="https://x.test/">https://x.test/</a>, '
            '<a href="mailto:help@x.test">help@x.test</a>, <a href="#top">top</a></p>'
        )
        assert html_to_text(html) == (
            "your order (https://x.test/order/1), https://x.test/, help@x.test, top\n"
        )

    def test_an_image_link_shows_the_alt_text_and_the_url(self) -> None:
        html = '<a href="https://x.test/p"><img src="b.png" alt="Buy now"></a><img src="s.gif">'
        assert html_to_text(html) == "Buy now (https://x.test/p)\n"

    def test_head_style_script_and_hidden_preheaders_are_skipped(self) -> None:
        html = (
            "<html><head><title>T</title><style>p{color:red}</style></head><body>"
            '<div style="display:none;max-height:0">Preheader text</div>'
            "<script>alert(1)</script><!--[if mso]><p>Outlook only</p><![endif]-->"
            "<p>Body</p></body></html>"
        )
        assert html_to_text(html) == "Body\n"

    def test_lists_and_tables(self) -> None:
        html = (
            "<ul><li>one</li><li>two</li></ul><ol><li>first</li><li>second</li></ol>"
            "<table><tr><td>Item</td><td>9.00</td></tr><tr><td>Tax</td><td>1.00</td></tr></table>"
        )
        assert html_to_text(html) == (
            "- one\n- two\n\n1. first\n2. second\n\nItem 9.00\nTax 1.00\n"
        )

    def test_entities_are_decoded_and_pre_keeps_its_spacing(self) -> None:
        html = "<p>Tom &amp; Jerry &lt;3 &nbsp;caf&eacute;</p><pre>  a\n    b</pre>"
        assert html_to_text(html) == "Tom & Jerry <3 café\n\n  a\n    b\n"

    def test_long_lines_wrap_without_breaking_words_or_urls(self) -> None:
        url = "https://example.com/" + "x" * 90
        html = f"<p>{'word ' * 30}</p><p><a href='{url}'>link</a></p>"
        text = html_to_text(html)
        assert all(len(line) <= 76 for line in text.splitlines() if url not in line)
        assert url in text
        assert html_to_text(html, width=None).count("\n") == 3

    def test_stray_end_tags_and_unclosed_elements_do_not_lose_text(self) -> None:
        assert html_to_text("</div><p>one<p>two</span>") == "one\n\ntwo\n"

    @given(st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=300))
    def test_any_input_gives_clean_text(self, html: str) -> None:
        text = html_to_text(html)
        assert "\x00" not in text
        assert text == "" or text.endswith("\n")
        assert "\n\n\n" not in text
