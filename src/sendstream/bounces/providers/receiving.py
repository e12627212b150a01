"""Receiving a provider's webhook request: prove it came from the provider,
read its events, and hand each verdict to `bounce_service.apply` in the
webhook's workspace, all in the request's one transaction.

Answers, so the provider retries exactly when retrying can help:

- unknown or disabled webhook id: 404; bad or missing signature or
  credentials: 401, stale signature timestamp: 401, a signed message from a
  topic or certificate host this webhook does not accept: 403 - nothing is
  recorded for any of them;
- a body that is not JSON or not the provider's shape: 400;
- a replayed Mailgun token: 406 (Mailgun's "do not retry");
- SNS unreachable for the certificate or the SubscribeURL, or the database
  down: 503 (the provider retries later);
- otherwise 200, with what became of the events: unknown event types and
  events without a recipient are counted as ignored, events seen before as
  duplicates (not acted on again).

Matching: our message is looked up only in the webhook's workspace, by the
`sendstream_message_id` the sender passed through the ESP, else by the
Message-ID header the ESP echoed; an event naming no message of this
workspace still acts on the address here (suppression), with no message.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.bounces.providers import mailgun, postmark, sendgrid, ses, sns
from sendstream.bounces.providers.errors import (
    MalformedProviderPayload,
    ProviderReplay,
    ProviderRequestStale,
    ProviderSignatureInvalid,
    ProviderSourceNotAllowed,
    ProviderUpstreamUnavailable,
    ProviderWebhookNotFound,
)
from sendstream.bounces.providers.events import ProviderEvent, iso_time, unix_time
from sendstream.bounces.providers.repository import provider_webhook_repository
from sendstream.bounces.providers.schemas import ProviderHookResult
from sendstream.bounces.providers.service import read_config
from sendstream.bounces.service import bounce_service
from sendstream.core.settings import Settings, get_settings
from sendstream.models.provider_webhook import PROVIDERS, ProviderWebhook

log = structlog.get_logger("sendstream.bounces.providers")


@dataclass
class _Outcome:
    received: int = 0
    applied: int = 0
    ignored: int = 0
    duplicates: int = 0
    topic_confirmed: str | None = None

    def result(self) -> ProviderHookResult:
        return ProviderHookResult(
            received=self.received,
            applied=self.applied,
            ignored=self.ignored,
            duplicates=self.duplicates,
        )


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedProviderPayload(f"not JSON ({exc})"[:200]) from None


def _check_age(signed_at: datetime | None, limit: float, settings: Settings) -> None:
    if signed_at is None:
        raise ProviderSignatureInvalid("the signature's timestamp is missing or not a time")
    age = (datetime.now(UTC) - signed_at).total_seconds()
    if age > limit or age < -settings.provider_webhooks.max_clock_skew_seconds:
        raise ProviderRequestStale(age, limit)


def _replay_window(settings: Settings) -> timedelta:
    config = settings.provider_webhooks
    longest = max(
        config.sns_max_age_seconds, config.sendgrid_max_age_seconds, config.mailgun_max_age_seconds
    )
    return timedelta(seconds=longest + config.max_clock_skew_seconds)


def _header_forms(header: str) -> list[str]:
    """A Message-ID as an ESP may echo it (`<id@host>` or `id@host`), in the
    forms we may have stored it."""
    bare = header.strip().removeprefix("<").removesuffix(">").strip()
    return [f"<{bare}>", bare] if bare else []


class ReceivingService:
    async def receive(
        self,
        session: AsyncSession,
        provider: str,
        webhook_id: str,
        body: bytes,
        headers: Mapping[str, str],
    ) -> ProviderHookResult:
        try:
            parsed_id = uuid.UUID(webhook_id)
        except ValueError:
            raise ProviderWebhookNotFound(webhook_id[:64]) from None
        webhook = (
            await provider_webhook_repository.find_for_receiving(session, provider, parsed_id)
            if provider in PROVIDERS
            else None
        )
        if webhook is None or not webhook.enabled:
            raise ProviderWebhookNotFound(parsed_id)
        settings = get_settings()
        config = read_config(webhook)
        outcome = _Outcome()
        if provider == "ses":
            events = await self._ses(session, webhook, config, body, settings, outcome)
        elif provider == "sendgrid":
            events = self._sendgrid(config, body, headers, settings)
        elif provider == "postmark":
            events = self._postmark(config, body, headers)
        else:
            events = await self._mailgun(session, webhook, config, body, settings)
        await self._process(session, webhook, events, outcome)
        await provider_webhook_repository.forget_before(session, webhook, _replay_window(settings))
        await provider_webhook_repository.record(
            session,
            webhook,
            received=outcome.received,
            applied=outcome.applied,
            ignored=outcome.ignored,
            duplicates=outcome.duplicates,
            topic_confirmed=outcome.topic_confirmed,
        )
        return outcome.result()

    # --- per provider: verify, then read

    async def _ses(
        self,
        session: AsyncSession,
        webhook: ProviderWebhook,
        config: dict[str, Any],
        body: bytes,
        settings: Settings,
        outcome: _Outcome,
    ) -> list[ProviderEvent]:
        doc = _json(body)
        if not isinstance(doc, dict) or doc.get("Type") not in sns.TYPES:
            raise MalformedProviderPayload("not an Amazon SNS message (no known `Type`)")
        try:
            cert_url = sns.check_url(doc.get("SigningCertURL"), settings)
        except sns.UrlNotAllowed as exc:
            raise ProviderSourceNotAllowed(f"SigningCertURL refused: {exc}.") from None
        try:
            key = await sns.certificates.key(cert_url, settings)
        except sns.FetchFailed as exc:
            raise ProviderUpstreamUnavailable(f"the signing certificate: {exc}") from None
        if not sns.signature_valid(doc, key):
            raise ProviderSignatureInvalid("the SNS signature does not match the message")
        topic = doc.get("TopicArn")
        if topic not in config.get("topic_arns", []):
            raise ProviderSourceNotAllowed(
                f"TopicArn {str(topic)[:300]!r} is not one of this webhook's topics."
            )
        _check_age(
            iso_time(doc.get("Timestamp")), settings.provider_webhooks.sns_max_age_seconds, settings
        )
        message_id = str(doc.get("MessageId"))
        if not await provider_webhook_repository.remember(session, webhook, [f"sns:{message_id}"]):
            outcome.received += 1
            outcome.duplicates += 1
            return []
        if doc["Type"] == "SubscriptionConfirmation":
            try:
                subscribe_url = sns.check_url(doc.get("SubscribeURL"), settings)
            except sns.UrlNotAllowed as exc:
                raise ProviderSourceNotAllowed(f"SubscribeURL refused: {exc}.") from None
            try:
                await sns.visit(subscribe_url, settings)
            except sns.FetchFailed as exc:
                raise ProviderUpstreamUnavailable(f"the SubscribeURL: {exc}") from None
            log.info("provider_webhook.subscribed", webhook_id=str(webhook.id), topic=topic)
            outcome.topic_confirmed = str(topic)
            return []
        if doc["Type"] == "UnsubscribeConfirmation":
            # Not re-subscribed on our own: whoever unsubscribed meant it.
            log.info("provider_webhook.unsubscribed", webhook_id=str(webhook.id), topic=topic)
            outcome.received += 1
            outcome.ignored += 1
            return []
        try:
            inner = json.loads(doc.get("Message") or "")
        except (ValueError, TypeError):
            inner = None
        if not isinstance(inner, dict):
            # Signed by AWS but not an SES event (a test publish): retrying
            # would not change it.
            return [ProviderEvent(type="ses.not_an_event", verdict=None)]
        return ses.parse(inner)

    def _sendgrid(
        self, config: dict[str, Any], body: bytes, headers: Mapping[str, str], settings: Settings
    ) -> list[ProviderEvent]:
        signature = headers.get(sendgrid.SIGNATURE_HEADER.lower())
        timestamp = headers.get(sendgrid.TIMESTAMP_HEADER.lower())
        if not signature or not timestamp:
            raise ProviderSignatureInvalid(
                f"the {sendgrid.SIGNATURE_HEADER} and {sendgrid.TIMESTAMP_HEADER} headers are "
                "required (enable Signed Event Webhook Requests in SendGrid)"
            )
        key = sendgrid.load_public_key(config["public_key"])
        if not sendgrid.signature_valid(key, signature, timestamp, body):
            raise ProviderSignatureInvalid("the ECDSA signature does not match the body")
        _check_age(
            unix_time(timestamp), settings.provider_webhooks.sendgrid_max_age_seconds, settings
        )
        events = sendgrid.parse(_json(body))
        if events is None:
            raise MalformedProviderPayload("SendGrid posts a JSON array of events")
        return events

    def _postmark(
        self, config: dict[str, Any], body: bytes, headers: Mapping[str, str]
    ) -> list[ProviderEvent]:
        if not postmark.credentials_match(
            headers.get("authorization"), config["username"], config["password"]
        ):
            raise ProviderSignatureInvalid(
                "the basic-auth credentials are missing or wrong",
                headers={"WWW-Authenticate": 'Basic realm="sendstream"'},
            )
        events = postmark.parse(_json(body))
        if events is None:
            raise MalformedProviderPayload("Postmark posts one JSON object per event")
        return events

    async def _mailgun(
        self,
        session: AsyncSession,
        webhook: ProviderWebhook,
        config: dict[str, Any],
        body: bytes,
        settings: Settings,
    ) -> list[ProviderEvent]:
        doc = _json(body)
        if not isinstance(doc, dict):
            raise MalformedProviderPayload("Mailgun posts a JSON object")
        signature = doc.get("signature")
        if not isinstance(signature, dict) or not mailgun.signature_valid(
            config["signing_key"], signature
        ):
            raise ProviderSignatureInvalid("the HMAC signature does not match")
        _check_age(
            unix_time(signature.get("timestamp")),
            settings.provider_webhooks.mailgun_max_age_seconds,
            settings,
        )
        token = f"mailgun-token:{signature['token']}"
        if not await provider_webhook_repository.remember(session, webhook, [token]):
            raise ProviderReplay()
        data = doc.get("event-data")
        if not isinstance(data, dict):
            raise MalformedProviderPayload("`event-data` is missing")
        return [mailgun.parse_event(data)]

    # --- the events

    async def _process(
        self,
        session: AsyncSession,
        webhook: ProviderWebhook,
        events: Sequence[ProviderEvent],
        outcome: _Outcome,
    ) -> None:
        outcome.received += len(events)
        keys = [e.key for e in events if e.key and e.verdict is not None]
        fresh = await provider_webhook_repository.remember(session, webhook, keys)
        workspace_id = webhook.workspace_id
        known_ids = await provider_webhook_repository.existing_messages(
            session, workspace_id, [e.message_uuid for e in events if e.message_uuid]
        )
        by_header = await provider_webhook_repository.messages_by_header(
            session,
            workspace_id,
            [form for e in events if e.message_header for form in _header_forms(e.message_header)],
        )
        for event in events:
            if event.verdict is None or event.verdict.recipient is None:
                outcome.ignored += 1
                continue
            if event.key is not None:
                if event.key not in fresh:
                    outcome.duplicates += 1
                    continue
                fresh.discard(event.key)  # the same event twice in one request
            message_id = event.message_uuid if event.message_uuid in known_ids else None
            if message_id is None and event.message_header:
                message_id = next(
                    (by_header[f] for f in _header_forms(event.message_header) if f in by_header),
                    None,
                )
            await bounce_service.apply(
                session,
                workspace_id,
                event.verdict,
                message_id=message_id,
                source=webhook.provider,
                occurred_at=event.occurred_at,
            )
            outcome.applied += 1


receiving_service = ReceivingService()
