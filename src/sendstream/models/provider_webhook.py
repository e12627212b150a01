from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from sendstream.models.base import Base, Timestamps, UUIDPrimaryKey

PROVIDERS = ("ses", "sendgrid", "postmark", "mailgun")


class ProviderWebhook(UUIDPrimaryKey, Timestamps, Base):
    """A receiver of one ESP's event webhook (SES via SNS, SendGrid, Postmark,
    Mailgun) for one workspace, reached at `/hooks/<provider>/<id>`: the
    unguessable id finds the row, the provider's own signature (or Postmark's
    basic-auth credentials) proves the request.

    `config_encrypted` is a `core.secrets` token bound to
    `provider_webhooks.config_encrypted:<id>` holding a JSON object: SES
    `{"topic_arns": [...]}`, SendGrid `{"public_key": "<base64 DER>"}`,
    Mailgun `{"signing_key": "..."}`, Postmark `{"username": ..., "password": ...}`.

    Counters count events (one request may carry many): `applied` were
    handed to the bounce actions, `ignored` had no action (opens, clicks,
    unknown types, events without a recipient), `duplicates` were seen before."""

    __tablename__ = "provider_webhooks"
    __table_args__ = (
        Index("ix_provider_webhooks_workspace_id_id", "workspace_id", "id"),
        CheckConstraint("provider IN ('ses', 'sendgrid', 'postmark', 'mailgun')", name="provider"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    config_encrypted: Mapped[bytes] = mapped_column(LargeBinary, info={"encrypted": True})
    # SES: the last SNS subscription confirmed (SubscribeURL visited).
    subscription_topic_arn: Mapped[str | None] = mapped_column(Text)
    subscription_confirmed_at: Mapped[datetime | None] = mapped_column()
    last_received_at: Mapped[datetime | None] = mapped_column()
    received_count: Mapped[int] = mapped_column(BigInteger, server_default="0")
    applied_count: Mapped[int] = mapped_column(BigInteger, server_default="0")
    ignored_count: Mapped[int] = mapped_column(BigInteger, server_default="0")
    duplicate_count: Mapped[int] = mapped_column(BigInteger, server_default="0")


class ProviderWebhookReceipt(Base):
    """What a provider webhook has already seen (an SNS MessageId, a Mailgun
    token, a SendGrid `sg_event_id` ...), kept for the provider's replay
    window: a repeat is not acted on twice, and a replayed Mailgun token is
    refused."""

    __tablename__ = "provider_webhook_receipts"
    __table_args__ = (
        Index("ix_provider_webhook_receipts_webhook_id_seen_at", "webhook_id", "seen_at"),
    )

    webhook_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("provider_webhooks.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    seen_at: Mapped[datetime] = mapped_column(server_default=func.now())
