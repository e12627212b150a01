"""Errors of the templates domain, each with its stable problem+json `code`.

Template errors carry `errors`: a list of `{field, line, column, message}`
(plus `template` when the fault is in a partial or layout, and `name` for an
undefined variable), so an editor can put the cursor where the fault is.
`line` is exact; `column` is found by locating the offending token on that
line and is null when it cannot be found (docs/templates.md)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sendstream.core.errors import Conflict, InvalidInput, NotFound


class TemplateNotFound(NotFound):
    code = "template_not_found"

    def __init__(self, template: uuid.UUID | str) -> None:
        super().__init__(f"No template {template} in this workspace.")


class TemplateVersionNotFound(NotFound):
    code = "template_version_not_found"

    def __init__(self, template: uuid.UUID | str, number: int | str) -> None:
        super().__init__(f"Template {template} has no version {number}.")


class TemplateExists(Conflict):
    code = "template_exists"

    def __init__(self, key: str) -> None:
        super().__init__(f"A template with key {key!r} already exists in this workspace.")


class TemplateArchived(Conflict):
    code = "template_archived"

    def __init__(self, key: str) -> None:
        super().__init__(
            f"Template {key!r} is archived: it cannot be sent or given new versions. "
            "Its versions stay readable."
        )


class TemplateNotSendable(Conflict):
    code = "template_not_sendable"

    def __init__(self, key: str, kind: str) -> None:
        super().__init__(
            f"Template {key!r} is a {kind}; only templates of kind `template` are sent "
            f"({kind}s are used through them)."
        )


class TemplateHasNoVersion(Conflict):
    code = "template_has_no_active_version"

    def __init__(self, key: str) -> None:
        super().__init__(f"Template {key!r} has no active version; activate one first.")


class TemplateInUse(Conflict):
    code = "template_in_use"

    def __init__(self, key: str, kind: str, users: list[str]) -> None:
        names = ", ".join(repr(u) for u in users)
        super().__init__(
            f"The {kind} {key!r} is used by the active version of {names}; give those a "
            "version without it first."
        )


class InvalidTemplate(InvalidInput):
    """A version that cannot be saved for a reason other than its template
    code (a missing subject, html and mjml both given, a bad header)."""

    code = "invalid_template"


class _TemplateProblem(InvalidInput):
    """Base of the errors that point into template source."""

    def __init__(self, message: str, errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(_with_place(message, errors), errors=errors)


def _with_place(message: str, errors: Sequence[Mapping[str, Any]]) -> str:
    if not errors:
        return message
    first = errors[0]
    where = str(first.get("field", ""))
    if first.get("template"):
        where = f"{first['template']} ({where})"
    if first.get("line") is not None:
        where += f", line {first['line']}"
        if first.get("column") is not None:
            where += f", column {first['column']}"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('message', message)}{more}"


class TemplateSyntaxError(_TemplateProblem):
    code = "template_syntax_error"

    def __init__(self, errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__("template syntax error", errors)


class TemplateUndefinedVariable(_TemplateProblem):
    code = "template_undefined_variable"

    def __init__(self, errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__("undefined variable", errors)


class TemplateSecurityError(_TemplateProblem):
    code = "template_security_error"

    def __init__(self, errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__("not allowed in a template", errors)


class TemplateRenderLimit(_TemplateProblem):
    code = "template_render_limit"

    def __init__(self, errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__("render limit exceeded", errors)


class TemplateRenderError(_TemplateProblem):
    """Any other failure while rendering (a filter given a value it cannot
    format, a division by zero ...)."""

    code = "template_render_error"

    def __init__(self, errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__("render failed", errors)


class TemplateReferenceInvalid(_TemplateProblem):
    """An `{% include %}` or `layout` naming a template that does not exist in
    this workspace, is archived, has no active version or is of the wrong kind."""

    code = "template_reference_invalid"

    def __init__(self, errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__("unknown template reference", errors)
