"""Managing provider webhooks (/v1/provider-webhooks).

- Verification material (SES topic ARNs, SendGrid's public key, Mailgun's
  signing key, the Postmark credentials generated here) is one JSON object
  stored as a `core.secrets` token bound to
  `provider_webhooks.config_encrypted:<id>`.
- The Postmark password is returned in clear by `create_webhook` only.
- The receiving URL is `<api.public_url>/hooks/<provider>/<id>`; the id is a
  UUIDv7 (74 random bits), and the provider's own verification proves each
  request (see `receiving.py`).
"""

from __future__ import annotations

import json
import secrets as random
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.bounces.providers import sendgrid
from sendstream.bounces.providers.errors import InvalidProviderWebhook, ProviderWebhookNotFound
from sendstream.bounces.providers.repository import provider_webhook_repository
from sendstream.bounces.providers.schemas import (
    MailgunWebhookCreate,
    PostmarkWebhookCreate,
    ProviderWebhookCounters,
    ProviderWebhookCreate,
    ProviderWebhookCreated,
    ProviderWebhookRead,
    SendgridWebhookCreate,
    SesWebhookCreate,
)
from sendstream.core import secrets
from sendstream.core.ids import uuid7
from sendstream.core.pagination import PageParams, cursor_uuid, trim_page
from sendstream.core.settings import get_settings
from sendstream.models.provider_webhook import ProviderWebhook

HINT_CHARS = 4


def config_context(webhook_id: uuid.UUID) -> str:
    return f"provider_webhooks.config_encrypted:{webhook_id}"


def read_config(webhook: ProviderWebhook) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(
        secrets.decrypt(webhook.config_encrypted, config_context(webhook.id))
    )
    return config


def public_base_url() -> str:
    api = get_settings().api
    return (api.public_url or f"http://{api.host}:{api.port}").rstrip("/")


def receiving_url(webhook: ProviderWebhook) -> str:
    return f"{public_base_url()}/hooks/{webhook.provider}/{webhook.id}"


def _config(body: ProviderWebhookCreate) -> tuple[dict[str, Any], str | None]:
    """The material to store, and the generated Postmark password (or None)."""
    match body:
        case PostmarkWebhookCreate():
            password = random.token_urlsafe(24)
            return {"username": f"pm_{random.token_hex(6)}", "password": password}, password
        case SendgridWebhookCreate():
            try:
                sendgrid.load_public_key(body.public_key)
            except ValueError as exc:
                raise InvalidProviderWebhook("public_key", str(exc)) from None
            return {"public_key": body.public_key}, None
        case SesWebhookCreate():
            return {"topic_arns": list(dict.fromkeys(body.topic_arns))}, None
        case MailgunWebhookCreate():
            return {"signing_key": body.signing_key}, None


class ProviderWebhookService:
    async def create_webhook(
        self, session: AsyncSession, workspace_id: uuid.UUID, body: ProviderWebhookCreate
    ) -> ProviderWebhookCreated:
        """The new webhook as answered once: with the Postmark password."""
        config, password = _config(body)
        webhook_id = uuid7()
        webhook = await provider_webhook_repository.add(
            session,
            ProviderWebhook(
                id=webhook_id,
                workspace_id=workspace_id,
                provider=body.provider,
                name=body.name.strip(),
                enabled=body.enabled,
                config_encrypted=secrets.encrypt(
                    json.dumps(config).encode(), config_context(webhook_id)
                ),
            ),
        )
        read = self.describe(webhook).model_dump()
        if password is None:
            return ProviderWebhookCreated(**read)
        scheme, _, rest = read["url"].partition("://")
        return ProviderWebhookCreated(
            **read,
            password=password,
            url_with_credentials=f"{scheme}://{config['username']}:{password}@{rest}",
        )

    async def get_webhook(
        self, session: AsyncSession, workspace_id: uuid.UUID, webhook_id: uuid.UUID
    ) -> ProviderWebhook:
        found = await provider_webhook_repository.get(session, workspace_id, webhook_id)
        if found is None:
            raise ProviderWebhookNotFound(webhook_id)
        return found

    async def list_webhooks(
        self, session: AsyncSession, workspace_id: uuid.UUID, page: PageParams
    ) -> tuple[list[ProviderWebhook], str | None]:
        rows = list(
            await provider_webhook_repository.page(
                session, workspace_id, after=cursor_uuid(page.cursor, "id"), limit=page.limit + 1
            )
        )
        return trim_page(rows, page.limit, lambda row: {"id": str(row.id)})

    async def delete_webhook(
        self, session: AsyncSession, workspace_id: uuid.UUID, webhook_id: uuid.UUID
    ) -> None:
        """Requests to its URL answer 404 from now on; its receipts go with it."""
        webhook = await self.get_webhook(session, workspace_id, webhook_id)
        await provider_webhook_repository.delete(session, webhook)

    def describe(self, webhook: ProviderWebhook) -> ProviderWebhookRead:
        """The webhook as answers show it: no password, no key, only a hint."""
        config = read_config(webhook)
        key = config.get("public_key") or config.get("signing_key")
        return ProviderWebhookRead(
            id=webhook.id,
            provider=webhook.provider,
            name=webhook.name,
            enabled=webhook.enabled,
            url=receiving_url(webhook),
            topic_arns=config.get("topic_arns"),
            subscription_topic_arn=webhook.subscription_topic_arn,
            subscription_confirmed_at=webhook.subscription_confirmed_at,
            username=config.get("username"),
            key_hint=f"...{key.strip()[-HINT_CHARS:]}" if isinstance(key, str) else None,
            last_received_at=webhook.last_received_at,
            counters=ProviderWebhookCounters(
                received=webhook.received_count,
                applied=webhook.applied_count,
                ignored=webhook.ignored_count,
                duplicates=webhook.duplicate_count,
            ),
            created_at=webhook.created_at,
            updated_at=webhook.updated_at,
        )


provider_webhook_service = ProviderWebhookService()
