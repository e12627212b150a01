"""The sandbox refuses the classic template-injection payloads, and every
way of making a render run long or grow large stops at its limit, quickly
(each test has a hard timeout: a broken limit fails, it does not hang)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sendstream.templates.errors import (
    TemplateRenderLimit,
    TemplateSecurityError,
)
from sendstream.templates.render import RenderContext
from sendstream.templates.sandbox import RenderLimits, estimated_size
from tests.templates.helpers import compiled, render_text, version

# Classic server-side template injection payloads against Jinja.
ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__dict__ }}",
    "{{ ''|attr('__class__') }}",
    "{{ data|attr('__class__') }}",
    "{{ ''['__class__'] }}",
    "{{ '{0.__class__}'.format(1) }}",
    "{{ '{0.__init__.__globals__}'.format(cycler) }}",
    "{{ range.__self__ }}",
    "{{ dict.__base__.__subclasses__() }}",
    "{% set x = [] %}{{ x.append(1) }}",
    "{{ data.update({'a': 1}) }}",
    "{{ data.clear() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
]


class TestSandboxEscapes:
    @pytest.mark.parametrize("payload", ESCAPES)
    def test_payload_is_refused_with_a_security_error(self, payload: str) -> None:
        with pytest.raises(TemplateSecurityError) as caught:
            render_text(payload, item={"a": 1})
        [error] = caught.value.errors
        assert error["field"] == "text"
        assert error["line"] == 1
        assert "not allowed" in error["message"]

    def test_refused_even_when_not_strict_and_not_printed(self) -> None:
        # An unsafe access must fail, not quietly print nothing.
        with pytest.raises(TemplateSecurityError):
            render_text("{% set x = ''.__class__ %}done")

    def test_the_data_a_template_is_given_is_not_changed(self) -> None:
        data = {"list": [1], "nested": {"a": 1}}
        with pytest.raises(TemplateSecurityError):
            render_text("{{ data.nested.update({'b': 2}) }}", **data)
        assert data == {"list": [1], "nested": {"a": 1}}

    def test_lipsum_is_not_available(self) -> None:
        assert render_text("[{{ lipsum }}]") == "[]"


@pytest.mark.timeout(10)
class TestTimeLimit:
    @pytest.mark.parametrize(
        "source",
        [
            # Nested loops whose bodies call nothing: only the loop guard sees them.
            "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
            "{% for i in data.rows %}{% for j in data.rows %}{% for k in data.rows %}"
            "{% endfor %}{% endfor %}{% endfor %}",
            "{% for i in range(10000) %}{% for j in range(10000) %}{% if i == j %}{% endif %}"
            "{% endfor %}{% endfor %}",
            "{% for i in range(10000) %}{% for j in range(10000) %}{{ '' }}{% endfor %}"
            "{% endfor %}",
        ],
    )
    def test_long_loops_stop_at_the_deadline(self, source: str) -> None:
        template = compiled(version(text=source), limits=RenderLimits(100, 2_000_000, 10_000))
        started = time.monotonic()
        with pytest.raises(TemplateRenderLimit) as caught:
            template.render(RenderContext(data={"rows": list(range(2000))}))
        elapsed = time.monotonic() - started
        assert elapsed < 2, f"stopped after {elapsed:.2f} s"
        assert "time limit" in caught.value.errors[0]["message"]
        assert caught.value.errors[0]["line"] == 1

    def test_the_limit_counts_the_render_s_cpu_time_not_a_busy_machine_s_clock(self) -> None:
        # A value that takes 150 ms of wall-clock time and no CPU to print
        # stands for a render descheduled on a busy machine: the clock passes
        # the 50 ms limit, the render's own CPU time stays far below it.
        class Slow:
            def __str__(self) -> str:
                time.sleep(0.15)
                return "slow"

        source = "{{ slow }}{% for i in range(200) %}{{ i }}{% endfor %}"
        template = compiled(version(text=source), limits=RenderLimits(50, 2_000_000, 10_000))
        started = time.monotonic()
        rendered = template.render(RenderContext(data={"slow": Slow()}))
        assert time.monotonic() - started > 0.05  # the clock did pass the limit
        assert rendered.text is not None
        assert rendered.text.startswith("slow0")
        assert rendered.text.endswith("199")

    def test_recursion_stops(self) -> None:
        with pytest.raises(TemplateRenderLimit) as caught:
            render_text("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(1) }}")
        assert "too deeply" in caught.value.errors[0]["message"]

    def test_a_partial_that_includes_itself_stops(self) -> None:
        loop = version("loop", "partial", text='x{% include "loop" %}')
        main = version(subject="s", text='{% include "loop" %}')
        with pytest.raises(TemplateRenderLimit):
            compiled(main, partials=[loop]).render()

    def test_range_is_capped(self) -> None:
        with pytest.raises(TemplateRenderLimit) as caught:
            render_text("{% for i in range(10001) %}{% endfor %}")
        assert "range() is limited to 10000" in caught.value.errors[0]["message"]
        assert render_text("{{ range(10000)|length }}") == "10000"


@pytest.mark.timeout(10)
class TestSizeLimit:
    @pytest.mark.parametrize(
        "source",
        [
            "{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}",
            "{{ 'x' * 100000000 }}",
            "{{ ['x'] * 100000000 }}",
            "{{ 'x'|center(1000000000) }}",
            "{{ 'x'.ljust(1000000000) }}",
            "{{ 'x\ty'.expandtabs(1000000000) }}",
            "{{ 'x'|indent(1000000000) }}",
            "{{ '%0999999999d' % 1 }}",
            "{{ '%*d' % (999999999, 1) }}",
            "{{ '{:>999999999}'.format(1) }}",
            "{{ '{:{w}}'.format(1, w=999999999) }}",
            "{{ '%0999999999d'|format(1) }}",
            "{% set s = 'x' * 1000000 %}{{ s|replace('x', s) }}",
            "{% set s = 'x' * 1000000 %}{{ s.replace('x', s) }}",
            "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
            "{% set ns.s = ns.s + ns.s %}{% endfor %}",
            "{% set l = ['x' * 1000000] * 100 %}{{ l }}",
            "{% set l = ['x' * 1000000] * 100 %}{{ l|join }}",
            "{% set l = ['x' * 1000000] * 100 %}{{ l|string }}",
            "{% set l = ['x' * 1000000] * 100 %}{{ 'a' ~ l }}",
            "{% set x %}{% for i in range(9000) %}{{ 'y' * 1000 }}{% endfor %}{% endset %}"
            "{{ x|length }}",
            "{% filter upper %}{% for i in range(9000) %}{{ 'y' * 1000 }}{% endfor %}"
            "{% endfilter %}",
            "{{ 9 ** 999999 }}",
            "{% set n = 2 ** 60000 %}{{ n * n }}",
            "{{ data|tojson(indent=1000000) }}",
            "{{ [1, 2]|slice(100000000)|list }}",
        ],
    )
    def test_growing_past_the_output_limit_is_refused(self, source: str) -> None:
        with pytest.raises(TemplateRenderLimit) as caught:
            render_text(source)
        [error] = caught.value.errors
        assert error["field"] == "text"

    def test_output_over_the_limit_fails_and_under_it_renders(self) -> None:
        limits = RenderLimits(200, 1000, 10_000)
        under = compiled(version(text="{{ 'x' * 1000 }}"), limits=limits)
        assert under.render().text == "x" * 1000
        over = compiled(version(text="{{ 'x' * 1000 }}!"), limits=limits)
        with pytest.raises(TemplateRenderLimit) as caught:
            over.render()
        assert "larger than 1000 bytes" in caught.value.errors[0]["message"]

    def test_the_limit_counts_bytes_not_characters(self) -> None:
        limits = RenderLimits(200, 1000, 10_000)
        template = compiled(version(text="{{ 'é' * 600 }}"), limits=limits)
        with pytest.raises(TemplateRenderLimit):
            template.render()

    def test_a_large_legitimate_template_renders(self) -> None:
        rows = [{"name": f"item {i}", "price": i} for i in range(2000)]
        text = render_text(
            "{% for r in data.rows %}{{ r.name }}: {{ r.price|money('EUR') }}\n{% endfor %}",
            rows=rows,
        )
        assert text.count("\n") == 2000
        assert text.endswith("item 1999: €1,999.00\n")


def test_estimated_size_is_a_lower_bound_and_stops_early() -> None:
    value = {"a": ["xy", "z"], "b": ("q",)}
    assert estimated_size(value, 10_000) <= len(str(value))
    huge = [["x" * 1000] * 1000] * 1000
    started = time.monotonic()
    assert estimated_size(huge, 1_000_000) > 1_000_000
    assert time.monotonic() - started < 0.5


class TestPrintedValues:
    """`{{ value }}` compiles to one `print_html`/`print_text` call instead of
    Jinja's `escape(finalize(value))`: it must print exactly what Jinja would,
    and what a block or macro captured must not be escaped a second time."""

    @staticmethod
    def _jinja(source: str, html: bool, **data: Any) -> str:
        env = ImmutableSandboxedEnvironment(autoescape=html)
        return env.from_string(source).render(**data)

    @staticmethod
    def _ours(source: str, html: bool, **data: Any) -> str:
        main = version(html=source) if html else version(text=source)
        rendered = compiled(main).render(RenderContext(data=data))
        out = rendered.html if html else rendered.text
        assert out is not None
        return out

    @settings(max_examples=200, deadline=None)
    @given(
        value=st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner),
            max_leaves=6,
        ),
        html=st.booleans(),
    )
    def test_a_value_prints_as_jinja_prints_it(self, value: Any, html: bool) -> None:
        source = "<p>{{ v }}</p>{% for x in [v] %}[{{ x }}]{% endfor %}"
        assert self._ours(source, html, v=value) == self._jinja(source, html, v=value)

    @pytest.mark.parametrize("html", [True, False])
    def test_captured_blocks_macros_and_markup_are_escaped_once(self, html: bool) -> None:
        source = (
            "{% set block %}<b>{{ v }}</b>{% endset %}{{ block }}|"
            "{% macro m(x) %}<i>{{ x }}</i>{% endmacro %}{{ m(v) }}|"
            "{% filter upper %}{{ v }}{% endfilter %}|{{ v|safe }}|{{ v|e }}|{{ missing }}"
        )
        value = "a<&>\"'b"
        ours = self._ours(source, html, v=value)
        assert ours == self._jinja(source, html, v=value)
        if html:
            assert ours.startswith("<b>a&lt;&amp;&gt;&#34;&#39;b</b>|<i>a&lt;")

    def test_a_value_too_large_to_print_is_refused_before_it_is_built(self) -> None:
        limits = RenderLimits(timeout_ms=1000, max_output_bytes=1000, max_range=10_000)
        main = version(html="{{ v }}")
        with pytest.raises(TemplateRenderLimit):
            compiled(main, limits=limits).render(RenderContext(data={"v": list(range(5000))}))
