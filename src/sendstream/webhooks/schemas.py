"""Request and response shapes of /v1/webhooks. A signing secret appears
only in the answer that created it (create, rotate-secret); custom header
values never appear at all, only their names."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints

from sendstream.core.pagination import Page
from sendstream.core.types import NO_CONTROL_CHARS, NO_NUL
from sendstream.models.webhook_endpoint import WebhookEndpoint
from sendstream.webhooks.ssrf import MAX_URL_LENGTH

SignatureScheme = Literal["v1", "v1a", "v1,v1a"]
StreamName = Literal["transactional", "marketing"]
EventPattern = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=NO_CONTROL_CHARS)
]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NO_CONTROL_CHARS)]
# The schema's bound only caps the request; past MAX_URL_LENGTH the service
# answers `invalid_webhook_url`, which says what the limit is.
Url = Annotated[str, StringConstraints(min_length=1, max_length=4 * MAX_URL_LENGTH)]
Description = Annotated[str, StringConstraints(max_length=500, pattern=NO_NUL)]
# Header names and values are checked by the service (`invalid_header` says
# which one and why); the schema only bounds their size.
Headers = dict[
    Annotated[str, StringConstraints(min_length=1, max_length=100)],
    Annotated[str, StringConstraints(max_length=2000)],
]
MAX_HEADERS = 20
MAX_OVERLAP_SECONDS = 7 * 24 * 3600
DEFAULT_OVERLAP_SECONDS = 24 * 3600


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


# `0` is not `false`: the document says boolean, and lax parsing would take
# 0/1 and "yes"/"no" too.
Flag = Annotated[bool, Strict()]


class WebhookFilters(_Input):
    """Each filter given narrows the endpoint to events whose data has a
    matching value; an event without that field (e.g. `contact.created` has
    no `stream`) does not pass a filter on it."""

    streams: list[StreamName] | None = Field(
        default=None, max_length=2, description="Events whose `stream` is one of these."
    )
    list_ids: list[uuid.UUID] | None = Field(
        default=None, max_length=100, description="Events whose `list_id` is one of these."
    )
    tags: list[Tag] | None = Field(
        default=None, max_length=100, description="Events whose `tags` include one of these."
    )


_EVENT_TYPES_DOC = (
    "Event types wanted: exact names (`message.bounced`) or patterns (`message.*`, `*` "
    "for everything). docs/webhooks.md lists every type with an example payload."
)


class WebhookCreate(_Input):
    url: Url = Field(
        description="Where events are POSTed. https:// (http:// only in development); its "
        "host must resolve to public addresses unless the workspace allows private ones.",
        examples=["https://hooks.example.com/sendstream"],
    )
    event_types: list[EventPattern] = Field(
        min_length=1, max_length=100, description=_EVENT_TYPES_DOC, examples=[["message.*"]]
    )
    filters: WebhookFilters = Field(default_factory=WebhookFilters)
    description: Description | None = None
    enabled: Flag = True
    headers: Headers | None = Field(
        default=None,
        max_length=MAX_HEADERS,
        description="Extra headers sent with every request (e.g. the receiver's own "
        "credentials). Stored encrypted; answers show only their names.",
    )
    fifo: Flag = Field(
        default=False,
        description="Deliver the events about one contact one at a time, in order. "
        "Otherwise requests run in parallel (up to `max_concurrency`).",
    )
    max_concurrency: int = Field(default=10, ge=1, le=100)
    batch_max_events: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Send up to this many events per request (the batch payload); null: "
        "one event per request.",
    )
    batch_window_ms: int = Field(
        default=1000, ge=0, le=60000, description="How long a batch may wait to fill."
    )
    signature_scheme: SignatureScheme = Field(
        default="v1",
        description="`v1`: HMAC-SHA256 with the `whsec_` secret; `v1a`: Ed25519, verified "
        "with the `whpk_` public key; `v1,v1a`: both signatures on every request.",
    )


class WebhookUpdate(_Input):
    """Fields left out stay as they are. `description`, `headers` and
    `batch_max_events` set to null are cleared."""

    url: Url | None = None
    event_types: list[EventPattern] | None = Field(default=None, min_length=1, max_length=100)
    filters: WebhookFilters | None = None
    description: Description | None = None
    enabled: Flag | None = Field(
        default=None,
        description="false stops delivery to the endpoint; true resumes it (as POST "
        "/v1/webhooks/{id}/enable does).",
    )
    headers: Headers | None = Field(default=None, max_length=MAX_HEADERS)
    fifo: Flag | None = None
    max_concurrency: int | None = Field(default=None, ge=1, le=100)
    batch_max_events: int | None = Field(default=None, ge=1, le=1000)
    batch_window_ms: int | None = Field(default=None, ge=0, le=60000)
    signature_scheme: SignatureScheme | None = None


class WebhookRotate(_Input):
    overlap_seconds: int = Field(
        default=DEFAULT_OVERLAP_SECONDS,
        ge=0,
        le=MAX_OVERLAP_SECONDS,
        description="How long the current secret keeps signing beside the new one "
        "(default 24 hours, at most 7 days; 0 drops it at once).",
    )


class WebhookRead(BaseModel):
    id: uuid.UUID
    url: str
    description: str | None
    enabled: bool
    event_types: list[str]
    filters: WebhookFilters
    header_names: list[str] = Field(description="Names of the custom headers (values hidden).")
    fifo: bool
    max_concurrency: int
    batch_max_events: int | None
    batch_window_ms: int
    signature_scheme: SignatureScheme
    secret_hint: str = Field(
        description="The start of the current `whsec_` secret, to tell secrets apart."
    )
    public_key: str | None = Field(
        description="`whpk_...`: the Ed25519 public key that verifies `v1a` signatures; "
        "null when the endpoint does not sign with Ed25519."
    )
    previous_secret_expires_at: datetime | None = Field(
        description="Until then the previous secret signs too (after a rotation)."
    )
    disabled_reason: str | None = Field(
        description="Why delivery stopped (410 Gone, failing too long); null while enabled."
    )
    disabled_at: datetime | None
    failing_since: datetime | None = Field(
        description="Start of the current run of failed deliveries; null when the last "
        "delivery succeeded."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(
        cls,
        endpoint: WebhookEndpoint,
        *,
        secret_hint: str,
        public_key: str | None,
        header_names: list[str],
    ) -> WebhookRead:
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            description=endpoint.description,
            enabled=endpoint.enabled,
            event_types=list(endpoint.event_types),
            filters=WebhookFilters.model_validate(endpoint.filters or {}),
            header_names=header_names,
            fifo=endpoint.fifo,
            max_concurrency=endpoint.max_concurrency,
            batch_max_events=endpoint.batch_max_events,
            batch_window_ms=endpoint.batch_window_ms,
            signature_scheme=endpoint.signature_scheme,
            secret_hint=secret_hint,
            public_key=public_key,
            previous_secret_expires_at=endpoint.previous_secret_expires_at,
            disabled_reason=endpoint.disabled_reason,
            disabled_at=endpoint.disabled_at,
            failing_since=endpoint.failing_since,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
        )


class WebhookWithSecret(WebhookRead):
    secret: str | None = Field(
        description="The `whsec_` signing secret, shown only in this answer: store it now. "
        "null on an Idempotency-Key replay, because the secret is never stored in clear."
    )


class WebhookPage(Page[WebhookRead]):
    pass


class WebhookSettingsUpdate(_Input):
    allow_private_addresses: Flag | None = Field(
        default=None,
        description="Let this workspace's endpoints point at loopback, private and "
        "link-local addresses (local development). Off by default: such URLs are refused.",
    )


class WebhookSettingsRead(BaseModel):
    allow_private_addresses: bool = Field(description="This workspace's own switch.")
    installation_allows_private_addresses: bool = Field(
        description="`webhooks.allow_private_addresses` of the installation, which allows "
        "them for every workspace."
    )
