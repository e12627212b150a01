"""Where in a template an error is: line and column for every error kind.

Jinja reports the line of a syntax error and, through the template frames of
a rewritten traceback, the line a render failed on; it never reports a
column. The column is found by locating the offending token on that line:
the character Jinja names by offset, the name a message quotes (`unknown tag
'foo'`, `'total' is undefined`, `got 'b'`), or the end of the line for an
unexpected end of template. When a token occurs twice on the line the first
occurrence inside a `{{ }}` or `{% %}` is taken, which may be the wrong one.
A runtime error whose message names no token (a division by zero, a limit)
is placed at the first `{{` or `{%` of its line; a syntax error whose token
cannot be found has a null column.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from jinja2 import TemplateSyntaxError

from sendstream.templates.css import LineMap

# What Jinja calls a token in messages -> how it is written.
_TOKEN_NAMES = {
    "end of print statement": "}}",
    "end of statement block": "%}",
    "begin of print statement": "{{",
    "begin of statement block": "{%",
}


@dataclass(frozen=True)
class SourceInfo:
    """A compiled source: which field of which template it is, the text the
    author wrote, and how lines of what was compiled map back to it."""

    field: str
    template: str | None
    source: str
    lines: LineMap = dataclasses.field(default_factory=LineMap)


def position(source: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of a character offset."""
    offset = max(0, min(offset, len(source)))
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


def line_of(source: str, line: int) -> str:
    lines = source.split("\n")
    return lines[line - 1] if 0 < line <= len(lines) else ""


def find_column(text: str, pattern: str) -> int | None:
    """1-based column of the first match of `pattern` inside a construct on
    `text`, else anywhere on it."""
    matches = list(re.finditer(pattern, text))
    if not matches:
        return None
    for match in matches:
        before = text[: match.start()]
        if before.rfind("{{") > before.rfind("}}") or before.rfind("{%") > before.rfind("%}"):
            return match.start() + 1
    return matches[0].start() + 1


def column_in_line(text: str, message: str) -> int | None:
    """The column of what `message` complains about on the line `text`."""
    tag = re.search(r"unknown tag '([^']+)'", message)
    if tag:
        return find_column(text, rf"(?<=[%\s+-]){re.escape(tag.group(1))}\b")
    named = re.search(r"No (?:filter|test) named '([^']+)'", message)
    if named:
        return find_column(text, rf"(?<=[|\s]){re.escape(named.group(1))}\b")
    if "end of template" in message.lower():
        return len(text) + 1
    quoted = re.search(r"(?:got|unexpected) '([^']+)'", message)
    if quoted:
        expected = _TOKEN_NAMES.get(quoted.group(1), quoted.group(1))
        if expected == "name":
            return None
        return find_column(text, re.escape(expected))
    undefined = re.search(r"'([^']+)' is undefined", message)
    if undefined:
        return find_column(text, rf"(?<![\w.]){re.escape(undefined.group(1))}\b")
    attribute = re.search(r"has no (?:attribute|element) '?([^']+?)'?$", message)
    if attribute:
        name = re.escape(attribute.group(1))
        return find_column(text, rf"(?<=\.){name}\b|(?<=\[['\"]){name}\b|\b{name}\b")
    unsafe = re.search(r"attribute '([^']+)'", message)
    if unsafe:
        return find_column(text, re.escape(unsafe.group(1)))
    named_filter = re.match(r"(\w+): ", message)
    if named_filter:
        found = find_column(text, rf"(?<=[|\s]){named_filter.group(1)}\b")
        if found is not None:
            return found
    return None


def first_construct(text: str) -> int | None:
    """Column of the first `{{` or `{%` on a line: where a runtime error whose
    message names no token is reported (approximate when the line holds
    several)."""
    found = re.search(r"\{[{%]", text)
    return found.start() + 1 if found else None


def syntax_entry(info: SourceInfo, exc: TemplateSyntaxError) -> dict[str, Any]:
    """The `errors[]` entry of a syntax error in `info`'s source."""
    message = exc.message or str(exc)
    column: int | None
    at = re.search(r" at (\d+)$", message)
    if at:
        line, column = position(info.source, int(at.group(1)))
        message = message[: at.start()]
    else:
        line = info.lines.original(exc.lineno)
        column = column_in_line(line_of(info.source, line), message)
    return entry(info, line, column, message)


def entry(
    info: SourceInfo, line: int | None, column: int | None, message: str, **extra: Any
) -> dict[str, Any]:
    # `location` as every other problem detail has it: the request field, or
    # the stored layout or partial the error is in.
    where = (
        f"body.{info.field}" if info.template is None else f"template:{info.template}.{info.field}"
    )
    found: dict[str, Any] = {"location": where, "field": info.field}
    if info.template is not None:
        found["template"] = info.template
    found.update(line=line, column=column, message=message, **extra)
    return found


def template_frame(
    tb: TracebackType | None, names: Mapping[str, SourceInfo]
) -> tuple[SourceInfo, int] | None:
    """The innermost template frame of a rewritten traceback: which source,
    and its line in what the author wrote."""
    found: tuple[SourceInfo, int] | None = None
    while tb is not None:
        code = tb.tb_frame.f_code
        info = names.get(code.co_filename)
        if info is not None and "__jinja_exception__" in tb.tb_frame.f_globals:
            found = (info, info.lines.original(tb.tb_lineno))
        tb = tb.tb_next
    return found


def runtime_entry(
    exc: BaseException, names: Mapping[str, SourceInfo], fallback: SourceInfo, message: str
) -> dict[str, Any]:
    """The `errors[]` entry of an error raised while rendering."""
    located = template_frame(exc.__traceback__, names)
    if located is None:
        return entry(fallback, None, None, message)
    info, line = located
    text = line_of(info.source, line)
    column = column_in_line(text, message) or first_construct(text)
    return entry(info, line, column, message)
