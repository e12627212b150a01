"""Amazon SES events (the JSON inside an SNS Notification's `Message`):
identity notifications (`notificationType`) and event publishing
(`eventType`), mapped to verdicts, one per recipient.

    Bounce     Permanent -> hard unless the code/wording names a soft reason
               (NoEmail: user_unknown; Suppressed: user_unknown, SES keeps
               addresses that bounced as invalid; OnAccountSuppressionList:
               hard, reason unknown); Transient -> soft (MailboxFull,
               MessageTooLarge, ContentRejected: spam_blocked,
               AttachmentRejected: policy); Undetermined -> soft, unknown
    Complaint  complaint (complaintFeedbackType kept as the diagnostic);
               `not-spam` is no complaint and is ignored
    Delivery   delivered
    DeliveryDelay  delay, reason from delayType
    anything else (Send, Reject, Open, Click, Rendering Failure, ...): ignored
"""

from __future__ import annotations

from typing import Any

from sendstream.bounces.providers.events import (
    MESSAGE_ID_KEY,
    ProviderEvent,
    address,
    as_uuid,
    bounce,
    delay,
    iso_time,
    simple,
    text,
)
from sendstream.bounces.verdict import Reason, RecipientVerdict

_SUBTYPE_REASON: dict[str, Reason] = {
    "NoEmail": Reason.user_unknown,
    "Suppressed": Reason.user_unknown,
    "MailboxFull": Reason.mailbox_full,
    "MessageTooLarge": Reason.message_too_large,
    "ContentRejected": Reason.spam_blocked,
    "AttachmentRejected": Reason.policy,
}
_DELAY_REASON: dict[str, Reason] = {
    "MailboxFull": Reason.mailbox_full,
    "SpamDetected": Reason.spam_blocked,
    "RecipientServerError": Reason.network,
    "IPFailure": Reason.policy,
    "TransientCommunicationFailure": Reason.network,
    "BYOIPHostNameLookupUnavailable": Reason.network,
    "SendingDeferral": Reason.rate_limited,
}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def message_header(mail: dict[str, Any]) -> str | None:
    """Our Message-ID as sent: the original headers when SES includes them
    (a SES-generated id in `commonHeaders` would not be ours), else
    `commonHeaders.messageId`."""
    for header in _list(mail.get("headers")):
        if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id":
            return text(header.get("value"), 255)
    return text(_dict(mail.get("commonHeaders")).get("messageId"), 255)


def parse(doc: dict[str, Any]) -> list[ProviderEvent]:
    kind = text(doc.get("eventType") or doc.get("notificationType"), 64) or "unknown"
    mail = _dict(doc.get("mail"))
    header = message_header(mail)
    ours = as_uuid(_dict(mail.get("tags")).get(MESSAGE_ID_KEY))
    ses_id = text(mail.get("messageId"), 200) or "-"

    def event(verdict: RecipientVerdict | None, key: str | None, when: Any) -> ProviderEvent:
        return ProviderEvent(
            type=f"ses.{kind}",
            verdict=verdict,
            key=key,
            message_header=header,
            message_uuid=ours,
            occurred_at=iso_time(when),
        )

    if kind == "Bounce":
        body = _dict(doc.get("bounce"))
        bounce_type = body.get("bounceType")
        subtype = str(body.get("bounceSubType") or "")
        feedback = text(body.get("feedbackId"), 200) or ses_id
        events = []
        for entry in _list(body.get("bouncedRecipients")):
            entry = _dict(entry)
            recipient = address(entry.get("emailAddress"))
            if bounce_type == "Permanent" and subtype == "OnAccountSuppressionList":
                reason: Reason | None = Reason.unknown
            else:
                reason = _SUBTYPE_REASON.get(subtype)
            verdict = bounce(
                recipient,
                permanent=bounce_type == "Permanent",
                status=text(entry.get("status"), 16),
                diagnostic=text(entry.get("diagnosticCode")),
                reason=reason,
                remote_mta=text(body.get("reportingMTA"), 255),
            )
            events.append(event(verdict, f"ses:{feedback}:{recipient}", body.get("timestamp")))
        return events
    if kind == "Complaint":
        body = _dict(doc.get("complaint"))
        feedback_type = text(body.get("complaintFeedbackType"), 64)
        feedback = text(body.get("feedbackId"), 200) or ses_id
        events = []
        for entry in _list(body.get("complainedRecipients")):
            recipient = address(_dict(entry).get("emailAddress"))
            complaint = (
                None
                if feedback_type == "not-spam"
                else simple(recipient, "complaint", Reason.complaint, diagnostic=feedback_type)
            )
            events.append(event(complaint, f"ses:{feedback}:{recipient}", body.get("timestamp")))
        return events
    if kind == "Delivery":
        body = _dict(doc.get("delivery"))
        response = text(body.get("smtpResponse"))
        return [
            event(
                simple(
                    address(r),
                    "delivered",
                    Reason.delivered,
                    diagnostic=response,
                    remote_mta=text(body.get("reportingMTA"), 255),
                ),
                f"ses:delivery:{ses_id}:{address(r)}",
                body.get("timestamp"),
            )
            for r in _list(body.get("recipients"))
        ]
    if kind == "DeliveryDelay":
        body = _dict(doc.get("deliveryDelay"))
        delay_type = str(body.get("delayType") or "")
        events = []
        for entry in _list(body.get("delayedRecipients")):
            entry = _dict(entry)
            recipient = address(entry.get("emailAddress"))
            diagnostic = text(entry.get("diagnosticCode"))
            verdict = delay(recipient, diagnostic, _DELAY_REASON.get(delay_type))
            stamp = text(body.get("timestamp"), 64)
            events.append(event(verdict, f"ses:delay:{ses_id}:{recipient}:{stamp}", stamp))
        return events
    return [event(None, None, mail.get("timestamp"))]
