"""Checks a version's sources when it is saved, so faults show up in the
editor rather than in a send: syntax (with line and column), what the
sandbox would refuse anyway (`_`-prefixed attributes), unknown filters and
tests, `{% extends %}` (layouts are the `layout` field instead) and includes
whose target is not a literal key. Returns the partials and layout the
sources refer to; the service checks that they exist.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, cast

from jinja2 import TemplateSyntaxError as JinjaSyntaxError
from jinja2 import meta, nodes

from sendstream.core.settings import get_settings
from sendstream.templates.diagnostics import SourceInfo, entry, find_column, line_of, syntax_entry
from sendstream.templates.errors import TemplateSecurityError, TemplateSyntaxError
from sendstream.templates.sandbox import RenderLimits, SendstreamSandbox


@dataclass(frozen=True)
class Reference:
    """A template named by another: a partial (`{% include "footer" %}`,
    `{% import "macros" as m %}`) or a layout (the `layout` field)."""

    key: str
    kind: Literal["partial", "layout"]
    field: str
    line: int | None = None
    column: int | None = None
    # `{% include "x" ignore missing %}`: a missing partial is not an error.
    optional: bool = False


@lru_cache(maxsize=2)
def _environment(html: bool) -> SendstreamSandbox:
    limits = RenderLimits.from_settings(get_settings().templates)
    return SendstreamSandbox(html=html, strict=False, loader=None, limits=limits)


def parse(source: str, *, html: bool) -> nodes.Template:
    """The guarded syntax tree of a source (raises Jinja's syntax error)."""
    return _environment(html).parse(source)


def references(tree: nodes.Template) -> Iterator[tuple[nodes.Node, list[str] | None, bool]]:
    """Every include and import: (node, the literal keys it names or None
    when computed, whether it ignores a missing template)."""
    for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport)):
        target = cast(nodes.Expr, getattr(node, "template"))  # noqa: B009
        optional = bool(getattr(node, "ignore_missing", False))
        if isinstance(target, nodes.Const) and isinstance(target.value, str):
            yield node, [target.value], optional
        elif isinstance(target, nodes.List | nodes.Tuple) and all(
            isinstance(item, nodes.Const) and isinstance(item.value, str) for item in target.items
        ):
            yield node, [item.value for item in target.items], optional  # type: ignore[attr-defined]
        else:
            yield node, None, optional


def uses_content(source: str) -> bool:
    """Whether a layout's source places `{{ content }}`."""
    return "content" in meta.find_undeclared_variables(parse(source, html=True))


def check_sources(fields: Mapping[str, str]) -> list[Reference]:
    """Check every field (`subject`, `html`, `text`, `mjml`, `headers.<Name>`)
    and raise `TemplateSyntaxError` or `TemplateSecurityError` listing every
    fault found, or return the references the fields make."""
    syntax: list[dict[str, Any]] = []
    security: list[dict[str, Any]] = []
    found: list[Reference] = []
    for field, source in fields.items():
        html = field in ("html", "mjml")
        info = SourceInfo(field, None, source)
        env = _environment(html)
        try:
            tree = env.parse(source)
        except JinjaSyntaxError as exc:
            syntax.append(syntax_entry(info, exc))
            continue
        before = len(syntax)
        found.extend(_static_checks(tree, info, env, syntax, security))
        if len(syntax) > before:
            continue  # compiling would report the same fault again
        try:
            env.compile(source, name=field)
        except JinjaSyntaxError as exc:
            syntax.append(syntax_entry(info, exc))
    if syntax:
        raise TemplateSyntaxError(_ordered(syntax))
    if security:
        raise TemplateSecurityError(_ordered(security))
    return found


def _ordered(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(errors, key=lambda e: (e["field"], e["line"] or 0, e["column"] or 0))


def _static_checks(
    tree: nodes.Template,
    info: SourceInfo,
    env: SendstreamSandbox,
    syntax: list[dict[str, Any]],
    security: list[dict[str, Any]],
) -> Iterator[Reference]:
    def at(node: nodes.Node, pattern: str) -> tuple[int, int | None]:
        return node.lineno, find_column(line_of(info.source, node.lineno), pattern)

    for extends in tree.find_all(nodes.Extends):
        line, column = at(extends, r"\bextends\b")
        syntax.append(
            entry(
                info,
                line,
                column,
                "{% extends %} is not supported: set the version's `layout` to the key of a "
                "layout template, which places this HTML with {{ content }}",
            )
        )
    for node, keys, optional in references(tree):
        word = "include" if isinstance(node, nodes.Include) else "import"
        line, column = at(node, rf"\b{word}\b")
        if keys is None:
            syntax.append(
                entry(
                    info,
                    line,
                    column,
                    f"{{% {word} %}} needs the partial's key as a literal string, "
                    f'e.g. {{% {word} "footer" %}}',
                )
            )
            continue
        for key in keys:
            yield Reference(key, "partial", info.field, line, column, optional)
    for attribute in tree.find_all(nodes.Getattr):
        if attribute.attr.startswith("_"):
            line, column = at(attribute, rf"(?<=\.){attribute.attr}\b")
            security.append(_unsafe(info, line, column, attribute.attr))
    for item in tree.find_all(nodes.Getitem):
        argument = item.arg
        if (
            isinstance(argument, nodes.Const)
            and isinstance(argument.value, str)
            and argument.value[:1] == "_"
        ):
            line, column = at(item, rf"['\"]{argument.value}['\"]")
            security.append(_unsafe(info, line, column, argument.value))
    for used in tree.find_all(nodes.Filter):
        if used.name not in env.filters:
            line, column = at(used, rf"(?<=[|\s]){used.name}\b")
            syntax.append(entry(info, line, column, f"No filter named {used.name!r}."))
    for test in tree.find_all(nodes.Test):
        if test.name not in env.tests:
            line, column = at(test, rf"(?<=\s){test.name}\b")
            syntax.append(entry(info, line, column, f"No test named {test.name!r}."))


def _unsafe(info: SourceInfo, line: int, column: int | None, attribute: str) -> dict[str, Any]:
    return entry(
        info,
        line,
        column,
        f"access to attribute {attribute!r} is not allowed: names starting with _ are "
        "internal to Python",
    )
