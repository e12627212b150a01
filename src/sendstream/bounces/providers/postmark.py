"""Postmark webhooks: verification and mapping.

Postmark signs nothing; its webhooks authenticate with HTTP basic auth in
the webhook URL (`https://user:password@host/...`). Sendstream generates the
credentials per webhook and compares them in constant time.

Mapping (one JSON object per request, by `RecordType`):

    Bounce        by `Type`: HardBounce, BadEmailAddress -> hard, user_unknown;
                  ManuallyDeactivated -> hard, unknown; SoftBounce, Undeliverable,
                  SMTPApiError, Unknown -> soft (reason from Details);
                  Transient -> delay; DnsError -> soft, network;
                  SpamNotification -> soft, spam_blocked; Blocked -> soft, policy
                  (or spam_blocked when Details say so); VirusNotification ->
                  soft, policy; DMARCPolicy -> soft, auth_failure;
                  SpamComplaint -> complaint; AutoResponder -> auto_reply,
                  vacation; ChallengeVerification -> auto_reply, challenge;
                  Unsubscribe -> unsubscribe; other types ignored
    SpamComplaint complaint
    Delivery      delivered
    SubscriptionChange  SuppressSending true: by SuppressionReason, HardBounce ->
                  hard bounce, SpamComplaint -> complaint, ManualSuppression ->
                  unsubscribe; a reactivation (false) is ignored (Sendstream
                  never lifts a suppression on an ESP's word)
    Open, Click, unknown record types: ignored

Postmark's `MessageID` is its own id, not our Message-ID header: events
match our message by `Metadata.sendstream_message_id` when the sender set
it (header `X-PM-Metadata-sendstream_message_id`), else by address only.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

from sendstream.bounces.providers.events import (
    MESSAGE_ID_KEY,
    ProviderEvent,
    address,
    as_uuid,
    bounce,
    delay,
    iso_time,
    obj,
    simple,
    text,
)
from sendstream.bounces.verdict import Reason, RecipientVerdict


def credentials_match(authorization: str | None, username: str, password: str) -> bool:
    """Whether an `Authorization: Basic ...` header carries these credentials."""
    if not authorization:
        return False
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, sep, secret = given.partition(":")
    # Both compared, always, so the time taken says nothing about which failed.
    user_ok = hmac.compare_digest(user.encode(), username.encode())
    secret_ok = hmac.compare_digest(secret.encode(), password.encode())
    return bool(sep) and user_ok and secret_ok


def _bounce(doc: dict[str, Any], recipient: str | None) -> RecipientVerdict | None:
    kind = doc.get("Type")
    details = text(doc.get("Details"))
    description = text(doc.get("Description"))
    if kind in ("HardBounce", "BadEmailAddress"):
        return bounce(recipient, permanent=True, diagnostic=details, reason=Reason.user_unknown)
    if kind == "ManuallyDeactivated":
        return bounce(recipient, permanent=True, diagnostic=details, reason=Reason.unknown)
    if kind in ("SoftBounce", "Undeliverable", "SMTPApiError", "Unknown"):
        return bounce(recipient, permanent=False, diagnostic=details)
    if kind == "Transient":
        return delay(recipient, details)
    if kind == "DnsError":
        return bounce(recipient, permanent=False, diagnostic=details, reason=Reason.network)
    if kind == "SpamNotification":
        return bounce(recipient, permanent=False, diagnostic=details, reason=Reason.spam_blocked)
    if kind == "Blocked":
        found = bounce(recipient, permanent=False, diagnostic=details)
        if found.reason is Reason.unknown or found.hard:
            return bounce(recipient, permanent=False, diagnostic=details, reason=Reason.policy)
        return found
    if kind == "VirusNotification":
        return bounce(recipient, permanent=False, diagnostic=details, reason=Reason.policy)
    if kind == "DMARCPolicy":
        return bounce(recipient, permanent=False, diagnostic=details, reason=Reason.auth_failure)
    if kind == "SpamComplaint":
        return simple(recipient, "complaint", Reason.complaint, diagnostic=description)
    if kind == "AutoResponder":
        return simple(recipient, "auto_reply", Reason.vacation, diagnostic=details)
    if kind == "ChallengeVerification":
        return simple(recipient, "auto_reply", Reason.challenge, diagnostic=details)
    if kind == "Unsubscribe":
        return simple(recipient, "unsubscribe", Reason.unsubscribe, diagnostic=details)
    return None


def _subscription_change(doc: dict[str, Any], recipient: str | None) -> RecipientVerdict | None:
    if doc.get("SuppressSending") is not True:
        return None
    why = doc.get("SuppressionReason")
    if why == "HardBounce":
        return bounce(recipient, permanent=True, reason=Reason.user_unknown, diagnostic=why)
    if why == "SpamComplaint":
        return simple(recipient, "complaint", Reason.complaint, diagnostic=why)
    if why == "ManualSuppression":
        return simple(recipient, "unsubscribe", Reason.unsubscribe, diagnostic=why)
    return None


def parse(doc: Any) -> list[ProviderEvent] | None:
    if not isinstance(doc, dict):
        return None
    record = text(doc.get("RecordType"), 64) or "unknown"
    metadata = obj(doc.get("Metadata"))
    ours = as_uuid(metadata.get(MESSAGE_ID_KEY))
    postmark_id = text(doc.get("MessageID"), 200)
    verdict: RecipientVerdict | None = None
    key: str | None = None
    when = None
    if record in ("Bounce", "SpamComplaint"):
        recipient = address(doc.get("Email"))
        verdict = (
            _bounce(doc, recipient)
            if record == "Bounce"
            else simple(recipient, "complaint", Reason.complaint, diagnostic=text(doc.get("Type")))
        )
        key = f"postmark:{record}:{text(doc.get('ID'), 64)}" if doc.get("ID") is not None else None
        when = doc.get("BouncedAt")
    elif record == "Delivery":
        recipient = address(doc.get("Recipient"))
        verdict = simple(
            recipient, "delivered", Reason.delivered, diagnostic=text(doc.get("Details"))
        )
        key = f"postmark:Delivery:{postmark_id}:{recipient}" if postmark_id else None
        when = doc.get("DeliveredAt")
    elif record == "SubscriptionChange":
        recipient = address(doc.get("Recipient"))
        verdict = _subscription_change(doc, recipient)
        when = doc.get("ChangedAt")
        key = (
            f"postmark:SubscriptionChange:{postmark_id}:{recipient}:{when}" if postmark_id else None
        )
    return [
        ProviderEvent(
            type=f"postmark.{record}",
            verdict=verdict,
            key=key,
            message_uuid=ours,
            occurred_at=iso_time(when),
        )
    ]
