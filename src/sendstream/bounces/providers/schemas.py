"""Request and response bodies of /v1/provider-webhooks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints

from sendstream.core.pagination import Page
from sendstream.core.types import Name

Provider = Literal["ses", "sendgrid", "postmark", "mailgun"]
TopicArn = Annotated[
    str,
    StringConstraints(
        pattern=r"^arn:aws(-cn|-us-gov)?:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}$",
        max_length=400,
    ),
]
OneLineSecret = Annotated[
    str, StringConstraints(min_length=8, max_length=4000, pattern=r"^[^\x00-\x08\x0e-\x1f\x7f]*$")
]


class _Create(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[Name, StringConstraints(max_length=200)] = Field(
        description="A label for people (`SES eu-west-1 production`)."
    )
    enabled: Annotated[bool, Strict()] = True


class SesWebhookCreate(_Create):
    provider: Literal["ses"] = Field(description="Amazon SES through an SNS topic.")
    topic_arns: list[TopicArn] = Field(
        min_length=1,
        max_length=20,
        description="The SNS topic ARNs whose messages are accepted.",
    )


class SendgridWebhookCreate(_Create):
    provider: Literal["sendgrid"] = Field(description="SendGrid's Signed Event Webhook.")
    public_key: OneLineSecret = Field(
        description="The Signed Event Webhook's verification key (base64 DER as the "
        "SendGrid console shows it, or PEM)."
    )


class PostmarkWebhookCreate(_Create):
    provider: Literal["postmark"] = Field(
        description="Postmark: basic-auth credentials are generated and shown once."
    )


class MailgunWebhookCreate(_Create):
    provider: Literal["mailgun"] = Field(description="Mailgun's signed webhooks.")
    signing_key: OneLineSecret = Field(description="The HTTP webhook signing key.")


# One shape per provider, told apart by `provider`: each carries exactly the
# material its provider's signatures need.
ProviderWebhookCreate = Annotated[
    SesWebhookCreate | SendgridWebhookCreate | PostmarkWebhookCreate | MailgunWebhookCreate,
    Field(discriminator="provider"),
]


class ProviderWebhookCounters(BaseModel):
    received: int = Field(description="Events received (a request may carry several).")
    applied: int = Field(description="Events handed to the bounce and complaint actions.")
    ignored: int = Field(description="Events with nothing to act on (opens, unknown types).")
    duplicates: int = Field(description="Events seen before and not acted on again.")


class ProviderWebhookRead(BaseModel):
    id: uuid.UUID
    provider: Provider
    name: str
    enabled: bool
    url: str = Field(description="Where the provider sends its events.")
    topic_arns: list[str] | None = Field(default=None, description="SES: the accepted topics.")
    subscription_topic_arn: str | None = Field(
        default=None, description="SES: the topic whose subscription was last confirmed."
    )
    subscription_confirmed_at: datetime | None = None
    username: str | None = Field(default=None, description="Postmark: the basic-auth user.")
    key_hint: str | None = Field(
        default=None,
        description="SendGrid/Mailgun: the last characters of the key, to tell keys apart.",
    )
    last_received_at: datetime | None = None
    counters: ProviderWebhookCounters
    created_at: datetime
    updated_at: datetime


class ProviderWebhookCreated(ProviderWebhookRead):
    password: str | None = Field(
        default=None,
        description="Postmark: the basic-auth password, shown only in this answer.",
    )
    url_with_credentials: str | None = Field(
        default=None,
        description="Postmark: the URL to paste into Postmark's webhook settings, with the "
        "credentials in it; shown only in this answer.",
    )


class ProviderWebhookPage(Page[ProviderWebhookRead]):
    pass


class ProviderHookResult(BaseModel):
    """What one delivery from a provider led to."""

    received: int
    applied: int
    ignored: int
    duplicates: int
