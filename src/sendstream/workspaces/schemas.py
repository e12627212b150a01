"""Request and response bodies of the workspaces API. Inputs forbid unknown
fields, so a misspelt field is a 422, not silently ignored."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sendstream.core.pagination import Page
from sendstream.core.types import Line, Name

Role = Literal["owner", "admin", "member"]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- workspace


class WorkspaceRead(_Output):
    id: uuid.UUID
    name: str
    slug: str
    created_at: datetime
    updated_at: datetime


class WorkspaceUpdate(_Input):
    name: Name | None = Field(default=None, max_length=200)


# --- users


class UserCreate(_Input):
    email: Line = Field(min_length=3, max_length=320, examples=["ada@example.com"])
    name: Line | None = Field(default=None, max_length=200)
    role: Role = "member"
    password: str | None = Field(
        default=None,
        min_length=8,
        max_length=1024,
        description="Stored only as an argon2id hash.",
    )


class UserUpdate(_Input):
    name: Line | None = Field(default=None, max_length=200)
    role: Role | None = None
    password: str | None = Field(default=None, min_length=8, max_length=1024)
    disabled: bool | None = Field(
        default=None, description="true disables sign-in; false re-enables it."
    )


class UserRead(_Output):
    id: uuid.UUID
    email: str
    name: str | None
    role: Role
    disabled: bool
    has_password: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, user: Any) -> UserRead:
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            role=user.role,
            disabled=user.disabled_at is not None,
            has_password=user.password_hash is not None,
            created_at=user.created_at,
            updated_at=user.updated_at,
        )


class UserPage(Page[UserRead]):
    pass


# --- API keys


class ApiKeyCreate(_Input):
    name: Name = Field(max_length=200)
    scopes: list[str] = Field(
        min_length=1,
        max_length=32,
        description="Scopes from the documented set; `admin` implies all of them.",
        examples=[["contacts:read", "contacts:write"]],
    )
    expires_at: datetime | None = Field(default=None, description="Must be in the future.")


class ApiKeyRead(_Output):
    id: uuid.UUID
    name: str
    prefix: str = Field(description="The public start of the key, `ss_<12 hex>`.")
    scopes: list[str]
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None
    created_at: datetime


class ApiKeyCreated(ApiKeyRead):
    key: str | None = Field(
        description="The full key, shown only in this response: store it now. null when "
        "this is an Idempotency-Key replay, because the secret is never stored."
    )


class ApiKeyPage(Page[ApiKeyRead]):
    pass


# --- audit log


class AuditEntryRead(_Output):
    id: int
    occurred_at: datetime
    actor_type: str
    actor_id: str | None
    action: str
    target: str | None
    status: int | None
    ip: str | None
    user_agent: str | None
    request_id: str | None
    details: dict[str, Any]


class AuditEntryPage(Page[AuditEntryRead]):
    pass
