"""What Sendstream learned about one recipient of one message, whatever the
channel (a DSN to the MX, an ARF complaint, an IMAP mailbox, an ESP's
webhook): the one shape the classifier produces and the actions consume.

The taxonomy is fixed and documented (docs/bounces.md): receivers and
dashboards key on `reason`, so a value is never renamed, only added.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

# What kind of report it is. Only `bounce` with `hard=True` and `complaint`
# suppress at once; `bounce` with `hard=False` counts toward the soft-bounce
# policy; `delay` (a "still trying" DSN) and `auto_reply` never count.
Kind = Literal["bounce", "delay", "complaint", "auto_reply", "unsubscribe", "delivered", "other"]


class Reason(StrEnum):
    # The address or its domain is dead: hard.
    user_unknown = "user_unknown"
    host_unknown = "host_unknown"
    suspended = "suspended"  # mailbox disabled, inactive, over its retention
    # The address is fine; this message or this moment was not: soft.
    mailbox_full = "mailbox_full"
    message_too_large = "message_too_large"
    spam_blocked = "spam_blocked"  # content or reputation judged as spam
    policy = "policy"  # refused by a local policy (blocklist, not accepted here)
    auth_failure = "auth_failure"  # SPF, DKIM or DMARC failed
    rate_limited = "rate_limited"
    relay_denied = "relay_denied"
    network = "network"  # connection refused or timed out, TLS failure
    expired = "expired"  # retries ran out without a final answer
    # Not bounces.
    vacation = "vacation"  # auto-reply, out of office (RFC 3834)
    challenge = "challenge"  # challenge-response systems asking to confirm
    complaint = "complaint"  # ARF abuse / fraud report (RFC 5965)
    unsubscribe = "unsubscribe"  # an unsubscribe request by mail or ARF
    delivered = "delivered"
    unknown = "unknown"  # a bounce whose reason the classifier cannot name


@dataclass(frozen=True, slots=True)
class RecipientVerdict:
    """One recipient of one report.

    `hard` is set for `kind == "bounce"` only (None otherwise). `status` is
    the RFC 3463 enhanced status code (`5.1.1`) when the report gives or
    implies one; `diagnostic` is the remote server's own words
    (`550 5.1.1 <ada@example.com>: Recipient address rejected`), trimmed."""

    recipient: str | None
    kind: Kind
    reason: Reason
    hard: bool | None = None
    status: str | None = None
    diagnostic: str | None = None
    remote_mta: str | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """A whole inbound message as the classifier read it.

    `return_paths` lists every address found that may be our VERP return
    path (the envelope recipient of the report first, then the returned
    message's Return-Path or Sender-like headers): the actions take the
    first one whose token verifies. `original_message_id` is the
    Message-ID header of the returned message when the report includes it."""

    verdicts: tuple[RecipientVerdict, ...]
    return_paths: tuple[str, ...] = ()
    original_message_id: str | None = None
    feedback_type: str | None = None  # ARF Feedback-Type when kind is complaint
    reporter: str | None = None  # Reporting-MTA / ARF Reporting-MTA / provider name
    notes: tuple[str, ...] = field(default=())  # parse problems worth recording
