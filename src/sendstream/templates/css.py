"""CSS inlining with `css-inline`: `<style>` rules become `style` attributes,
`@media` and other at-rules stay in a `<style>` block (clients that read it
use it), remote stylesheets are never fetched.

Inlining a rendered 10 KB message costs about 0.5 ms (docs/templates.md),
as much as rendering it, so it is done once per compiled template whenever
that is provably the same as doing it per message (`inline_source`), and per
message otherwise (`inline_rendered`).

Inlining the template source is safe when the HTML parser sees the
template's own structure: every Jinja construct is replaced by a
placeholder (a comment where it stands between elements, an opaque word
inside an attribute value), the source is inlined, and the result is
accepted only if

- the parser kept every element, attribute and placeholder where the source
  had it (no implied end tag, no element moved: what a `{% if %}` opening an
  element in one branch would make the parser do),
- each `{% if %}`/`{% for %}`... opens and ends inside the same element,
- no construct sits where it decides what a selector matches: in a `class`,
  `id` or `style` attribute, inside `<style>`, in an attribute named by an
  attribute selector, or anywhere when a selector depends on siblings
  (`:nth-child`, `+`, `~` ...), which a loop changes.

Otherwise the message is inlined after each render.
"""

from __future__ import annotations

import bisect
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser

import css_inline
import structlog

log = structlog.get_logger("sendstream.templates")

_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
_STYLE_TAG = re.compile(r"<style[\s>]", re.I)
# Elements the parser adds or the inliner drops; ignored when comparing shapes.
_IMPLIED = frozenset({"html", "head", "body", "tbody", "style", "link"})
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)
_SELECTOR_ATTRS = frozenset({"class", "id", "style"})
_RCDATA = frozenset({"title", "textarea"})
_SIBLING_SELECTORS = re.compile(r":(?:nth-|first-|last-|only-|empty|has\(|not\()|[+~]", re.I)
_BLOCK_WORD = re.compile(r"^\{%[-+]?\s*([A-Za-z_]+)")
_OPENERS = frozenset(
    {"if", "for", "macro", "call", "filter", "with", "block", "autoescape", "trans"}
)
_MIDDLES = frozenset({"else", "elif", "pluralize"})


def needs_inlining(html: str) -> bool:
    return _STYLE_TAG.search(html) is not None


def inline_rendered(html: str) -> str:
    """A rendered message's HTML with its CSS inlined (unchanged when it has
    no `<style>`, or when the inliner refuses it: the mail still goes out)."""
    if not needs_inlining(html):
        return html
    try:
        return _INLINER.inline(html)
    except (css_inline.InlineError, ValueError) as exc:
        log.warning("templates.css_inline_failed", error=str(exc)[:200])
        return html


@dataclass(frozen=True)
class LineMap:
    """Lines of an inlined source back to the lines the author wrote: pairs
    of (first line of a construct in the inlined source, its line in the
    original), sorted."""

    starts: tuple[int, ...] = ()
    originals: tuple[int, ...] = ()

    def original(self, line: int) -> int:
        index = bisect.bisect_right(self.starts, line) - 1
        if index < 0:
            return line
        return self.originals[index] + (line - self.starts[index])


@dataclass(frozen=True)
class InlinedSource:
    source: str
    lines: LineMap = field(default_factory=LineMap)


def split_constructs(source: str) -> list[tuple[int, int]] | None:
    """(start, end) offsets of every `{{ }}`, `{% %}` and `{# #}` (a raw
    block as one), or None when the source does not scan cleanly."""
    spans: list[tuple[int, int]] = []
    i = 0
    length = len(source)
    while True:
        start = source.find("{", i)
        if start < 0 or start + 1 >= length:
            return spans
        kind = source[start + 1]
        if kind == "#":
            comment_end = source.find("#}", start + 2)
            if comment_end < 0:
                return None
            spans.append((start, comment_end + 2))
            i = comment_end + 2
        elif kind in "{%":
            end = _construct_end(source, start + 2, "}}" if kind == "{" else "%}")
            if end is None:
                return None
            if kind == "%" and re.match(r"\{%[-+]?\s*raw\s*[-+]?%\}", source[start:end]):
                close = re.compile(r"\{%[-+]?\s*endraw\s*[-+]?%\}").search(source, end)
                if close is None:
                    return None
                end = close.end()
            spans.append((start, end))
            i = end
        else:
            i = start + 1


def _construct_end(source: str, i: int, closer: str) -> int | None:
    quote: str | None = None
    while i < len(source):
        char = source[i]
        if quote:
            if char == "\\":
                i += 2
                continue
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif source.startswith(closer, i):
            return i + 2
        i += 1
    return None


class _Shape(HTMLParser):
    """What the parser sees: tags (attributes but `style`), comments, the
    CSS of `<style>` blocks, and where each placeholder sits."""

    def __init__(self, token: re.Pattern[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.token = token
        self.events: list[tuple[object, ...]] = []
        self.css: list[str] = []
        # placeholder -> "content" | "value" | "bad"
        self.places: dict[str, str] = {}
        self.attr_names: set[str] = set()
        # placeholder (as a comment) -> the open elements around it
        self.paths: dict[str, tuple[int, ...]] = {}
        self._open: list[tuple[str, int]] = []
        self._raw: str | None = None
        # Which of html, head, body, tbody the source writes itself.
        self.implied_present: set[str] = set()

    def _mark(self, text: str, place: str) -> None:
        for found in self.token.findall(text):
            self.places[found] = "bad" if found in self.places else place

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._mark(tag, "bad")
        kept = []
        for name, value in attrs:
            self._mark(name, "bad")
            if value and self.token.search(value):
                self._mark(value, "bad" if name in _SELECTOR_ATTRS else "value")
                self.attr_names.add(name)
            if name != "style":
                kept.append((name, value))
        if tag in ("style", "script", *_RCDATA):
            self._raw = tag
        if tag in _IMPLIED:
            self.implied_present.add(tag)
            return
        self.events.append(("start", tag, tuple(kept)))
        if tag not in _VOID:
            self._open.append((tag, len(self.events)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == self._raw:
            self._raw = None
        if tag in _IMPLIED or tag in _VOID:
            return
        self.events.append(("end", tag))
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index][0] == tag:
                del self._open[index:]
                break

    def handle_data(self, data: str) -> None:
        if self._raw == "style":
            self.css.append(data)
            self._mark(data, "bad")
        elif self._raw in _RCDATA:
            self._mark(data, "value")
        elif self._raw is not None:
            self._mark(data, "bad")
        else:
            self._mark(data, "content")

    def handle_comment(self, data: str) -> None:
        match = self.token.fullmatch(data)
        if match:
            self.paths[data] = tuple(position for _, position in self._open)
        else:
            self._mark(data, "bad")
        self.events.append(("comment", data))

    def handle_decl(self, decl: str) -> None:
        self._mark(decl, "bad")

    def handle_pi(self, data: str) -> None:
        self._mark(data, "bad")

    def unknown_decl(self, data: str) -> None:
        self._mark(data, "bad")


def _shape(html: str, token: re.Pattern[str]) -> _Shape:
    parser = _Shape(token)
    parser.feed(html)
    parser.close()
    return parser


def inline_source(source: str) -> InlinedSource | None:
    """The template source with its CSS inlined, or None when that would not
    equal inlining every rendered message (see the module docstring)."""
    if not needs_inlining(source):
        return InlinedSource(source)
    spans = split_constructs(source)
    if spans is None:
        return None
    nonce = secrets.token_hex(4)
    if nonce in source:
        return None
    token = re.compile(rf"zz{nonce}n\d+q")

    def name(index: int) -> str:
        return f"zz{nonce}n{index}q"

    constructs = [source[a:b] for a, b in spans]
    opaque = _substitute(source, spans, [name(i) for i in range(len(spans))])
    places = _shape(opaque, token).places
    if len(places) != len(spans) or "bad" in places.values():
        return None
    protected = _substitute(
        source,
        spans,
        [
            f"<!--{name(i)}-->" if places[name(i)] == "content" else name(i)
            for i in range(len(spans))
        ],
    )
    before = _shape(protected, token)
    if not _safe_selectors(before, constructs) or not _blocks_nest(before, constructs, name):
        return None
    try:
        inlined = _INLINER.inline(protected)
    except (css_inline.InlineError, ValueError):
        return None
    after = _shape(inlined, token)
    if after.events != before.events or after.places != before.places:
        return None
    unwrapped = _drop_implied(inlined, before.implied_present)
    if unwrapped is None:
        return None
    return _restore(unwrapped, source, spans, constructs, nonce)


def _drop_implied(html: str, written: set[str]) -> str | None:
    """The inliner's output without the html, head, body and tbody tags the
    parser added: where it put them relative to a `{% for %}` is not where a
    render's rows would put them (a `<tbody>` inside the loop). None when an
    added tag received styles (a `body {}` rule), which only a per-render
    inlining applies right."""
    for tag in ("html", "head", "body", "tbody"):
        if tag in written:
            continue
        if re.search(rf"<{tag}\s[^>]*>", html, re.I):
            return None
        html = re.sub(rf"</?{tag}>", "", html, flags=re.I)
    return html


def _substitute(source: str, spans: Sequence[tuple[int, int]], replacements: list[str]) -> str:
    parts: list[str] = []
    last = 0
    for (start, end), replacement in zip(spans, replacements, strict=True):
        parts.append(source[last:start])
        parts.append(replacement)
        last = end
    parts.append(source[last:])
    return "".join(parts)


def _safe_selectors(shape: _Shape, constructs: Sequence[str]) -> bool:
    css = "".join(shape.css)
    selectors = " ".join(re.findall(r"([^{}]*)\{", re.sub(r"/\*.*?\*/", "", css, flags=re.S)))
    has_statements = any(c.startswith("{%") for c in constructs)
    if has_statements and _SIBLING_SELECTORS.search(selectors):
        return False
    for attr in shape.attr_names:
        if re.search(rf"\[\s*{re.escape(attr)}\b", selectors, re.I):
            return False
    return True


def _blocks_nest(shape: _Shape, constructs: Sequence[str], name: object) -> bool:
    """Each block statement opens, continues and ends among the same
    elements, so the parser saw the structure every render will have."""
    stack: list[tuple[int, ...]] = []
    for index, construct in enumerate(constructs):
        match = _BLOCK_WORD.match(construct)
        if not match:
            continue
        word = match.group(1)
        is_block_set = word == "set" and "=" not in construct
        path = shape.paths.get(name(index))  # type: ignore[operator]
        if word in _OPENERS or is_block_set:
            if path is None:
                return False
            stack.append(path)
        elif word in _MIDDLES or word.startswith("end"):
            if path is None or not stack or stack[-1] != path:
                return False
            if word.startswith("end"):
                stack.pop()
    return not stack


def _restore(
    inlined: str,
    source: str,
    spans: Sequence[tuple[int, int]],
    constructs: Sequence[str],
    nonce: str,
) -> InlinedSource | None:
    pattern = re.compile(rf"<!--zz{nonce}n(\d+)q-->|zz{nonce}n(\d+)q")
    parts: list[str] = []
    starts: list[int] = []
    originals: list[int] = []
    line = 1
    last = 0
    seen: set[int] = set()
    for match in pattern.finditer(inlined):
        index = int(match.group(1) or match.group(2))
        if index in seen or index >= len(constructs):
            return None
        seen.add(index)
        text = inlined[last : match.start()]
        parts.append(text)
        line += text.count("\n")
        starts.append(line)
        originals.append(source.count("\n", 0, spans[index][0]) + 1)
        parts.append(constructs[index])
        line += constructs[index].count("\n")
        last = match.end()
    if len(seen) != len(constructs):
        return None
    parts.append(inlined[last:])
    return InlinedSource("".join(parts), LineMap(tuple(starts), tuple(originals)))
