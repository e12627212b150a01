"""Rules the send API (at queue time) and the delivery loop (at send time)
both apply: may this workspace send from that domain, which suppressions
stop a message of a stream, is the message tracked, when is a deferred
message tried again."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.contacts import suppression
from sendstream.core.settings import DeliverySettings, Settings
from sendstream.delivery.domain_records import normalize_domain_name
from sendstream.delivery.domain_repository import domain_repository
from sendstream.delivery.domain_service import allow_unverified
from sendstream.delivery.errors import (
    DomainNotVerified,
    InvalidDomainName,
    UnknownSendingDomain,
)
from sendstream.tracking.links import tracking_enabled

# A transactional message (a receipt, a password reset) still reaches
# someone who unsubscribed from marketing; nothing reaches an address that
# bounced, complained or was erased, or that was suppressed by hand.
TRANSACTIONAL_BYPASS = frozenset({"unsubscribed"})


def blocks(reason: str, stream: str) -> bool:
    """Whether a suppression with `reason` stops a message of `stream`."""
    return not (stream == "transactional" and reason in TRANSACTIONAL_BYPASS)


async def suppressed_reasons(
    session: AsyncSession, workspace_id: uuid.UUID, email_keys: Sequence[str]
) -> dict[str, str]:
    """{matching key: reason} for the keys suppressed by address or by domain
    (one query; contacts.suppression owns the list)."""
    return await suppression.suppressed_reasons(session, workspace_id, email_keys)


async def check_sending_domain(
    session: AsyncSession, workspace_id: uuid.UUID, domain: str, settings: Settings
) -> None:
    """Refuse what `domain_service.signing_keys` would refuse at send time
    (`UnknownSendingDomain`, `DomainNotVerified`), without decrypting and
    loading the keys: loading an RSA key costs tens of milliseconds, too much
    for every send request."""
    if allow_unverified(settings):
        return
    try:
        name = normalize_domain_name(domain)
    except InvalidDomainName:
        raise UnknownSendingDomain(domain) from None
    labels = name.split(".")
    covering = [".".join(labels[i:]) for i in range(len(labels) - 1)]
    found = await domain_repository.find_covering(session, workspace_id, covering)
    if found is None:
        raise UnknownSendingDomain(domain)
    if found.status != "verified":
        raise DomainNotVerified(found.name, found.status)


def tracking_flags(
    settings: Settings,
    workspace_id: uuid.UUID,
    stream: str,
    track_opens: bool | None,
    track_clicks: bool | None,
) -> tuple[bool, bool]:
    """(opens, clicks): what the message asked for, else the stream's default
    (marketing on, transactional off); never on where settings switch
    tracking off for the workspace or the stream."""
    if not tracking_enabled(workspace_id, stream, settings):
        return False, False
    default = stream == "marketing"
    opens = default if track_opens is None else track_opens
    clicks = default if track_clicks is None else track_clicks
    return opens, clicks


def retry_at(
    delivery: DeliverySettings, attempts: int, first_due: datetime, now: datetime
) -> datetime | None:
    """When to try a deferred message again after its `attempts`-th try, or
    None when that would pass `max_retry_hours` after it first came due
    (then it fails). Exponential from `retry_first_seconds`, capped at
    `retry_max_seconds`, each delay +-20% so messages deferred together by a
    busy receiver do not all come back at the same second."""
    base = delivery.retry_first_seconds * 2 ** max(0, min(attempts - 1, 30))
    delay = min(base, delivery.retry_max_seconds) * random.uniform(0.8, 1.2)  # noqa: S311
    when = now + timedelta(seconds=delay)
    if when > first_due + timedelta(hours=delivery.max_retry_hours):
        return None
    return when
