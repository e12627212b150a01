"""The shape every provider's payload is read into, before any database
work: one `ProviderEvent` per recipient event."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sendstream.bounces.classify import HARD_REASONS, best_status, classify, is_hard
from sendstream.bounces.verdict import Kind, Reason, RecipientVerdict

# The key under which a sender may pass our message id through the ESP
# (SES message tag, SendGrid custom_args, Mailgun user-variables, Postmark
# Metadata), for ESPs that do not echo our Message-ID header.
MESSAGE_ID_KEY = "sendstream_message_id"
MAX_DIAGNOSTIC = 1000


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """One event about one recipient, as the provider reported it.

    `verdict` None: nothing to act on (opens, clicks, unknown types), counted
    as ignored. `key` names the event for de-duplication (the provider's
    event id) when it has one. `message_header` is our Message-ID header as
    the provider echoed it; `message_uuid` our message id when the sender
    passed it through (`sendstream_message_id`)."""

    type: str
    verdict: RecipientVerdict | None
    key: str | None = None
    message_header: str | None = None
    message_uuid: uuid.UUID | None = None
    occurred_at: datetime | None = None


def text(value: Any, limit: int = MAX_DIAGNOSTIC) -> str | None:
    """A provider string, trimmed to one reasonable length; None for non-strings."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value[:limit] or None


def obj(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def address(value: Any) -> str | None:
    found = text(value, 320)
    return found if found and "@" in found else None


def as_uuid(value: Any) -> uuid.UUID | None:
    if isinstance(value, list) and value:  # SES tags are lists of values
        value = value[0]
    try:
        return uuid.UUID(str(value)) if isinstance(value, str) else None
    except ValueError:
        return None


def unix_time(value: Any) -> datetime | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    if not 0 < seconds < 32_503_680_000:  # before year 3000
        return None
    return datetime.fromtimestamp(seconds, UTC)


def iso_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def bounce(
    recipient: str | None,
    *,
    permanent: bool,
    status: str | None = None,
    diagnostic: str | None = None,
    reason: Reason | None = None,
    remote_mta: str | None = None,
) -> RecipientVerdict:
    """A bounce verdict, classified by `bounces.classify` from the status
    code and the remote server's words unless the provider named the reason
    precisely (`reason`). `permanent` is the provider's own label: a failure
    it calls temporary is hard only when the reason is a dead address."""
    status = best_status(status, diagnostic)
    if reason is None:
        reason, hard = classify(status, diagnostic, permanent=permanent)
    else:
        hard = is_hard(reason, status, permanent=permanent)
    if not permanent and reason not in HARD_REASONS:
        hard = False
    return RecipientVerdict(
        recipient=recipient,
        kind="bounce",
        reason=reason,
        hard=hard,
        status=status,
        diagnostic=diagnostic,
        remote_mta=remote_mta,
    )


def simple(
    recipient: str | None,
    kind: Kind,
    reason: Reason,
    *,
    status: str | None = None,
    diagnostic: str | None = None,
    remote_mta: str | None = None,
) -> RecipientVerdict:
    return RecipientVerdict(
        recipient=recipient,
        kind=kind,
        reason=reason,
        status=status,
        diagnostic=diagnostic,
        remote_mta=remote_mta,
    )


def delay(
    recipient: str | None, diagnostic: str | None, reason: Reason | None = None
) -> RecipientVerdict:
    status = best_status(None, diagnostic)
    if reason is None:
        reason, _ = classify(status, diagnostic)
    return simple(recipient, "delay", reason, status=status, diagnostic=diagnostic)
