"""The plain-text part of a message made from its HTML, for versions without
their own text.

Hand-written (html2text is GPL) on a regular-expression tokenizer and
`html.unescape` rather than `html.parser`: this runs once per message on the
send path, and the standard parser's per-tag cost alone made the text part
cost more than rendering the message (measured at several times this one
for a 10 KB newsletter of about 400 elements).

- head, style, script, title and anything styled `display:none` (preheaders)
  are skipped; so are Outlook's conditional comments, which are comments;
- paragraphs, headings, lists, tables, blockquotes and rules become lines,
  with a blank line between blocks; `<br>` breaks the line;
- list items start with `- ` (or `1. ` in an ordered list), table cells are
  separated by a space;
- links read `text (url)`; a link whose text is its URL, an address or empty
  is written once; `mailto:`, `#` and `javascript:` targets are not shown;
- images show their alt text;
- whitespace collapses as a browser would; `<pre>` keeps its own;
- lines wrap at `width` columns (76 by default; None: no wrapping), never
  inside a word or URL.
"""

from __future__ import annotations

import html as html_entities
import re
import textwrap

_SKIP = frozenset({"head", "style", "script", "title", "template", "noscript", "xml"})
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)
# Blocks separated from their neighbours by a blank line; other blocks by a line break.
_PARAGRAPHS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "blockquote", "pre", "dl"}
)
_LINES = frozenset(
    {
        "div",
        "tr",
        "li",
        "dt",
        "dd",
        "section",
        "article",
        "header",
        "footer",
        "main",
        "nav",
        "aside",
        "center",
        "form",
        "figure",
        "figcaption",
        "address",
        "tbody",
        "thead",
        "tfoot",
    }
)
_HIDDEN = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden|mso-hide\s*:\s*all", re.I)
_SPACES = re.compile(r"[ \t\r\n\f\v\u00a0]+")
# Paragraph break / line break markers inside the buffer, resolved at the end.
_PARA = "\x00P"
_LINE = "\x00L"


# A comment, a declaration (<!DOCTYPE>, <![CDATA[ ...), a processing
# instruction, a tag (quoted attribute values may hold ">"), or text.
_TOKENS = re.compile(
    r"<!--.*?(?:-->|\Z)"
    r"|<[!?][^>]*>?"
    r"|<(/?)([A-Za-z][A-Za-z0-9:-]*)((?:[^>\"']+|\"[^\"]*\"|'[^']*')*)>"
    r"|[^<]+|<",
    re.S,
)
_ATTRIBUTE = re.compile(r"""([^\s=/>"']+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?""")
# Elements whose content is raw text, up to their end tag.
_RAW = {"script": re.compile(r"</script\s*>", re.I), "style": re.compile(r"</style\s*>", re.I)}


def _attributes(text: str) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for match in _ATTRIBUTE.finditer(text):
        name, *values = match.groups()
        value = next((v for v in values if v is not None), None)
        found.append((name.lower(), html_entities.unescape(value) if value else value))
    return found


class _TextBuilder:
    def __init__(self) -> None:
        self.out: list[str] = []
        # Open elements: (tag, hidden); hidden counts for the whole subtree.
        self.stack: list[tuple[str, bool]] = []
        self.links: list[tuple[str | None, int]] = []
        self.lists: list[list[int]] = []
        self.pre = 0

    @property
    def hidden(self) -> bool:
        return bool(self.stack) and self.stack[-1][1]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs} if attrs else {}
        hidden = (
            self.hidden
            or tag in _SKIP
            or ("style" in values and bool(_HIDDEN.search(values["style"])))
        )
        if tag not in _VOID:
            self.stack.append((tag, hidden))
        if hidden:
            return
        if tag == "br":
            self.out.append(_LINE)
        elif tag == "hr":
            self.out.extend((_PARA, "-" * 20, _PARA))
        elif tag == "img":
            alt = _SPACES.sub(" ", values.get("alt", "")).strip()
            if alt:
                self.out.append(alt)
        elif tag == "a":
            self.links.append((values.get("href"), len(self.out)))
        elif tag in ("ul", "ol"):
            self.lists.append([0 if tag == "ol" else -1])
            self.out.append(_PARA)
        elif tag == "li":
            self.out.append(_LINE)
            marker = "- "
            if self.lists and self.lists[-1][0] >= 0:
                self.lists[-1][0] += 1
                marker = f"{self.lists[-1][0]}. "
            self.out.append(marker)
        elif tag in ("td", "th"):
            self.out.append(" ")
        elif tag == "pre":
            self.pre += 1
            self.out.append(_PARA)
        elif tag in _PARAGRAPHS:
            self.out.append(_PARA)
        elif tag in _LINES:
            self.out.append(_LINE)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        stack = self.stack
        if stack and stack[-1][0] == tag:
            hidden = stack.pop()[1]
        elif tag in _VOID or not any(open_tag == tag for open_tag, _ in stack):
            return  # a stray end tag: browsers ignore it too
        else:
            while stack:
                open_tag, hidden = stack.pop()
                if open_tag == tag:
                    break
        if hidden:
            return
        if tag == "a" and self.links:
            href, start = self.links.pop()
            self._close_link(href, start)
        elif tag in ("ul", "ol"):
            if self.lists:
                self.lists.pop()
            self.out.append(_PARA)
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
            self.out.append(_PARA)
        elif tag in _PARAGRAPHS:
            self.out.append(_PARA)
        elif tag in _LINES:
            self.out.append(_LINE)

    def _close_link(self, href: str | None, start: int) -> None:
        if not href:
            return
        href = href.strip()
        if href.startswith(("#", "javascript:", "mailto:", "tel:")) or not href:
            return
        label = _SPACES.sub(" ", "".join(p for p in self.out[start:] if p[:1] != "\x00")).strip()
        if label.rstrip("/") in (href.rstrip("/"), href.split("://", 1)[-1].rstrip("/")):
            return
        self.out.append(f" ({href})" if label else href)

    def handle_data(self, data: str) -> None:
        if self.hidden:
            return
        self.out.append(data if self.pre else _SPACES.sub(" ", data))

    def feed(self, html: str) -> None:
        position = 0
        while position < len(html):
            match = _TOKENS.match(html, position)
            if match is None:  # cannot happen: the last alternative takes one "<"
                break
            position = match.end()
            name = match.group(2)
            if name is None:
                token = match.group(0)
                if token[0] != "<" or len(token) == 1:
                    self.handle_data(html_entities.unescape(token) if "&" in token else token)
                continue
            tag = name.lower()
            if match.group(1):
                self.handle_endtag(tag)
                continue
            rest = match.group(3)
            # Only links, images and inline styles (hidden blocks) matter.
            wanted = tag in ("a", "img") or "style" in rest or "STYLE" in rest
            attrs = _attributes(rest) if wanted and "=" in rest else []
            if rest.rstrip().endswith("/"):
                self.handle_startendtag(tag, attrs)
            else:
                self.handle_starttag(tag, attrs)
            raw_end = _RAW.get(tag)
            if raw_end is not None:
                end = raw_end.search(html, position)
                position = end.end() if end else len(html)
                self.handle_endtag(tag)


def html_to_text(html: str, width: int | None = 76) -> str:
    """The readable text of `html`, lines wrapped at `width` columns."""
    builder = _TextBuilder()
    builder.feed(html)
    blocks: list[str] = []
    for paragraph in "".join(builder.out).split(_PARA):
        lines = [_clean(line) for line in paragraph.split(_LINE)]
        text = "\n".join(line for line in lines if line)
        if text:
            blocks.append(text)
    result = "\n\n".join(blocks)
    if width:
        result = "\n".join(_wrap(line, width) for line in result.split("\n"))
    return result + "\n" if result else ""


def _clean(line: str) -> str:
    if "\n" in line:  # from <pre>: keep its lines, trim trailing spaces only
        return "\n".join(part.rstrip() for part in line.split("\n")).strip("\n")
    return _SPACES.sub(" ", line).strip()


def _wrap(line: str, width: int) -> str:
    if len(line) <= width:
        return line
    indent = ""
    marker = re.match(r"^(- |\d+\. )", line)
    if marker:
        indent = " " * len(marker.group(1))
    return "\n".join(
        textwrap.wrap(
            line,
            width=width,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
    )
