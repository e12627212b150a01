"""What one attempt's result means for its delivery (docs/webhooks.md,
"Retries").

- 2xx: `succeeded`.
- 410 Gone: `failed`, and the endpoint is disabled at once (reason `gone`).
- A timeout, a connection error, an unresolvable host, 408, 425, 429 or 5xx:
  tried again after an exponential backoff with full jitter (a 429's or
  503's Retry-After is honoured, capped), until `retry_for_seconds` after
  the delivery was created; then `failed`.
- Anything else (3xx: redirects are not followed; other 4xx; an address
  the SSRF check refuses): `failed` at once. The receiver answered on
  purpose, and the same bytes would get the same answer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sendstream.core.settings import WebhookSettings
from sendstream.webhooks.sender import AttemptResult

RETRYABLE_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class Decision:
    # pending (try again at `next_attempt_at`) | succeeded | failed
    status: str
    next_attempt_at: datetime | None = None
    # Set when the endpoint must be disabled now (`gone`).
    disable_reason: str | None = None
    # Why it failed for good, for `last_error`.
    reason: str | None = None


def succeeded(result: AttemptResult) -> bool:
    return result.status_code is not None and 200 <= result.status_code < 300


def retryable(result: AttemptResult) -> bool:
    code = result.status_code
    if code is None:
        return not result.refused
    return code in RETRYABLE_STATUSES or code >= 500


def backoff_seconds(attempts: int, settings: WebhookSettings) -> float:
    """Full jitter: uniform in [0, min(max, first * 2**(attempts-1))]. The
    floor of one second keeps a run of tiny draws from hammering a receiver
    that just failed."""
    ceiling = min(
        settings.retry_max_seconds, settings.retry_first_seconds * 2.0 ** min(attempts - 1, 40)
    )
    return max(min(1.0, ceiling), random.uniform(0, ceiling))  # noqa: S311  not a secret


def decide(
    result: AttemptResult,
    *,
    attempts: int,
    created_at: datetime,
    now: datetime,
    settings: WebhookSettings,
) -> Decision:
    if succeeded(result):
        return Decision("succeeded")
    if result.status_code == 410:
        return Decision("failed", disable_reason="gone", reason="410 Gone: endpoint disabled")
    if not retryable(result):
        return Decision("failed", reason="not retried: the receiver's answer is final")
    delay = backoff_seconds(attempts, settings)
    if result.retry_after is not None and result.status_code in (429, 503):
        delay = max(delay, min(result.retry_after, settings.retry_after_max_seconds))
    at = now + timedelta(seconds=delay)
    if at > created_at + timedelta(seconds=settings.retry_for_seconds):
        return Decision(
            "failed",
            reason=f"gave up after {attempts} attempts over "
            f"{(now - created_at).total_seconds():.0f} s",
        )
    return Decision("pending", next_attempt_at=at)
