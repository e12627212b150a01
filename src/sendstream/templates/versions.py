"""The rules a version must meet before it is stored, apart from the
existence of what it refers to (references.py): the fields its kind may
have, source sizes, sender addresses, header names, MJML compiled to HTML,
and the Jinja checks of validation.py."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from email_validator import EmailNotValidError, validate_email

from sendstream.core.errors import InvalidInput
from sendstream.core.settings import get_settings
from sendstream.templates.errors import InvalidTemplate
from sendstream.templates.mjml import compile_mjml
from sendstream.templates.schemas import VersionFields
from sendstream.templates.validation import Reference, check_sources, uses_content

# Headers the delivery pipeline writes itself; a template setting one would
# forge or break the message.
RESERVED_HEADERS = frozenset(
    {
        "from",
        "sender",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "return-path",
        "received",
        "dkim-signature",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "feedback-id",
    }
)
_HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,75}$")
# Fields only a sendable template has.
_TEMPLATE_ONLY = ("subject", "layout", "from_email", "from_name", "reply_to", "headers")


@dataclass(frozen=True)
class PreparedVersion:
    # Columns of the version row (without ids, number and author).
    values: dict[str, Any]
    references: list[Reference]


def _address(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidInput(f"{field}: not an email address: {exc}", code="invalid_email") from None


def prepare_version(body: VersionFields, kind: str) -> PreparedVersion:
    """The version's columns and the references it makes, or the first
    reason it cannot be stored (`InvalidTemplate`, `invalid_email`, or the
    syntax and security errors of `check_sources` listing every fault)."""
    settings = get_settings().templates
    if kind != "template":
        for name in _TEMPLATE_ONLY:
            if name in body.model_fields_set and getattr(body, name) not in (None, {}):
                raise InvalidTemplate(f"{name}: a {kind} has no {name}; only templates do.")
    for name in ("subject", "html", "text", "mjml"):
        value = getattr(body, name)
        if value is not None and len(value.encode()) > settings.max_source_bytes:
            raise InvalidTemplate(
                f"{name}: larger than the {settings.max_source_bytes} bytes a source may have."
            )
    if body.mjml is not None and body.html is not None:
        raise InvalidTemplate("html: give mjml or html, not both (html is compiled from mjml).")
    if body.mjml is not None and kind == "partial":
        raise InvalidTemplate("mjml: MJML compiles whole documents; a partial is a fragment.")
    if kind == "template" and not (body.subject or "").strip():
        raise InvalidTemplate("subject: a template needs a subject.")
    if body.html is None and body.text is None and body.mjml is None:
        raise InvalidTemplate("html: give html, text or mjml.")
    if kind == "layout" and body.html is None and body.mjml is None:
        raise InvalidTemplate("html: a layout needs html (or mjml).")
    addresses = {name: _address(name, getattr(body, name)) for name in ("from_email", "reply_to")}
    seen: set[str] = set()
    for name in body.headers:
        if not _HEADER_NAME.match(name):
            raise InvalidTemplate(
                f"headers.{name}: a header name is letters, digits and hyphens (e.g. X-Campaign)."
            )
        lowered = name.lower()
        if lowered in RESERVED_HEADERS or lowered.startswith("x-sendstream-"):
            raise InvalidTemplate(
                f"headers.{name}: set by Sendstream itself; a template cannot set it."
            )
        if lowered in seen:
            raise InvalidTemplate(f"headers.{name}: given twice (names are case-insensitive).")
        seen.add(lowered)

    fields: dict[str, str] = {}
    for name in ("subject", "text", "mjml"):
        value = getattr(body, name)
        if value is not None:
            fields[name] = value
    for name, value in body.headers.items():
        fields[f"headers.{name}"] = value
    if body.html is not None:
        fields["html"] = body.html
    references = check_sources(fields)
    html = body.html
    if body.mjml is not None:
        html = compile_mjml(body.mjml)
        known = {r.key for r in references}
        references += [r for r in check_sources({"html": html}) if r.key not in known]
    for source in (html, body.text):
        if kind == "layout" and source is not None and not uses_content(source):
            raise InvalidTemplate(
                "html: a layout places the template with {{ content }}; this one never does."
                if source is html
                else "text: a layout's text places the template's text with {{ content }}."
            )
    if body.layout is not None:
        references.append(Reference(body.layout, "layout", "layout"))
    partials = sorted({r.key for r in references if r.kind == "partial"})
    return PreparedVersion(
        values={
            "subject": body.subject,
            "html": html,
            "text": body.text,
            "mjml": body.mjml,
            "from_email": addresses["from_email"],
            "from_name": body.from_name,
            "reply_to": addresses["reply_to"],
            "headers": dict(body.headers),
            "layout_key": body.layout,
            "partial_keys": partials,
            "strict": body.strict,
            "inline_css": body.inline_css,
            "sample_data": dict(body.sample_data),
        },
        references=references,
    )
