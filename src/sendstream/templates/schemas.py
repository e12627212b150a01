"""Request and response bodies of the templates API. Inputs forbid unknown
fields, so a misspelt field is a 422, not silently ignored."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from sendstream.core.pagination import Page
from sendstream.core.types import NO_CONTROL_CHARS, NO_NUL

Kind = Literal["template", "layout", "partial"]


def _not_a_uuid(value: str) -> str:
    try:
        uuid.UUID(value)
    except ValueError:
        return value
    raise ValueError("a key cannot look like an id (a UUID): paths take either")


# Keys are what the send API, `{% include %}` and `layout` name.
TemplateKey = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$"),
    AfterValidator(_not_a_uuid),
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_CONTROL_CHARS)]
Description = Annotated[str, StringConstraints(max_length=1000, pattern=NO_NUL)]
# Sizes are checked by the service against `templates.max_source_bytes`.
Source = Annotated[str, StringConstraints(pattern=NO_NUL)]
# Checked by the service (`invalid_email`), like every address the API takes.
Address = Annotated[str, StringConstraints(min_length=3, max_length=320, pattern=NO_CONTROL_CHARS)]
# Names are checked by the service (`invalid_template`): JSON Schema's
# propertyNames is not understood by every client generator.
HeaderName = Annotated[str, StringConstraints(max_length=76)]
# One header line: no CR or LF (header injection), at most RFC 5322's 998.
HeaderValue = Annotated[str, StringConstraints(max_length=998, pattern=r"^[^\x00\r\n]*$")]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VersionFields(_Input):
    subject: Source | None = Field(
        default=None,
        max_length=2000,
        description="Jinja template of the subject (kind `template`: required).",
        examples=["Welcome, {{ first_name|default('friend') }}"],
    )
    html: Source | None = Field(
        default=None, description="Jinja template of the HTML part. Not with `mjml`."
    )
    text: Source | None = Field(
        default=None,
        description="Jinja template of the text part; without it the text is made from the HTML.",
    )
    mjml: Source | None = Field(
        default=None,
        description="MJML source; compiled to `html` with mrml when saved. Not with `html`.",
    )
    from_email: Address | None = Field(default=None, description="Default sender address.")
    from_name: Name | None = Field(default=None, description="Default sender name.")
    reply_to: Address | None = None
    headers: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict,
        max_length=50,
        description="Extra headers; values are Jinja templates too. Standard headers "
        "(From, To, Subject, Message-ID, List-Unsubscribe ...) are refused.",
    )
    layout: TemplateKey | None = Field(
        default=None,
        description="Key of a `layout` template wrapping this HTML as {{ content }} "
        "(kind `template` only).",
    )
    strict: bool = Field(
        default=False, description="Undefined variables fail the render instead of printing ''."
    )
    inline_css: bool = Field(default=True, description="Inline `<style>` rules into the HTML.")
    sample_data: dict[str, Any] = Field(
        default_factory=dict, description="`data` of previews that are given none."
    )


class TemplateCreate(VersionFields):
    """A template and its first version (number 1, active)."""

    key: TemplateKey = Field(examples=["welcome"])
    name: Name
    kind: Kind = Field(
        default="template",
        description="`template`: sendable. `layout`: wraps templates' HTML as {{ content }}. "
        '`partial`: included with {% include "key" %}.',
    )
    description: Description | None = None


class VersionCreate(VersionFields):
    activate: bool = Field(default=True, description="Make it the version that sends.")


class TemplateUpdate(_Input):
    name: Name | None = Field(default=None, description="Omitted or null: unchanged.")
    description: Description | None = Field(default=None, description="null clears it.")


class PreviewRequest(_Input):
    version: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="Version number; default: the active one."
    )
    data: dict[str, Any] | None = Field(
        default=None, description="`data` of the render; default: the version's `sample_data`."
    )
    contact_id: uuid.UUID | None = Field(
        default=None, description="Render for this contact (needs `contacts:read` too)."
    )


class VersionRead(BaseModel):
    id: uuid.UUID
    template_id: uuid.UUID
    number: int
    active: bool
    subject: str | None
    html: str | None
    text: str | None
    mjml: str | None
    from_email: str | None
    from_name: str | None
    reply_to: str | None
    headers: dict[str, str]
    layout: str | None
    partials: list[str] = Field(description="Keys of the partials this version includes.")
    strict: bool
    inline_css: bool
    sample_data: dict[str, Any]
    created_at: datetime
    created_by: str | None


class VersionSummary(BaseModel):
    id: uuid.UUID
    number: int
    active: bool
    subject: str | None
    layout: str | None
    created_at: datetime
    created_by: str | None


class TemplateRead(BaseModel):
    id: uuid.UUID
    key: str
    name: str
    kind: Kind
    description: str | None
    archived: bool
    archived_at: datetime | None
    latest_version: int = Field(description="Number of the newest version.")
    active_version: VersionRead | None
    created_at: datetime
    updated_at: datetime


class TemplateSummary(BaseModel):
    id: uuid.UUID
    key: str
    name: str
    kind: Kind
    description: str | None
    archived: bool
    archived_at: datetime | None
    latest_version: int
    active_version_number: int | None
    created_at: datetime
    updated_at: datetime


class TemplatePage(Page[TemplateSummary]):
    pass


class VersionPage(Page[VersionSummary]):
    pass


class PreviewRead(BaseModel):
    template_id: uuid.UUID
    version: int
    subject: str
    html: str | None
    text: str | None
    from_email: str | None
    from_name: str | None
    reply_to: str | None
    headers: dict[str, str]
