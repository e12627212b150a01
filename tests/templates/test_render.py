"""Rendering a compiled template: the context, escaping, layouts and
partials, CSS inlining, the generated text part, reuse without a database."""

from __future__ import annotations

import threading

import pytest

from sendstream.core.settings import TemplateSettings
from sendstream.templates.errors import TemplateReferenceInvalid, TemplateUndefinedVariable
from sendstream.templates.render import (
    Bundle,
    Defaults,
    RenderContext,
    TemplateCache,
    compile_bundle,
)
from sendstream.templates.sandbox import RenderLimits
from tests.templates.helpers import LIMITS, compiled, render, render_text, version

ADA = {
    "id": "0193a1f0-0000-7000-8000-000000000001",
    "email": "ada@example.com",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "locale": "fr-FR",
    "timezone": "Europe/Paris",
    "attributes": {"plan": "pro"},
    "tags": ["vip"],
}


class TestContext:
    def test_contact_data_and_message_are_reachable(self) -> None:
        main = version(
            subject="Hi {{ contact.first_name }}",
            text="{{ contact.attributes.plan }} {{ data.order.id }} {{ message.id }}",
        )
        rendered = render(main, contact=ADA, data={"order": {"id": 42}}, message={"id": "m-1"})
        assert rendered.subject == "Hi Ada"
        assert rendered.text == "pro 42 m-1"

    def test_top_level_names_come_from_contact_then_data(self) -> None:
        main = version(subject="s", text="{{ first_name }} {{ email }} {{ coupon }}")
        assert render(main, contact=ADA, data={"coupon": "X1"}).text == ("Ada ada@example.com X1")
        overridden = render(main, contact=ADA, data={"first_name": "Augusta", "coupon": ""})
        assert overridden.text == "Augusta ada@example.com "

    def test_locale_and_timezone_come_from_the_contact_then_data_then_defaults(self) -> None:
        main = version(subject="s", text="{{ locale }} {{ timezone }}")
        assert render(main, contact=ADA).text == "fr-FR Europe/Paris"
        assert render(main, data={"locale": "de", "timezone": "UTC"}).text == "de UTC"
        defaults = compiled(main, defaults=Defaults("en-GB", "Europe/London"))
        assert defaults.render(RenderContext()).text == "en-GB Europe/London"

    def test_data_keys_win_over_dict_methods(self) -> None:
        # `order.items` is the data, not dict.items: data is JSON.
        assert render_text("{{ order.items|length }}", order={"items": [1, 2, 3]}) == "3"

    def test_undefined_prints_nothing_unless_strict(self) -> None:
        assert render_text("[{{ missing }}][{{ data.a.b.c }}]") == "[][]"
        with pytest.raises(TemplateUndefinedVariable):
            render_text("{{ missing }}", strict=True)

    def test_subject_and_header_values_are_one_line(self) -> None:
        main = version(
            subject="Hello\n{{ data.name }}\r\n",
            text="t",
            headers={"X-Order": "{{ data.order }}\n"},
        )
        rendered = render(main, data={"name": "A\nB", "order": "7\r\nBcc: evil@example.com"})
        assert rendered.subject == "Hello A B"
        assert rendered.headers == {"X-Order": "7 Bcc: evil@example.com"}
        assert "\n" not in rendered.headers["X-Order"]

    def test_sender_and_reply_to_come_from_the_version(self) -> None:
        main = version(
            subject="s",
            text="t",
            from_email="news@acme.test",
            from_name="Acme",
            reply_to="r@x.test",
        )
        rendered = render(main)
        assert rendered.from_ is not None
        assert (rendered.from_.email, rendered.from_.name) == ("news@acme.test", "Acme")
        assert rendered.reply_to == "r@x.test"
        assert rendered.template_version_id == main.version_id


class TestEscaping:
    def test_html_escapes_data_and_text_and_subject_do_not(self) -> None:
        main = version(subject="{{ data.v }}", html="<p>{{ data.v }}</p>", text="{{ data.v }}")
        rendered = render(main, data={"v": "<b>Tom & Jerry</b>"})
        assert rendered.html == "<p>&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</p>"
        assert rendered.text == "<b>Tom & Jerry</b>"
        assert rendered.subject == "<b>Tom & Jerry</b>"

    def test_attribute_values_are_escaped(self) -> None:
        main = version(subject="s", html='<a href="{{ data.url }}">x</a>')
        html = render(main, data={"url": '"><script>alert(1)</script>'}).html
        assert html is not None
        assert "<script>" not in html
        assert "&#34;&gt;&lt;script&gt;" in html


class TestLayoutsAndPartials:
    def test_a_layout_wraps_the_html_as_content_without_escaping_it(self) -> None:
        layout = version(
            "base", "layout", html="<main>{{ content }}</main><footer>{{ first_name }}</footer>"
        )
        main = version(subject="s", html="<p>Hi {{ data.x }}</p>", layout_key="base")
        rendered = compiled(main, layout=layout).render(
            RenderContext(contact=ADA, data={"x": "<i>"})
        )
        assert rendered.html == "<main><p>Hi &lt;i&gt;</p></main><footer>Ada</footer>"

    def test_a_layout_text_wraps_the_text_too(self) -> None:
        layout = version("base", "layout", html="{{ content }}", text="{{ content }}\n--\nAcme")
        main = version(subject="s", html="<p>x</p>", text="Hello", layout_key="base")
        assert compiled(main, layout=layout).render().text == "Hello\n--\nAcme"

    def test_partials_render_in_html_with_escaping_and_in_text_from_their_text(self) -> None:
        footer = version(
            "footer", "partial", html="<small>{{ data.v }}</small>", text="-- {{ data.v }}"
        )
        main = version(
            subject='{% include "footer" %}',
            html='<p>body</p>{% include "footer" %}',
            text='body\n{% include "footer" %}',
        )
        rendered = compiled(main, partials=[footer]).render(RenderContext(data={"v": "<&>"}))
        assert rendered.html == "<p>body</p><small>&lt;&amp;&gt;</small>"
        assert rendered.text == "body\n-- <&>"
        assert rendered.subject == "-- <&>"

    def test_partial_macros_can_be_imported(self) -> None:
        macros = version(
            "buttons",
            "partial",
            html='{% macro button(url) %}<a href="{{ url }}">Go</a>{% endmacro %}',
        )
        main = version(subject="s", html='{% import "buttons" as b %}{{ b.button(data.u) }}')
        html = compiled(main, partials=[macros]).render(RenderContext(data={"u": "/x"})).html
        assert html == '<a href="/x">Go</a>'

    def test_a_partial_that_is_not_in_the_bundle_fails_at_the_include(self) -> None:
        main = version(subject="s", text='line one\n{% include "elsewhere" %}')
        with pytest.raises(TemplateReferenceInvalid) as caught:
            compiled(main).render()
        assert caught.value.errors[0]["line"] == 2
        assert caught.value.errors[0]["key"] == "elsewhere"

    def test_ignore_missing_skips_a_partial_that_is_not_there(self) -> None:
        main = version(subject="s", text='a{% include "gone" ignore missing %}b')
        assert compiled(main).render().text == "ab"

    def test_a_layout_previewed_alone_shows_a_placeholder_for_content(self) -> None:
        layout = version("base", "layout", html="<main>{{ content }}</main>")
        html = compiled(layout).render().html
        assert html is not None
        assert html.startswith("<main><p>")
        assert "content" in html


class TestTextPart:
    def test_text_is_made_from_the_final_html_when_the_version_has_none(self) -> None:
        layout = version("base", "layout", html="<body>{{ content }}<p>Acme Ltd</p></body>")
        main = version(
            subject="s",
            html="<h1>Hi {{ first_name }}</h1>"
            '<p>See <a href="https://x.test/o">your order</a>.</p>',
            layout_key="base",
        )
        text = compiled(main, layout=layout).render(RenderContext(contact=ADA)).text
        assert text == "Hi Ada\n\nSee your order (https://x.test/o).\n\nAcme Ltd\n"

    def test_a_version_without_html_has_no_html_part(self) -> None:
        rendered = render(version(subject="s", text="only text"))
        assert rendered.html is None
        assert rendered.text == "only text"


STYLED = (
    "<html><head><style>p { color: red } @media (max-width: 600px) { p { color: blue } }"
    "</style></head><body>{% for i in data['items'] %}<p>{{ i }}</p>{% endfor %}</body></html>"
)


class TestCssInlining:
    def test_rules_become_style_attributes_and_media_queries_stay(self) -> None:
        html = render(version(subject="s", html=STYLED), data={"items": [1, 2]}).html
        assert html is not None
        assert '<p style="color: red;">1</p><p style="color: red;">2</p>' in html
        assert "@media (max-width: 600px)" in html
        assert "p { color: red }" not in html

    def test_a_self_contained_template_is_inlined_once_at_compile_time(self) -> None:
        template = compiled(version(subject="s", html=STYLED))
        assert template._inline_at_render is False

    def test_with_a_layout_the_message_is_inlined_after_each_render(self) -> None:
        layout = version(
            "base",
            "layout",
            html="<html><head><style>.b{font-weight:bold}</style></head>"
            "<body>{{ content }}</body></html>",
        )
        main = version(subject="s", html='<p class="b">{{ data.x }}</p>', layout_key="base")
        template = compiled(main, layout=layout)
        assert template._inline_at_render is True
        html = template.render(RenderContext(data={"x": "y"})).html
        assert html is not None
        assert '<p class="b" style="font-weight: bold;">y</p>' in html

    def test_inline_css_false_leaves_styles_alone(self) -> None:
        html = render(version(subject="s", html=STYLED, inline_css=False), data={"items": [1]}).html
        assert html is not None
        assert "<p>1</p>" in html


class TestReuse:
    def test_one_compiled_template_renders_many_recipients_and_threads(self) -> None:
        template = compiled(version(subject="Hi {{ first_name }}", text="{{ data.n }}"))
        results: dict[int, str] = {}

        def work(n: int) -> None:
            rendered = template.render(
                RenderContext(contact={"first_name": f"P{n}"}, data={"n": n})
            )
            results[n] = f"{rendered.subject}|{rendered.text}"

        threads = [threading.Thread(target=work, args=(n,)) for n in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == {n: f"Hi P{n}|{n}" for n in range(20)}

    def test_the_cache_compiles_a_bundle_once_and_recompiles_when_a_partial_changes(
        self,
    ) -> None:
        cache = TemplateCache(size=2)
        footer = version("footer", "partial", text="v1")
        main = version(subject="s", text='{% include "footer" %}')
        first = cache.get(Bundle(main, None, {"footer": footer}), LIMITS, Defaults())
        again = cache.get(Bundle(main, None, {"footer": footer}), LIMITS, Defaults())
        assert first is again
        assert cache.compiled == 1
        newer = version("footer", "partial", text="v2")
        changed = cache.get(Bundle(main, None, {"footer": newer}), LIMITS, Defaults())
        assert changed is not first
        assert changed.render().text == "v2"
        assert first.render().text == "v1"

    def test_the_cache_drops_the_least_recently_used(self) -> None:
        cache = TemplateCache(size=2)
        bundles = [Bundle(version(subject="s", text=str(n))) for n in range(3)]
        for bundle in bundles:
            cache.get(bundle, LIMITS, Defaults())
        cache.get(bundles[0], LIMITS, Defaults())
        assert cache.compiled == 4  # the first one was dropped and compiled again

    def test_compile_bundle_uses_the_settings_limits(self) -> None:
        settings = TemplateSettings(render_timeout_ms=123, max_output_bytes=456, max_range=7)
        template = compile_bundle(Bundle(version(subject="s", text="x")), settings)
        assert template.limits == RenderLimits(123, 456, 7)
