"""RFC 5965 feedback reports (ARF): `message/feedback-report` fields.

Feedback-Type abuse, fraud and virus (and a report without one) are
complaints; `opt-out` / `unsubscribe` (used by some mailbox providers'
loops) are unsubscribe requests; `not-spam`, `auth-failure` (RFC 6591) and
`other` are recorded, never acted on."""

from __future__ import annotations

from dataclasses import dataclass, field

from sendstream.bounces.dsn import typed_value
from sendstream.bounces.verdict import Kind, Reason

COMPLAINT_TYPES = frozenset({"abuse", "fraud", "virus", ""})
UNSUBSCRIBE_TYPES = frozenset({"opt-out", "optout", "unsubscribe"})


@dataclass(slots=True)
class FeedbackReport:
    feedback_type: str = ""
    user_agent: str | None = None
    reporting_mta: str | None = None
    original_mail_from: str | None = None
    original_rcpt_to: list[str] = field(default_factory=list)
    removal_recipient: list[str] = field(default_factory=list)


def parse_feedback_report(text: str) -> FeedbackReport:
    report = FeedbackReport()
    for name, value in _fields(text):
        if name == "feedback-type":
            report.feedback_type = value.strip().lower()
        elif name == "user-agent":
            report.user_agent = value.strip() or None
        elif name == "reporting-mta":
            report.reporting_mta = typed_value(value) or None
        elif name == "original-mail-from":
            report.original_mail_from = typed_value(value) or None
        elif name == "original-rcpt-to":
            address = typed_value(value)
            if address:
                report.original_rcpt_to.append(address)
        elif name == "removal-recipient":
            address = typed_value(value)
            if address:
                report.removal_recipient.append(address)
    return report


def kind_of(feedback_type: str) -> tuple[Kind, Reason]:
    if feedback_type in COMPLAINT_TYPES:
        return "complaint", Reason.complaint
    if feedback_type in UNSUBSCRIBE_TYPES:
        return "unsubscribe", Reason.unsubscribe
    if feedback_type == "auth-failure":
        return "other", Reason.auth_failure
    return "other", Reason.unknown


def _fields(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for line in text.split("\n"):
        if line[:1] in (" ", "\t") and out:
            name, value = out[-1]
            out[-1] = (name, f"{value} {line.strip()}")
            continue
        key, sep, rest = line.partition(":")
        if sep and key and " " not in key.strip():
            out.append((key.strip().lower(), rest.strip()))
    return out
