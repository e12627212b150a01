"""Request and response bodies of /v1/smtp-credentials. Inputs forbid
unknown fields, so a misspelt field is a 422, not silently ignored."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from sendstream.core.pagination import Page
from sendstream.core.types import Name
from sendstream.delivery.message_schemas import Stream

# What AUTH PLAIN/LOGIN clients accept as a user name without quoting.
Username = Annotated[
    str,
    StringConstraints(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$"),
]


class SmtpCredentialCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(max_length=200, examples=["WordPress shop"])
    username: Username | None = Field(
        default=None,
        description="Unique across the installation (case-insensitive); left out: a "
        "generated `ss-smtp-<12 hex>`.",
    )
    scopes: list[str] = Field(
        default_factory=lambda: ["messages:send"],
        min_length=1,
        max_length=4,
        description="`messages:send` (the only scope an SMTP login uses); the creating key "
        "must hold it.",
    )
    allowed_streams: list[Stream] | None = Field(
        default=None,
        min_length=1,
        description="Streams the login may send (`X-Sendstream-Stream`); null: both.",
    )
    expires_at: datetime | None = Field(default=None, description="Must be in the future.")


class SmtpCredentialRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    username: str = Field(description="The AUTH PLAIN/LOGIN user name.")
    scopes: list[str]
    allowed_streams: list[Stream] | None
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None
    created_at: datetime


class SmtpCredentialCreated(SmtpCredentialRead):
    password: str | None = Field(
        description="The password, shown only in this response: store it now. null when "
        "this is an Idempotency-Key replay, because the password is never stored."
    )


class SmtpCredentialPage(Page[SmtpCredentialRead]):
    pass
