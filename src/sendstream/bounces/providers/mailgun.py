"""Mailgun webhooks: verification and mapping.

Verification (Mailgun "Securing Webhooks"): the body's `signature` object
holds `timestamp`, `token` (50 random characters) and `signature`, the hex
HMAC-SHA256 of timestamp + token under the webhook signing key (events of a
subaccount also carry `parent-signature`, made with the primary account's
key; either may match the key configured here). A token is accepted once
(a replay is answered 406, which Mailgun takes as final), and a timestamp
older than `provider_webhooks.mailgun_max_age_seconds` is refused.

Mapping (`event-data.event`):

    failed       severity "permanent" -> bounce, hard unless the code/wording
                 names a soft reason (reason "suppress-bounce": hard,
                 user_unknown; "suppress-complaint": complaint;
                 "suppress-unsubscribe": unsubscribe; "old": soft, expired);
                 severity "temporary" -> delay (Mailgun retries)
    complained   complaint
    delivered    delivered
    unsubscribed unsubscribe
    accepted, opened, clicked, unknown events: ignored
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from sendstream.bounces.providers.events import (
    MESSAGE_ID_KEY,
    ProviderEvent,
    address,
    as_uuid,
    bounce,
    delay,
    obj,
    simple,
    text,
    unix_time,
)
from sendstream.bounces.verdict import Reason, RecipientVerdict


def signature_valid(signing_key: str, signature: dict[str, Any]) -> bool:
    timestamp, token = signature.get("timestamp"), signature.get("token")
    if not isinstance(timestamp, (str, int)) or not isinstance(token, str):
        return False
    expected = hmac.new(
        signing_key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256
    ).hexdigest()
    given = [signature.get("signature"), signature.get("parent-signature")]
    # Every candidate is compared, so timing says nothing about which matched.
    results = [
        hmac.compare_digest(expected, g) for g in given if isinstance(g, str) and g.isascii()
    ]
    return any(results)


def _failed(data: dict[str, Any], recipient: str | None) -> RecipientVerdict:
    status = obj(data.get("delivery-status"))
    code = status.get("code")
    message = text(status.get("message"))
    description = text(status.get("description"))
    diagnostic = (
        " ".join(part for part in (str(code) if code else None, message, description) if part)
        or None
    )
    enhanced = text(status.get("enhanced-code"), 16)
    reason = data.get("reason")
    if data.get("severity") != "permanent":
        return delay(recipient, diagnostic)
    if reason == "suppress-complaint":
        return simple(recipient, "complaint", Reason.complaint, diagnostic=diagnostic)
    if reason == "suppress-unsubscribe":
        return simple(recipient, "unsubscribe", Reason.unsubscribe, diagnostic=diagnostic)
    named = {"suppress-bounce": Reason.user_unknown, "old": Reason.expired}.get(str(reason))
    return bounce(
        recipient,
        permanent=True,
        status=enhanced,
        diagnostic=diagnostic,
        reason=named,
        remote_mta=text(status.get("mx-host"), 255),
    )


def parse_event(data: dict[str, Any]) -> ProviderEvent:
    name = text(data.get("event"), 64) or "unknown"
    recipient = address(data.get("recipient"))
    verdict: RecipientVerdict | None = None
    if name == "failed":
        verdict = _failed(data, recipient)
    elif name == "complained":
        verdict = simple(recipient, "complaint", Reason.complaint)
    elif name == "delivered":
        status = obj(data.get("delivery-status"))
        verdict = simple(
            recipient, "delivered", Reason.delivered, diagnostic=text(status.get("message"))
        )
    elif name == "unsubscribed":
        verdict = simple(recipient, "unsubscribe", Reason.unsubscribe)
    message = obj(data.get("message"))
    headers = obj(message.get("headers"))
    variables = obj(data.get("user-variables"))
    event_id = text(data.get("id"), 200)
    return ProviderEvent(
        type=f"mailgun.{name}",
        verdict=verdict,
        key=f"mailgun:{event_id}" if event_id else None,
        message_header=text(headers.get("message-id"), 255),
        message_uuid=as_uuid(variables.get(MESSAGE_ID_KEY)),
        occurred_at=unix_time(data.get("timestamp")),
    )
