"""SendGrid's Event Webhook: verification and mapping.

Verification (SendGrid "Signed Event Webhook"): the
`X-Twilio-Email-Event-Webhook-Signature` header holds a base64 DER ECDSA
P-256 signature, over SHA-256, of the `X-Twilio-Email-Event-Webhook-Timestamp`
header's value followed by the raw body, checked with the public key the
SendGrid console shows (base64 DER SubjectPublicKeyInfo).

Mapping (a request is a JSON array of events):

    bounce       type "bounce" -> bounce (hard unless the status/reason names a
                 soft reason); type "blocked" -> soft bounce
    dropped      "Bounced Address" / "Invalid" -> hard, user_unknown;
                 "Spam Reporting Address" -> complaint;
                 "Unsubscribed Address" -> unsubscribe; others ignored
    deferred     delay
    delivered    delivered
    spamreport   complaint
    unsubscribe, group_unsubscribe -> unsubscribe
    processed, open, click, group_resubscribe, unknown types: ignored
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sendstream.bounces.providers.events import (
    MESSAGE_ID_KEY,
    ProviderEvent,
    address,
    as_uuid,
    bounce,
    delay,
    simple,
    text,
    unix_time,
)
from sendstream.bounces.verdict import Reason

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key: base64 DER as the console shows it, or
    PEM. ValueError when it is not a P-256 public key."""
    value = value.strip()
    try:
        if value.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(value.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(value, validate=True))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise ValueError(f"not a public key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an ECDSA P-256 public key")
    return key


def signature_valid(
    key: ec.EllipticCurvePublicKey, signature: str, timestamp: str, body: bytes
) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def _event(item: dict[str, Any]) -> ProviderEvent:
    name = text(item.get("event"), 64) or "unknown"
    recipient = address(item.get("email"))
    reason_text = text(item.get("reason"))
    response = text(item.get("response"))
    status = text(item.get("status"), 16)
    verdict = None
    if name == "bounce":
        # type "blocked": the receiver refused for now (reputation, policy);
        # "bounce": it refused for good.
        blocked = item.get("type") == "blocked"
        verdict = bounce(recipient, permanent=not blocked, status=status, diagnostic=reason_text)
        if blocked and verdict.reason is Reason.unknown:
            verdict = bounce(
                recipient,
                permanent=False,
                status=status,
                diagnostic=reason_text,
                reason=Reason.policy,
            )
    elif name == "dropped":
        why = (reason_text or "").lower()
        if why.startswith(("bounced address", "invalid")):
            verdict = bounce(
                recipient, permanent=True, diagnostic=reason_text, reason=Reason.user_unknown
            )
        elif why.startswith("spam reporting address"):
            verdict = simple(recipient, "complaint", Reason.complaint, diagnostic=reason_text)
        elif why.startswith("unsubscribed address"):
            verdict = simple(recipient, "unsubscribe", Reason.unsubscribe, diagnostic=reason_text)
    elif name == "deferred":
        verdict = delay(recipient, response or reason_text)
    elif name == "delivered":
        verdict = simple(recipient, "delivered", Reason.delivered, diagnostic=response)
    elif name == "spamreport":
        verdict = simple(recipient, "complaint", Reason.complaint)
    elif name in ("unsubscribe", "group_unsubscribe"):
        verdict = simple(recipient, "unsubscribe", Reason.unsubscribe, diagnostic=name)
    event_id = text(item.get("sg_event_id"), 200)
    return ProviderEvent(
        type=f"sendgrid.{name}",
        verdict=verdict,
        key=f"sendgrid:{event_id}" if event_id else None,
        message_header=text(item.get("smtp-id"), 255),
        message_uuid=as_uuid(item.get(MESSAGE_ID_KEY)),
        occurred_at=unix_time(item.get("timestamp")),
    )


def parse(doc: Any) -> list[ProviderEvent] | None:
    """The events of one request; None when the body is not SendGrid's
    shape (a JSON array of objects)."""
    if not isinstance(doc, list):
        return None
    return [_event(item) for item in doc if isinstance(item, dict)]
