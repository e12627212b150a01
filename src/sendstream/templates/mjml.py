"""MJML sources compiled to HTML with mrml (the Rust MJML compiler) when a
version is saved; the HTML is stored and rendered, so sends never compile
MJML.

Jinja inside MJML survives compilation where it stands in text and
attribute values (`<mj-text>Hi {{ contact.first_name }}</mj-text>`,
`href="{{ data.url }}"`) and between sections (`{% if %}` around an
`<mj-section>`). A literal `<` inside a Jinja expression (`{% if a < b %}`)
reads to MJML as a tag: write `b > a` instead.

`<mj-include>` is refused: it would read files of the server. mrml reports
where it noticed a fault by byte offset for most errors, and nothing for
"unexpected end" and "unable to parse"; the tag that breaks the nesting (an
end tag closing nothing open, or the element left open) is reported when it
comes first or mrml gave no place (an approximation, docs/templates.md).
"""

from __future__ import annotations

import re

import mrml

from sendstream.templates.diagnostics import position
from sendstream.templates.errors import TemplateSyntaxError

_AT = re.compile(r" at position (\d+):(\d+)")
_TAG = re.compile(r"<(/?)(mj[a-z-]*|mjml)\b[^>]*?(/?)>", re.I)


def compile_mjml(source: str) -> str:
    """The HTML of an MJML document, or `TemplateSyntaxError` on field `mjml`."""
    options = mrml.ParserOptions(include_loader=mrml.noop_loader())
    try:
        return mrml.to_html(source, parser_options=options).content
    except OSError as exc:
        message = str(exc)
        offset = _suspect(source)
        at = _AT.search(message)
        if at:
            message = message[: at.start()]
            # mrml counts bytes of UTF-8.
            reported = len(source.encode()[: int(at.group(1))].decode(errors="ignore"))
            # mrml notices a stray end tag only where the tree stops making
            # sense; an earlier misplaced tag is the fault to show.
            if offset is None or offset > reported:
                offset = reported
        line, column = position(source, offset) if offset is not None else (None, None)
        if "include" in message:
            message += " (mj-include is not supported: paste the included MJML instead)"
        raise TemplateSyntaxError(
            [{"field": "mjml", "line": line, "column": column, "message": f"MJML: {message}"}]
        ) from None


def _suspect(source: str) -> int | None:
    """The offset of the first tag that breaks the nesting: an end tag that
    closes nothing open, or the innermost element left open when an end tag
    closes an outer one or the document ends."""
    stack: list[tuple[str, int]] = []
    for match in _TAG.finditer(source):
        closing, name, self_closing = match.group(1), match.group(2).lower(), match.group(3)
        if self_closing:
            continue
        if not closing:
            stack.append((name, match.start()))
        elif stack and stack[-1][0] == name:
            stack.pop()
        elif any(open_name == name for open_name, _ in stack):
            return stack[-1][1]
        else:
            return match.start()
    if stack:
        return stack[-1][1]
    if "<mjml" not in source.lower():
        return 0
    return None
