"""CSS inlining: once at compile time when that provably equals inlining
each rendered message, after each render otherwise; both give the same
HTML."""

from __future__ import annotations

import re
from typing import Any

import pytest

from sendstream.templates import css
from sendstream.templates.errors import TemplateRenderError
from sendstream.templates.render import RenderContext
from tests.templates.helpers import compiled, version

HEAD = "<html><head><style>{css}</style></head><body>{body}</body></html>"


def _without_implied(html: str) -> str:
    # Tags an HTML parser adds by itself, wherever they are missing.
    return re.sub(r"</?tbody>", "", html)


def _page(body: str, rules: str = "p { color: red } .x { margin: 0 }") -> str:
    return HEAD.format(css=rules, body=body)


def _both_ways(source: str, data: dict[str, Any]) -> tuple[str, str]:
    """(HTML from the compile-time path, HTML from the per-render path)."""
    static = compiled(version(subject="s", html=source))
    assert static._inline_at_render is False, "expected compile-time inlining"
    dynamic = compiled(version(subject="s", html=source, inline_css=False))
    rendered = dynamic.render(RenderContext(data=data)).html
    assert rendered is not None
    static_html = static.render(RenderContext(data=data)).html
    assert static_html is not None
    return static_html, css.inline_rendered(rendered)


class TestCompileTimeInlining:
    @pytest.mark.parametrize(
        ("body", "data"),
        [
            ("<p>Hello {{ data.name }}</p>", {"name": "Ada & <co>"}),
            (
                "<table>{% for r in data.rows %}<tr><td><p class='x'>{{ r }}</p></td></tr>"
                "{% endfor %}</table>",
                {"rows": [1, 2, 3]},
            ),
            ("{% if data.vip %}<p>VIP</p>{% else %}<p>Hi</p>{% endif %}", {"vip": True}),
            ('<a href="https://x.test/{{ data.id }}?a=1&b=2"><p>go</p></a>', {"id": 7}),
            ("<title>{{ data.t }}</title><p>x</p>", {"t": "Subject"}),
        ],
    )
    def test_equals_inlining_each_rendered_message(self, body: str, data: dict[str, Any]) -> None:
        static_html, per_render = _both_ways(_page(body), data)
        assert _without_implied(static_html) == _without_implied(per_render)
        assert 'style="color: red;' in static_html

    def test_runtime_error_lines_point_at_the_source_the_author_wrote(self) -> None:
        source = (
            "<html><head><style>\np { color: red }\n.a { margin: 0 }\n.b { padding: 0 }\n"
            "</style></head>\n<body>\n<p>{{ data.x }}</p>\n<p>{{ 1 / data.zero }}</p>\n"
            "</body></html>"
        )
        template = compiled(version(subject="s", html=source))
        assert template._inline_at_render is False
        with pytest.raises(TemplateRenderError) as caught:
            template.render(RenderContext(data={"x": 1, "zero": 0}))
        assert caught.value.errors[0]["line"] == 8
        assert caught.value.errors[0]["column"] == 4


class TestFallsBackToPerRenderInlining:
    @pytest.mark.parametrize(
        ("source", "why"),
        [
            (_page('<p class="{{ data.c }}">x</p>', ".vip { color: gold }"), "dynamic class"),
            (_page("<p>x</p>", "p { color: {{ data.c }} }"), "dynamic CSS"),
            (
                _page("{% for r in data.rows %}<p>{{ r }}</p>{% endfor %}", "p:first-child {}"),
                "sibling-dependent selector",
            ),
            (_page("<p {{ data.attrs }}>x</p>"), "construct inside a tag"),
            (
                _page(
                    "{% if data.a %}<div class='x'>{% endif %}<p>y</p>{% if data.a %}</div>"
                    "{% endif %}"
                ),
                "block opening and closing in different elements",
            ),
            (_page("<ul><li>one<li>two</ul>"), "end tags the parser had to add"),
            (_page('<p data-k="{{ data.k }}">x</p>', "[data-k=a] { color: red }"), "attr selector"),
        ],
    )
    def test_unsafe_sources_are_inlined_after_each_render(self, source: str, why: str) -> None:
        template = compiled(version(subject="s", html=source))
        assert template._inline_at_render is True, why

    def test_the_per_render_path_styles_what_the_template_produced(self) -> None:
        source = _page('<p class="{{ data.c }}">x</p>', ".vip { color: gold }")
        html = (
            compiled(version(subject="s", html=source))
            .render(RenderContext(data={"c": "vip"}))
            .html
        )
        assert html is not None
        assert '<p class="vip" style="color: gold;">x</p>' in html

    def test_html_without_style_is_left_alone(self) -> None:
        assert css.inline_source("<p>{{ x }}</p>") == css.InlinedSource("<p>{{ x }}</p>")
        assert css.inline_rendered("<p>x</p>") == "<p>x</p>"


class TestConstructScanner:
    def test_quotes_comments_and_raw_blocks(self) -> None:
        source = "a{{ '}}' }}b{# c #}{% raw %}{{ x }}{% endraw %}{%- if y -%}z{% endif %}"
        spans = css.split_constructs(source)
        assert spans is not None
        assert [source[a:b] for a, b in spans] == [
            "{{ '}}' }}",
            "{# c #}",
            "{% raw %}{{ x }}{% endraw %}",
            "{%- if y -%}",
            "{% endif %}",
        ]

    def test_an_unterminated_construct_is_refused(self) -> None:
        assert css.split_constructs("{{ x") is None
