"""Request and response bodies of the contacts and fields API. Inputs forbid
unknown fields, so a misspelt field is a 422, not silently ignored."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from sendstream.contacts.consent import ConsentSource
from sendstream.contacts.values import FieldType
from sendstream.core.pagination import Page
from sendstream.core.types import NO_CONTROL_CHARS, NO_NUL, Line

ContactStatus = Literal["active", "unsubscribed", "bounced", "complained"]
# Bounce and complaint handling set the other two states, never an API call.
WritableStatus = Literal["active", "unsubscribed"]
Name = Annotated[str, StringConstraints(pattern=NO_CONTROL_CHARS, max_length=200)]
Tag = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f,;]+$")
]
# Field keys are what templates and filters write: `plan`, `signup_date`.
FieldKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
ExternalId = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=NO_CONTROL_CHARS)
]
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")


def _locale(value: str) -> str:
    return value.replace("_", "-")


# Checked against the zone database by the service (`unknown_timezone`).
TimeZone = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_+/-]+$")
]
Locale = Annotated[
    str, StringConstraints(max_length=35, pattern=_LOCALE.pattern), AfterValidator(_locale)
]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ConsentInput(_Input):
    """How the person gave (or withdrew) consent; kept on the consent record."""

    source: Literal["api", "form", "crm_sync", "admin"] = Field(
        default="api", description="`form`: the person used a form on your site."
    )
    text: Annotated[str, StringConstraints(max_length=10_000, pattern=NO_NUL)] | None = Field(
        default=None, description="The words the person agreed to, as shown to them."
    )
    ip: IPv4Address | IPv6Address | None = Field(
        default=None, description="The person's IP address when they acted."
    )
    user_agent: (
        Annotated[str, StringConstraints(max_length=1000, pattern=NO_CONTROL_CHARS)] | None
    ) = None
    explicit_opt_in: bool = Field(
        default=False,
        description="The person opted in again themselves. Required to bring back an address "
        "that was erased at their request.",
    )


class _ContactFields(_Input):
    external_id: ExternalId | None = None
    # Keys are checked by the service (`invalid_system`): JSON Schema's
    # propertyNames is not understood by every client generator.
    external_ids: dict[str, ExternalId | None] | None = Field(
        default=None,
        max_length=20,
        description='Ids in connected systems, e.g. {"hubspot": "5123"}; null value removes one.',
    )
    first_name: Name | None = None
    last_name: Name | None = None
    timezone: TimeZone | None = None
    locale: Locale | None = None
    status: WritableStatus | None = Field(
        default=None, description="Global consent state; every change is a consent record."
    )
    attributes: dict[str, Any] | None = Field(
        default=None,
        max_length=200,
        description="Custom field values by field key; null clears a value.",
    )
    tags: list[Tag] | None = Field(default=None, max_length=100)
    consent: ConsentInput | None = None


class ContactCreate(_ContactFields):
    email: Line = Field(min_length=3, max_length=320, examples=["ada@example.com"])
    lists: list[uuid.UUID] = Field(
        default_factory=list,
        max_length=100,
        description="Lists to subscribe the new contact to (double opt-in lists: `unconfirmed`).",
    )


class ContactUpdate(_ContactFields):
    """PATCH: only the fields given change; `null` clears a field (`email` and
    `status` cannot be cleared: `null` leaves them as they are)."""

    email: Line | None = Field(default=None, min_length=3, max_length=320)


class ContactUpsert(_ContactFields):
    """Create the contact or change the given fields of the existing one."""

    email: Line | None = Field(default=None, min_length=3, max_length=320)
    lists: list[uuid.UUID] = Field(default_factory=list, max_length=100)


class ContactRead(_Output):
    id: uuid.UUID
    email: str
    external_id: str | None
    external_ids: dict[str, str] = Field(default_factory=dict)
    first_name: str | None
    last_name: str | None
    timezone: str | None
    locale: str | None
    status: ContactStatus
    attributes: dict[str, Any]
    tags: list[str]
    created_at: datetime
    updated_at: datetime


ContactPage = Page[ContactRead]


class BatchItem(ContactUpsert):
    pass


class ContactBatch(_Input):
    match: Literal["email", "external_id"] = Field(
        default="email", description="Which identifier finds existing contacts."
    )
    contacts: list[dict[str, Any]] = Field(min_length=1, max_length=1000)


BatchOutcome = Literal["created", "updated", "unchanged", "rejected"]


class BatchResult(BaseModel):
    index: int
    status: BatchOutcome
    id: uuid.UUID | None = None
    code: str | None = None
    error: str | None = None


class BatchSummary(BaseModel):
    created: int
    updated: int
    unchanged: int
    rejected: int
    results: list[BatchResult]


class TimelineEntry(BaseModel):
    position: int
    type: str
    occurred_at: datetime
    data: dict[str, Any]


TimelinePage = Page[TimelineEntry]


# --- custom fields


class FieldCreate(_Input):
    key: FieldKey = Field(examples=["plan"])
    label: Name | None = Field(default=None, min_length=1)
    type: FieldType
    options: (
        list[
            Annotated[
                str, StringConstraints(min_length=1, max_length=200, pattern=NO_CONTROL_CHARS)
            ]
        ]
        | None
    ) = Field(default=None, max_length=500, description="Allowed values of an `enum` field.")
    default: Any = Field(default=None, description="Value given to new contacts without one.")
    description: Annotated[str, StringConstraints(max_length=1000, pattern=NO_NUL)] | None = None


class FieldUpdate(_Input):
    key: FieldKey | None = Field(
        default=None, description="Renames the field; every contact's value moves with it."
    )
    label: Name | None = Field(default=None, min_length=1)
    options: (
        list[
            Annotated[
                str, StringConstraints(min_length=1, max_length=200, pattern=NO_CONTROL_CHARS)
            ]
        ]
        | None
    ) = Field(default=None, max_length=500)
    default: Any = None
    description: Annotated[str, StringConstraints(max_length=1000, pattern=NO_NUL)] | None = None


class FieldRead(_Output):
    id: uuid.UUID
    key: str
    label: str
    type: FieldType
    options: list[str] | None
    default: Any
    description: str | None
    created_at: datetime
    updated_at: datetime


FieldPage = Page[FieldRead]


__all__ = ["ConsentSource"]
