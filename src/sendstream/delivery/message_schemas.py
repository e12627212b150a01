"""Request and response bodies of the send API (/v1/messages). Inputs forbid
unknown fields, so a misspelt field is a 422, not silently ignored.

Header-bound text (names, subject, file names, custom headers) is not
restricted by the schema: CR, LF or NUL in it is refused by the service with
`header_injection`, one code wherever the injection is tried."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from sendstream.core.pagination import Page
from sendstream.core.types import NO_NUL, Timestamp

Stream = Literal["transactional", "marketing"]
MessageStatus = Literal[
    "queued",
    "sending",
    "sent",
    "deferred",
    "failed",
    # Set by bounce handling (bounces/service.py) once the message was sent.
    "delivered",
    "bounced",
    "complained",
]
# An address with an optional display name: `ada@example.com` or
# `Ada Lovelace <ada@example.com>`.
AddressText = Annotated[str, StringConstraints(min_length=3, max_length=520)]
Email = Annotated[str, StringConstraints(min_length=3, max_length=320)]
DisplayName = Annotated[str, StringConstraints(max_length=200)]
Tag = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f,;]+$")
]
MetaKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MetaValue = (
    Annotated[str, StringConstraints(max_length=500, pattern=NO_NUL)] | int | float | bool | None
)
Body = Annotated[str, StringConstraints(max_length=2_097_152, pattern=NO_NUL)]
MAX_RECIPIENTS_PER_ITEM = 500
MAX_COPIES = 50
MAX_BATCH = 500


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AddressInput(_Input):
    email: Email
    name: DisplayName | None = None


class RecipientInput(AddressInput):
    data: dict[str, Any] | None = Field(
        default=None,
        description="Template data for this recipient only, merged over the message's `data`.",
    )


class AttachmentInput(_Input):
    content: str = Field(description="The file, base64-encoded.", max_length=40_000_000)
    filename: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    content_type: Annotated[str, StringConstraints(min_length=3, max_length=255)] = Field(
        default="application/octet-stream", examples=["application/pdf"]
    )
    content_id: Annotated[str, StringConstraints(min_length=1, max_length=250)] | None = Field(
        default=None,
        description="Makes the part inline: the HTML refers to it as `cid:<content_id>`.",
    )


class MessageCreate(_Input):
    """One message, or one per `to` address (each recipient gets its own
    message, id and events; `cc` and `bcc` go with every one of them)."""

    from_: AddressText | AddressInput | None = Field(
        default=None,
        alias="from",
        description="The sender; may be left out when the template version has one.",
        examples=["Acme <news@acme.example>"],
    )
    to: (
        AddressText
        | RecipientInput
        | Annotated[
            list[AddressText | RecipientInput],
            Field(min_length=1, max_length=MAX_RECIPIENTS_PER_ITEM),
        ]
    ) = Field(description="One recipient, or a list: one message per address.")
    cc: list[AddressText | AddressInput] = Field(default_factory=list, max_length=MAX_COPIES)
    bcc: list[AddressText | AddressInput] = Field(default_factory=list, max_length=MAX_COPIES)
    reply_to: AddressText | AddressInput | None = None
    template: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = Field(
        default=None, description="Template key or id; its active version unless `version`."
    )
    version: int | None = Field(default=None, ge=1, le=2_147_483_647)
    data: dict[str, Any] = Field(default_factory=dict, description="Template data.")
    subject: Annotated[str, StringConstraints(max_length=2000)] | None = Field(
        default=None, description="Inline content (without `template`), sent as written."
    )
    html: Body | None = None
    text: Body | None = None
    attachments: list[AttachmentInput] = Field(default_factory=list, max_length=50)
    headers: dict[Annotated[str, StringConstraints(min_length=1, max_length=100)], str] = Field(
        default_factory=dict,
        max_length=50,
        description="Extra header fields, e.g. `X-Campaign`. Sendstream's own fields "
        "(From, Subject, List-Unsubscribe, Content-* ...) are refused with `reserved_header`.",
    )
    metadata: dict[MetaKey, MetaValue] = Field(
        default_factory=dict, max_length=20, description="Yours: kept with the message."
    )
    tags: list[Tag] = Field(default_factory=list, max_length=10)
    send_at: Timestamp | None = Field(
        default=None, description="Send at this time instead of now (at most 30 days ahead)."
    )
    stream: Stream = Field(
        default="transactional",
        description="`marketing` tracks opens and clicks and adds one-click List-Unsubscribe "
        "by default; `transactional` does neither.",
    )
    track_opens: bool | None = Field(default=None, description="Default: the stream's.")
    track_clicks: bool | None = Field(default=None, description="Default: the stream's.")
    list_id: uuid.UUID | None = Field(
        default=None, description="Marketing: the list an unsubscribe from this message leaves."
    )


class TemplateTestSend(_Input):
    """A test-send of a template version: sent at once, transactional, with
    `[Test] ` before the subject."""

    to: Annotated[list[AddressText | AddressInput], Field(min_length=1, max_length=5)] = Field(
        description="1 to 5 addresses; each gets its own message."
    )
    data: dict[str, Any] | None = Field(
        default=None, description="Template data; default: the version's `sample_data`."
    )
    contact_id: uuid.UUID | None = Field(
        default=None,
        description="Render as this contact (`contact.*`); needs the `contacts:read` scope.",
    )
    from_: AddressText | AddressInput | None = Field(
        default=None,
        alias="from",
        description="The sender; default: the version's.",
    )
    reply_to: AddressText | AddressInput | None = None


class MessageBatch(_Input):
    messages: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        # Objects, not `MessageCreate`s: each is validated on its own, so one
        # bad item is refused alone instead of failing the request.
        description="Up to 500 messages, each a `POST /v1/messages` body (`MessageCreate`), "
        "each checked on its own.",
    )


# --- answers


class QueuedMessage(BaseModel):
    id: uuid.UUID
    to: str
    status: Literal["queued"] = "queued"
    message_id: str = Field(description="The RFC 5322 Message-ID the message is sent with.")
    send_at: datetime | None = None


class MessagesQueued(BaseModel):
    messages: list[QueuedMessage]


class BatchItemResult(BaseModel):
    index: int
    status: Literal["queued", "rejected"]
    messages: list[QueuedMessage] = Field(default_factory=list)
    code: str | None = None
    error: str | None = None


class BatchQueued(BaseModel):
    queued: int = Field(description="Messages queued (one per `to` address).")
    rejected: int = Field(description="Items refused; nothing of them was queued.")
    results: list[BatchItemResult]


class AddressRead(BaseModel):
    email: str
    name: str | None = None


class MessageEvent(BaseModel):
    position: int
    type: str
    occurred_at: datetime
    data: dict[str, Any]


class AttachmentRead(BaseModel):
    filename: str
    content_type: str
    content_id: str | None
    size_bytes: int
    sha256: str


class MessageSummary(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: uuid.UUID
    status: MessageStatus
    stream: Stream
    from_: AddressRead = Field(alias="from")
    to: AddressRead
    subject: str | None = Field(description="Inline subject; null for a templated message.")
    template_version_id: uuid.UUID | None
    tags: list[str]
    metadata: dict[str, Any]
    attempts: int
    last_response: str | None
    send_at: datetime | None
    created_at: datetime
    sent_at: datetime | None


class MessageRead(MessageSummary):
    cc: list[AddressRead]
    bcc: list[AddressRead]
    reply_to: str | None
    contact_id: uuid.UUID | None
    list_id: uuid.UUID | None
    track_opens: bool
    track_clicks: bool
    message_id: str
    next_attempt_at: datetime | None = Field(
        description="When a queued or deferred message is next tried; null otherwise."
    )
    last_status_code: int | None
    relay: str | None
    size_bytes: int | None
    opens: int
    clicks: int
    first_opened_at: datetime | None
    first_clicked_at: datetime | None
    updated_at: datetime
    attachments: list[AttachmentRead]
    events: list[MessageEvent] = Field(description="Every event of the message, oldest first.")


MessagePage = Page[MessageSummary]
