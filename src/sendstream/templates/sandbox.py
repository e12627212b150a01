"""The sandboxed Jinja environment every template renders in, and the limits
it enforces.

Templates are written by API users of one workspace and rendered by workers
shared by every workspace, so a template must not reach Python internals,
change the data it is given, hang a worker or fill its memory:

- `ImmutableSandboxedEnvironment`: no `_`-prefixed attribute, no method
  that changes a list or dict, `str.format` sandboxed. An unsafe access
  raises at once (`SecurityError`) instead of printing nothing.
- Time: a per-render deadline (a context variable, so concurrent renders in
  threads or tasks never share one) is checked on every call (macros
  included), every filter, every operator and every loop iteration (loops are
  rewritten to iterate through a guard), and between output chunks
  (`render.py` consumes `generate()`). Work can only repeat through those, so
  between two checks a template runs at most its own length of steps;
  attribute and item access are not checked (they were half of all checks).
- Size: output is counted chunk by chunk (`render.py`); every value a
  template can grow (`~`, `+`, `*`, `%`, captures, filters and string
  methods that widen, `{{ list }}` printing) is checked before it is built
  where the size can be known in advance and after otherwise, so no single
  step allocates far more than the limit. `range()` is capped; `lipsum` is
  gone.
- Recursion (macros, includes) ends in `RecursionError`, reported as a limit.

A limit raises `LimitExceeded`, which `render.py` turns into
`TemplateRenderLimit` with the template's line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeGuard, cast

import markupsafe
from jinja2 import BaseLoader, ChainableUndefined, StrictUndefined, Undefined, nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from sendstream.core.settings import TemplateSettings
from sendstream.templates import filters as template_filters
from sendstream.templates.deadline import LimitExceeded, check_deadline

# Integers a template may build by `*` or `**`, in bits (about 30,000 digits).
MAX_INT_BITS = 100_000
# `tojson(indent=...)` beyond this is not formatting any more.
MAX_JSON_INDENT = 16
# Types whose printed form needs no size check in `{{ }}`.
_PRINTS_SHORT = frozenset({str, int, float, bool, type(None)})
_LOOP_GUARD = "_sendstream_loop"
# Types whose str() needs no HTML escaping (digits, signs, "inf", "True"...).
_PRINTS_PLAIN = frozenset({int, float, bool, type(None)})
# markupsafe's C escaper without the `Markup` wrapping `escape` adds (a
# Python-level `__new__` per printed value); the public function otherwise.
_escape_text: Callable[[str], str] = getattr(
    markupsafe, "_escape_inner", lambda text: str(markupsafe.escape(text))
)
_SIZE_GUARD = "_sendstream_size"
# Width and precision of %-style and {}-style format specifications.
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*?:([^{}]*)\}")
_NESTED_BRACE_SPEC = re.compile(r"\{[^{}]*:[^{}]*\{")


@dataclass(frozen=True)
class RenderLimits:
    timeout_ms: int
    max_output_bytes: int
    max_range: int

    @classmethod
    def from_settings(cls, settings: TemplateSettings) -> RenderLimits:
        return cls(settings.render_timeout_ms, settings.max_output_bytes, settings.max_range)


def estimated_size(value: Any, limit: int) -> int:
    """A lower bound of `len(str(value))`, computed without building it and
    given up once past `limit` (so it costs at most about `limit` steps)."""
    if isinstance(value, str):
        return len(value)
    if not isinstance(value, list | tuple | set | frozenset | dict):
        return 1
    total = 0
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2  # quoted
        elif isinstance(item, dict):
            # braces, ", " between items, ": " in each
            total += 2 + 2 * max(len(item) - 1, 0) + 2 * len(item)
            if total <= limit:
                stack.extend(item.keys())
                stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + 2 * max(len(item) - 1, 0)
            if total <= limit:
                stack.extend(item)
        else:
            total += 1
        if total > limit:
            return total
    return total


class _Guarded:
    """An iterable that checks the deadline before each item, so nested loops
    over large data stop in time even when their bodies call nothing."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Iterable[Any]) -> None:
        self._inner = inner

    def __iter__(self) -> Iterator[Any]:
        for item in self._inner:
            check_deadline()
            yield item

    def __len__(self) -> int:
        # Unsized iterables raise TypeError here, which Jinja's loop expects.
        return len(self._inner)  # type: ignore[arg-type, unused-ignore]


class _Guard(NodeTransformer):
    """Rewrites a parsed template: loops iterate through the loop guard and
    every `~` concatenation is size-checked."""

    def __init__(self, environment: SendstreamSandbox) -> None:
        self.environment = environment

    def _filter(self, node: nodes.Expr, name: str) -> nodes.Filter:
        wrapped = nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)
        wrapped.set_environment(self.environment)
        return wrapped

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = self._filter(cast(nodes.Expr, node.iter), _LOOP_GUARD)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [self._filter(part, _SIZE_GUARD) for part in node.nodes]
        return self._filter(node, _SIZE_GUARD)


class _PrintGenerator(CodeGenerator):
    """`{{ value }}` compiles to one call of the environment's `print_html`
    or `print_text` instead of Jinja's `escape(environment.finalize(value))`
    / `str(environment.finalize(value))`: the same checks and the same text,
    a third of the calls (about 120 printed values a message in a typical
    newsletter). Where autoescaping can change at run time (`{% autoescape
    %}` blocks with a non-constant value) Jinja's own code is kept."""

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if frame.eval_ctx.volatile:
            super()._output_child_pre(node, frame, finalize)
        elif frame.eval_ctx.autoescape:
            self.write("environment.print_html(")
        else:
            self.write("environment.print_text(")

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if frame.eval_ctx.volatile:
            super()._output_child_post(node, frame, finalize)
        else:
            self.write(")")


class SendstreamSandbox(ImmutableSandboxedEnvironment):
    """One environment per compiled template and output kind: `html=True`
    autoescapes (HTML part), `html=False` does not (subject, text, headers)."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})
    code_generator_class = _PrintGenerator

    def __init__(
        self, *, html: bool, strict: bool, loader: BaseLoader | None, limits: RenderLimits
    ) -> None:
        super().__init__(
            autoescape=html,
            undefined=StrictUndefined if strict else ChainableUndefined,
            loader=loader,
            auto_reload=False,
            # The loader holds a fixed set of sources: keep every compiled one.
            cache_size=-1,
            finalize=self._finalize,
        )
        self.limits = limits
        self.globals.pop("lipsum", None)
        self.globals["range"] = self._range
        self.filters.update(template_filters.FILTERS)
        self.globals.update(template_filters.FUNCTIONS)
        self.filters = {
            name: self._guarded_filter(name, func) for name, func in self.filters.items()
        }
        self.filters[_LOOP_GUARD] = _loop_guard
        self.filters[_SIZE_GUARD] = self._size_guard

    # --- what the sandbox refuses

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        raise SecurityError(
            f"access to attribute {attribute!r} of a {type(obj).__name__!r} value is not allowed"
        )

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Data is JSON: `order.items` means the key "items" when there is
        # one, not the dict method.
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        check_deadline()
        self._check_method(obj, args)
        result = super().call(context, obj, *args, **kwargs)
        self._check_size(result)
        return result

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        check_deadline()
        limit = self.limits.max_output_bytes
        if operator == "*":
            _check_repeat(left, right, limit)
            _check_repeat(right, left, limit)
            if _is_int(left) and _is_int(right):
                _check_bits(left.bit_length() + right.bit_length())
        elif operator == "**":
            if _is_int(left) and _is_int(right) and right > 0:
                _check_bits(max(left.bit_length(), 1) * right)
        elif operator == "%" and isinstance(left, str):
            self._check_format(left, right)
        elif operator == "+" and _sized(left) and _sized(right):
            if len(left) + len(right) > limit:
                raise LimitExceeded(f"a value would be longer than {limit} characters")
        result = super().call_binop(context, operator, left, right)
        self._check_size(result)
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        pattern: str = value.__self__

        @wraps(wrapper)
        def checked(*args: Any, **kwargs: Any) -> str:
            check_deadline()
            self._check_format(pattern, (args, kwargs))
            result = wrapper(*args, **kwargs)
            self._check_size(result)
            return result

        return checked

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        # Every parse (compile and `parse()` alike) goes through here, so no
        # template reaches code generation without its guards.
        tree = super()._parse(source, name, filename)
        guarded = _Guard(self).visit(tree)
        if not isinstance(guarded, nodes.Template):
            raise TypeError("the loop and size guards must leave a template")
        return guarded

    # --- guards

    def concat(self, parts: Iterable[str]) -> str:
        # Captured output ({% set %}...{% endset %}, macros, filter blocks) is
        # joined here, before the output budget sees it.
        pieces = list(parts)
        limit = self.limits.max_output_bytes
        if sum(map(len, pieces)) > limit:
            raise LimitExceeded(f"a captured block would be longer than {limit} characters")
        return "".join(pieces)

    def _finalize(self, value: Any) -> Any:
        # `{{ value }}` prints str(value): refuse before building a huge repr.
        # Strings were checked where they were built; numbers are short
        # (integers are capped at MAX_INT_BITS when made).
        if value.__class__ not in _PRINTS_SHORT:
            self._check_size(value)
        return value

    def print_html(self, value: Any) -> str:
        """`escape(finalize(value))` as text: what `{{ value }}` prints in
        HTML. Plain text, not `Markup`: output chunks are only joined (a
        captured block or macro wraps its joined output in `Markup` itself)."""
        cls = value.__class__
        if cls is str:
            return _escape_text(value)
        if cls in _PRINTS_PLAIN:
            return str(value)
        self._check_size(value)
        if hasattr(value, "__html__"):
            return str(value.__html__())
        return _escape_text(str(value))

    def print_text(self, value: Any) -> str:
        """`str(finalize(value))`: what `{{ value }}` prints outside HTML."""
        cls = value.__class__
        if cls is str:
            return value  # type: ignore[no-any-return]
        if cls not in _PRINTS_SHORT:
            self._check_size(value)
        return str(value)

    def _range(self, *args: int) -> range:
        check_deadline()
        result = range(*args)
        if len(result) > self.limits.max_range:
            raise LimitExceeded(f"range() is limited to {self.limits.max_range} items")
        return result

    def _size_guard(self, value: Any) -> Any:
        self._check_size(value)
        return value

    def _check_size(self, value: Any) -> None:
        limit = self.limits.max_output_bytes
        if isinstance(value, str):
            if len(value) > limit:
                raise LimitExceeded(f"a value would be longer than {limit} characters")
        elif estimated_size(value, limit) > limit:
            raise LimitExceeded(f"a value would print longer than {limit} characters")

    def _check_format(self, pattern: str, args: Any) -> None:
        check_format_widths(pattern, self.limits.max_output_bytes)
        self._check_size(args)

    def _check_method(self, obj: Any, args: Sequence[Any]) -> None:
        owner = getattr(obj, "__self__", None)
        if not isinstance(owner, str) or not args:
            return
        name = getattr(obj, "__name__", "")
        limit = self.limits.max_output_bytes
        first = args[0]
        if name in ("ljust", "rjust", "center", "zfill") and _is_int(first):
            grows = first
        elif name == "expandtabs" and _is_int(first):
            grows = len(owner) + owner.count("\t") * first
        elif name == "replace" and len(args) >= 2 and isinstance(first, str):
            grows = _replaced_length(owner, first, args[1])
        elif name == "join":
            grows = len(owner) * len(first) if _sized(first) else 0
            self._check_size(first)
        else:
            return
        if grows > limit:
            raise LimitExceeded(f"str.{name} would build more than {limit} characters")

    def _guarded_filter(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        precheck = _FILTER_PRECHECKS.get(name)
        limits = self.limits

        @wraps(func)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            check_deadline()
            if precheck is not None:
                precheck(limits.max_output_bytes, _filter_args(func, args), kwargs)
            result = func(*args, **kwargs)
            if isinstance(result, str) and len(result) > limits.max_output_bytes:
                raise LimitExceeded(
                    f"the {name} filter built more than {limits.max_output_bytes} characters"
                )
            return result

        return guarded


@pass_context
def _loop_guard(context: Context, value: Any) -> Any:
    # pass_context keeps Jinja from evaluating the guard at compile time.
    if isinstance(value, Undefined):
        return value
    return _Guarded(value)


def check_format_widths(pattern: str, limit: int) -> None:
    """Refuse a format string whose widths or precisions would build more
    than `limit` characters (`%0999999999d`, `{:>999999999}`), or whose width
    comes from an argument (`%*d`, `{:{w}}`), before it is applied."""
    if _NESTED_BRACE_SPEC.search(pattern):
        raise LimitExceeded("a width taken from an argument is not allowed in a format string")
    numbers: list[str] = []
    for match in _PERCENT_SPEC.finditer(pattern):
        numbers.extend(n for n in match.groups() if n)
    for match in _BRACE_SPEC.finditer(pattern):
        numbers.extend(re.findall(r"\d+", match.group(1)))
    for number in numbers:
        if number == "*":
            raise LimitExceeded("a `*` width is not allowed in a format string")
        if len(number) > 9 or int(number) > limit:
            raise LimitExceeded(f"a format width or precision over {limit} characters")


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _sized(value: Any) -> bool:
    return isinstance(value, str | list | tuple)


def _check_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise LimitExceeded(f"a number would be larger than {MAX_INT_BITS} bits")


def _check_repeat(seq: Any, times: Any, limit: int) -> None:
    if _sized(seq) and _is_int(times) and len(seq) * times > limit:
        raise LimitExceeded(f"a repeated value would be longer than {limit} characters")


def _replaced_length(text: str, old: str, new: Any) -> int:
    if not isinstance(new, str):
        return len(text)
    count = text.count(old) if old else len(text) + 1
    return len(text) + count * (len(new) - len(old))


def _filter_args(func: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The filter's own arguments, without the context Jinja passes first."""
    return args[1:] if getattr(func, "jinja_pass_arg", None) is not None else args


def _pre_width(limit: int, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    width = args[1] if len(args) > 1 else kwargs.get("width", 0)
    if _is_int(width) and width > limit:
        raise LimitExceeded(f"a width over {limit} characters")


def _pre_indent(limit: int, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    text = str(args[0]) if args else ""
    width = args[1] if len(args) > 1 else kwargs.get("width", 4)
    size = width if _is_int(width) else len(str(width))
    if size * (text.count("\n") + 1) + len(text) > limit:
        raise LimitExceeded(f"indent would build more than {limit} characters")


def _pre_replace(limit: int, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    if len(args) >= 3 and isinstance(args[0], str) and isinstance(args[1], str):
        if _replaced_length(args[0], args[1], args[2]) > limit:
            raise LimitExceeded(f"replace would build more than {limit} characters")


def _pre_stringify(limit: int, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    if args and not isinstance(args[0], str) and estimated_size(args[0], limit) > limit:
        raise LimitExceeded(f"the value would print longer than {limit} characters")


def _pre_join(limit: int, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    _pre_stringify(limit, args, kwargs)
    separator = args[1] if len(args) > 1 else kwargs.get("d", "")
    if args and _sized(args[0]) and isinstance(separator, str):
        if len(separator) * len(args[0]) > limit:
            raise LimitExceeded(f"join would build more than {limit} characters")


def _pre_format(limit: int, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    check_format_widths(str(args[0]) if args else "", limit)
    _pre_stringify(limit, (args[1:],), kwargs)


def _pre_slice(limit: int, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    count = args[1] if len(args) > 1 else kwargs.get("slices", 1)
    if _is_int(count) and count > 10_000:
        raise LimitExceeded("slice() is limited to 10000 slices")


def _pre_tojson(limit: int, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    _pre_stringify(limit, args, kwargs)
    indent = args[1] if len(args) > 1 else kwargs.get("indent")
    if _is_int(indent) and indent > MAX_JSON_INDENT:
        raise LimitExceeded(f"tojson indent is limited to {MAX_JSON_INDENT}")


_Precheck = Callable[[int, tuple[Any, ...], Mapping[str, Any]], None]
_FILTER_PRECHECKS: dict[str, _Precheck] = {
    "center": _pre_width,
    "indent": _pre_indent,
    "replace": _pre_replace,
    "join": _pre_join,
    "format": _pre_format,
    "slice": _pre_slice,
    "tojson": _pre_tojson,
    **{
        name: _pre_stringify
        for name in (
            "string",
            "pprint",
            "e",
            "escape",
            "forceescape",
            "safe",
            "urlencode",
            "upper",
            "lower",
            "title",
            "capitalize",
            "trim",
            "striptags",
            "wordwrap",
            "truncate",
            "urlize",
            "xmlattr",
        )
    },
}
