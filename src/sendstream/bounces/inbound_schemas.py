"""Request and response bodies of /v1/inbound-domains, /v1/inbound-routes and
/v1/inbound-emails."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints

from sendstream.core.pagination import Page
from sendstream.core.types import Name

# An exact local part, `*`, or a prefix followed by `*` (`reply+*`, `team-*`).
Pattern = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=64, pattern=r"^(\*|[A-Za-z0-9!#$%&'+/=?^_`{|}~.-]+\*?)$"
    ),
]
Priority = Annotated[int, Field(ge=0, le=1_000_000)]
Action = Literal["webhook", "drop"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InboundDomainCreate(_Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=253)] = Field(
        description="The domain (`in.example.com`); its MX record must name our MX host."
    )


class InboundDomainRead(BaseModel):
    id: uuid.UUID
    name: str
    status: Literal["pending", "verified", "failed"]
    mx_record: dict[str, Any] = Field(
        description="The record to publish: `{type: MX, host, value, priority}`."
    )
    check_results: dict[str, Any] | None = Field(
        description="The last DNS check: `mx` with `status` (ok, missing, wrong, error), "
        "`found` and `message`."
    )
    checked_at: datetime | None
    verified_at: datetime | None
    created_at: datetime


class InboundDomainPage(Page[InboundDomainRead]):
    pass


class InboundRouteCreate(_Body):
    domain_id: uuid.UUID = Field(description="The inbound domain the route belongs to.")
    name: Annotated[Name, StringConstraints(max_length=200)] = Field(
        description="A label, sent in `inbound.received` (`route.name`) so receivers can filter."
    )
    pattern: Pattern = Field(
        description="The recipient's local part: exact (`support`), `*` (every address) "
        "or a prefix ending in `*` (`reply+*`). Case-insensitive."
    )
    priority: Priority = Field(default=100, description="Lower wins among matching routes.")
    action: Action = Field(
        default="webhook",
        description="`webhook`: store the mail and emit `inbound.received`; `drop`: accept "
        "and discard it.",
    )
    enabled: Annotated[bool, Strict()] = True


class InboundRouteUpdate(_Body):
    name: Annotated[Name, StringConstraints(max_length=200)] | None = None
    pattern: Pattern | None = None
    priority: Priority | None = None
    action: Action | None = None
    enabled: Annotated[bool, Strict()] | None = None


class InboundRouteRead(BaseModel):
    id: uuid.UUID
    domain_id: uuid.UUID
    name: str
    pattern: str
    priority: int
    action: Action
    enabled: bool
    created_at: datetime
    updated_at: datetime


class InboundRoutePage(Page[InboundRouteRead]):
    pass


class MailAddressRead(BaseModel):
    address: str
    name: str | None


class InboundAttachmentRead(BaseModel):
    id: uuid.UUID
    filename: str | None
    content_type: str
    content_id: str | None
    disposition: Literal["attachment", "inline"]
    size: int
    sha256: str
    omitted: bool = Field(description="True: over the size limit, the content was not kept.")
    url: str | None = Field(description="Where to download it (null when omitted).")


class AuthResultsRead(BaseModel):
    spf: str
    dkim: str
    dmarc: str
    details: dict[str, Any]


class InReplyToRead(BaseModel):
    message_id: uuid.UUID
    contact_id: uuid.UUID | None


class InboundRouteRef(BaseModel):
    id: uuid.UUID | None
    name: str | None


class InboundEmailSummary(BaseModel):
    id: uuid.UUID
    route: InboundRouteRef
    action: Action
    mail_from: str | None
    recipients: list[str]
    from_: MailAddressRead | None = Field(alias="from", serialization_alias="from")
    to: list[MailAddressRead]
    cc: list[MailAddressRead]
    subject: str | None
    auth: AuthResultsRead
    auto_submitted: bool
    in_reply_to: InReplyToRead | None
    size_bytes: int
    created_at: datetime

    model_config = ConfigDict(populate_by_name=True)


class InboundEmailRead(InboundEmailSummary):
    reply_to: list[MailAddressRead]
    message_id_header: str | None
    text: str | None
    html: str | None
    text_truncated: bool
    html_truncated: bool
    headers: list[list[str]]
    attachments: list[InboundAttachmentRead]
    notes: list[str]
    raw_url: str


class InboundEmailPage(Page[InboundEmailSummary]):
    pass
