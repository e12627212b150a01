"""Request and response bodies of /v1/bounce-mailboxes. Secrets are accepted,
never returned: a read says only whether each one is set."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints

from sendstream.core.pagination import Page
from sendstream.core.types import Name

Host = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9.:\[\]_-]+$")
]
Folder = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f\"\\*%]+$")
]
# One line, no NUL or control characters.
Secret = Annotated[
    str, StringConstraints(min_length=1, max_length=8000, pattern=r"^[^\x00-\x1f\x7f]+$")
]
Username = Annotated[
    str, StringConstraints(min_length=1, max_length=320, pattern=r"^[^\x00-\x1f\x7f]+$")
]
Flag = Annotated[str, StringConstraints(max_length=64, pattern=r"^\\?[A-Za-z0-9$_.-]+$")]
Url = Annotated[str, StringConstraints(max_length=2000, pattern=r"^https?://[^\s\x00-\x1f]+$")]
# PEM is ASCII: printable characters and line breaks around the armour.
Pem = Annotated[
    str,
    StringConstraints(
        max_length=100_000,
        pattern=r"^[\t\n\r\x20-\x7e]*-----BEGIN CERTIFICATE-----[\t\n\r\x20-\x7e]*$",
    ),
]
Tls = Literal["implicit", "starttls"]
Auth = Literal["password", "xoauth2"]
Action = Literal["move", "flag", "delete"]
Mode = Literal["idle", "poll"]
Interval = Annotated[int, Field(ge=5, le=86400)]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BounceMailboxCreate(_Settings):
    name: Annotated[Name, StringConstraints(max_length=200)] = Field(
        description="A label for people (`bounces@example.com on Gmail`)."
    )
    host: Host = Field(description="The IMAP server's host name.")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(
        default=993, description="993 for implicit TLS, 143 for STARTTLS."
    )
    tls: Tls = Field(default="implicit", description="`implicit` (port 993) or `starttls`.")
    ca_certificates: Pem | None = Field(
        default=None,
        description="PEM certificates to trust besides the system's (a private CA or a "
        "self-signed server). Certificates are always verified.",
    )
    username: Username
    auth: Auth = Field(default="password", description="`password` (LOGIN) or `xoauth2`.")
    password: Secret | None = Field(default=None, description="For auth `password`.")
    oauth_token_url: Url | None = Field(
        default=None,
        description="XOAUTH2 with refresh: the provider's token endpoint, e.g. "
        "`https://oauth2.googleapis.com/token` or "
        "`https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`.",
    )
    oauth_client_id: Annotated[str, StringConstraints(max_length=500)] | None = None
    oauth_client_secret: Secret | None = None
    oauth_refresh_token: Secret | None = None
    oauth_scope: Annotated[str, StringConstraints(max_length=2000)] | None = Field(
        default=None,
        description="Sent with the refresh (Office 365: "
        "`https://outlook.office365.com/IMAP.AccessAsUser.All offline_access`).",
    )
    access_token: Secret | None = Field(
        default=None,
        description="XOAUTH2 without refresh: a static access token (or the current one).",
    )
    folder: Folder = Field(default="INBOX", description="The folder bounces land in.")
    processed_action: Action = Field(
        default="move",
        description="What happens to a message once it is safely stored: `move` to "
        "`processed_folder`, `flag` with `processed_flag`, or `delete`.",
    )
    processed_folder: Folder | None = Field(
        default=None, description="Action `move`: the target folder (default `Processed`)."
    )
    processed_flag: Flag | None = Field(
        default=None, description="Action `flag`: a system flag or keyword (default `\\Seen`)."
    )
    mode: Mode = Field(default="idle", description="`idle` (RFC 2177, at once) or `poll`.")
    poll_interval: Interval = Field(default=60, description="Seconds between polls.")
    enabled: Annotated[bool, Strict()] = True


class BounceMailboxUpdate(_Settings):
    """Fields given change; secrets given as null are removed."""

    name: Annotated[Name, StringConstraints(max_length=200)] | None = None
    host: Host | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    tls: Tls | None = None
    ca_certificates: Pem | None = None
    username: Username | None = None
    auth: Auth | None = None
    password: Secret | None = None
    oauth_token_url: Url | None = None
    oauth_client_id: Annotated[str, StringConstraints(max_length=500)] | None = None
    oauth_client_secret: Secret | None = None
    oauth_refresh_token: Secret | None = None
    oauth_scope: Annotated[str, StringConstraints(max_length=2000)] | None = None
    access_token: Secret | None = None
    folder: Folder | None = None
    processed_action: Action | None = None
    processed_folder: Folder | None = None
    processed_flag: Flag | None = None
    mode: Mode | None = None
    poll_interval: Interval | None = None
    enabled: Annotated[bool, Strict()] | None = None


class BounceMailboxCounters(BaseModel):
    accepted: int = Field(description="Messages handed to bounce processing.")
    duplicates: int = Field(description="Messages seen before under another UID, not handed again.")
    oversized: int = Field(description="Messages over the size limit, left unread in the folder.")


class BounceMailboxRead(BaseModel):
    id: uuid.UUID
    name: str
    host: str
    port: int
    tls: Tls
    ca_certificates: str | None
    username: str
    auth: Auth
    password_set: bool
    oauth_token_url: str | None
    oauth_client_id: str | None
    oauth_client_secret_set: bool
    oauth_refresh_token_set: bool
    oauth_scope: str | None
    access_token_set: bool
    folder: str
    processed_action: Action
    processed_folder: str | None
    processed_flag: str | None
    mode: Mode
    poll_interval: int
    enabled: bool
    uidvalidity: int | None
    last_uid: int
    last_error: str | None
    last_error_at: datetime | None
    last_checked_at: datetime | None
    counters: BounceMailboxCounters
    created_at: datetime
    updated_at: datetime


BounceMailboxPage = Page[BounceMailboxRead]


class BounceMailboxCheck(BaseModel):
    ok: bool = Field(description="Connected, authenticated and opened the folder.")
    error: str | None = Field(description="What failed, as the server or the network said it.")
    capabilities: list[str] = Field(description="The server's capabilities after login.")
    uidvalidity: int | None
    messages: int | None = Field(description="Messages in the folder now.")
