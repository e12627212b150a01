"""The suppression list: who must not be mailed, and why. What delivery,
erasure, unsubscribe and bounce handling call; the API and the CLI manage
the list through `suppression_service`.

An entry is keyed by a keyed hash (see core.keys) of an address's matching
key, or of `@domain` for a whole domain, so one indexed lookup answers for
an address and its domain together (`suppressed_reasons`), and an erased
person leaves no readable address behind: `erased` entries keep only the
hash. Any later write of an erased address (API, import, sync) is
recognised (`erased_hashes`) and refused unless it carries an explicit new
opt-in, which lifts the erasure (`lift_erasure`).

An address suppressed for several reasons shows the strongest (`RANK`):
erased > complained > bounced > manual > unsubscribed. Only `unsubscribed`
may be bypassed, by transactional mail; every other reason stops every
message.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Collection, Iterable, Sequence
from typing import Any, Final, Literal

from sqlalchemy import Text, any_, delete, func, literal, literal_column, select, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.keys import keyed_hash, subkey
from sendstream.core.outbox import emit
from sendstream.models.contact import Contact
from sendstream.models.event import Event
from sendstream.models.suppression import Suppression

HASH_PURPOSE: Final = "address-hash"

Reason = Literal["unsubscribed", "bounced", "complained", "manual", "erased"]
Source = Literal[
    "api",
    "cli",
    "import",
    "unsubscribe_link",
    "bounce",
    "complaint",
    "erasure",
    "manual",
    "soft_bounce_policy",
]
# Weakest first: a stronger reason replaces a weaker one, never the reverse.
RANK: Final[tuple[Reason, ...]] = ("unsubscribed", "manual", "bounced", "complained", "erased")
# Where an entry comes from when the caller does not say.
DEFAULT_SOURCE: Final[dict[str, Source]] = {
    "unsubscribed": "unsubscribe_link",
    "bounced": "bounce",
    "complained": "complaint",
    "manual": "manual",
    "erased": "erasure",
}


def address_hash(email_key: str) -> str:
    """The stored stand-in for an address: HMAC-SHA256 of its matching key.
    For a domain entry, pass `domain_key(domain)`."""
    return keyed_hash(HASH_PURPOSE, email_key)


def address_hashes(email_keys: Iterable[str]) -> list[str]:
    """`address_hash` of each key, deriving the key once for the lot."""
    key = subkey(HASH_PURPOSE)
    return [hmac.new(key, k.encode(), hashlib.sha256).hexdigest() for k in email_keys]


def domain_key(domain: str) -> str:
    """What a domain entry hashes: `@` and the domain as matching keys hold
    it (lower case, IDNA)."""
    return f"@{domain}"


def strongest(reasons: Iterable[str | None]) -> str | None:
    """The reason that wins among several (None when there is none)."""
    found = [r for r in reasons if r is not None]
    return max(found, key=RANK.index) if found else None


async def suppressed_reasons(
    session: AsyncSession, workspace_id: uuid.UUID, email_keys: Sequence[str]
) -> dict[str, str]:
    """{email_key: reason} for each of `email_keys` (matching keys, as
    `addresses.normalize_address(...).key` gives them) suppressed by its
    address or by its domain; keys not suppressed are left out. One query
    for the lot. With both an address and a domain entry, the stronger
    reason is given (see `RANK`).

    A contact's own global status counts too (`unsubscribed`, `bounced`,
    `complained` set through the API, an import or a CRM): the list and the
    contact record can never disagree about whether a person may be mailed."""
    keys = list(dict.fromkeys(email_keys))
    if not keys:
        return {}
    statuses: dict[str, str] = {
        key: status
        for key, status in await session.execute(
            select(Contact.email_key, Contact.status).where(
                Contact.workspace_id == workspace_id,
                Contact.email_key == any_(literal(keys, ARRAY(Text))),
                Contact.status != "active",
            )
        )
    }
    domains = {k: domain_key(k.rpartition("@")[2]) for k in keys}
    wanted = list(dict.fromkeys([*keys, *domains.values()]))
    hashed = dict(zip(wanted, address_hashes(wanted), strict=True))
    rows = await session.execute(
        select(Suppression.address_hash, Suppression.reason).where(
            Suppression.workspace_id == workspace_id,
            Suppression.address_hash == any_(literal(list(hashed.values()), ARRAY(Text))),
        )
    )
    found: dict[str, str] = {h: r for h, r in rows}
    result: dict[str, str] = {}
    for key in keys:
        reason = strongest(
            (found.get(hashed[key]), found.get(hashed[domains[key]]), statuses.get(key))
        )
        if reason is not None:
            result[key] = reason
    return result


async def erased_hashes(
    session: AsyncSession, workspace_id: uuid.UUID, hashes: Collection[str]
) -> set[str]:
    if not hashes:
        return set()
    result = await session.scalars(
        select(Suppression.address_hash).where(
            Suppression.workspace_id == workspace_id,
            Suppression.reason == "erased",
            Suppression.address_hash == any_(literal(list(hashes), ARRAY(Text))),
        )
    )
    return set(result.all())


async def upsert_suppression(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    key_hash: str,
    reason: str,
    source: str,
    address: str | None = None,
    domain: str | None = None,
    note: str | None = None,
) -> tuple[Suppression, bool]:
    """Add an entry, or strengthen the one there is: a stronger reason (see
    `RANK`) replaces the stored reason, source and time (and the note and
    address, when given); an equal or weaker one leaves the entry as it is.
    `erased` drops the address and the note. A change is announced as
    `suppression.added` (`created` false when an entry was strengthened).
    Returns the entry as it now stands and whether it was created."""
    erased = reason == "erased"
    rank = func.array_position(literal(list(RANK), ARRAY(Text)), Suppression.reason)
    new_rank = RANK.index(reason) + 1  # array_position counts from 1
    statement = insert(Suppression).values(
        workspace_id=workspace_id,
        address_hash=key_hash,
        reason=reason,
        source=source,
        address=None if erased else address,
        domain=None if erased else domain,
        note=None if erased else note,
    )
    excluded = statement.excluded
    changes: dict[str, Any] = {
        "reason": excluded.reason,
        "source": excluded.source,
        "address": func.coalesce(excluded.address, Suppression.address),
        "note": func.coalesce(excluded.note, Suppression.note),
        "created_at": func.now(),
    }
    if erased:
        changes.update(address=None, domain=None, note=None)
    upsert: Any = statement.on_conflict_do_update(
        index_elements=["workspace_id", "address_hash"], set_=changes, where=rank < new_rank
    ).returning(Suppression, literal_column("xmax = 0").label("inserted"))
    row = (await session.execute(upsert, execution_options={"populate_existing": True})).first()
    if row is not None:
        entry, inserted = row
        if not erased:
            # (An erasure announces itself as `contact.erased`, naming no address.)
            emit(
                session,
                workspace_id,
                "suppression.added",
                {
                    "address": entry.address,
                    "domain": entry.domain,
                    "reason": entry.reason,
                    "source": entry.source,
                    "created": bool(inserted),
                },
                subject_type="suppression",
                subject_id=key_hash,
            )
        return entry, bool(inserted)
    existing = (
        await session.execute(
            select(Suppression)
            .where(Suppression.workspace_id == workspace_id, Suppression.address_hash == key_hash)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    return existing, False


async def suppress(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    email_key: str,
    reason: str,
    *,
    source: str | None = None,
    address: str | None = None,
    note: str | None = None,
) -> None:
    """Suppress the address with matching key `email_key` (an existing
    entry keeps a stronger reason; see `upsert_suppression`). `address` is
    the address as shown in the list (default: the key); `source` defaults
    by reason (`unsubscribed` -> unsubscribe_link, `bounced` -> bounce,
    `complained` -> complaint, `manual` -> manual, `erased` -> erasure).
    Erasing also blanks the data of earlier events about the entry, which
    name the address."""
    key_hash = address_hash(email_key)
    await upsert_suppression(
        session,
        workspace_id,
        key_hash=key_hash,
        reason=reason,
        source=source or DEFAULT_SOURCE[reason],
        address=address or email_key,
        note=note,
    )
    if reason == "erased":
        await session.execute(
            update(Event)
            .where(
                Event.workspace_id == workspace_id,
                Event.subject_type == "suppression",
                Event.subject_id == key_hash,
            )
            .values(data={"erased": True})
        )


async def lift_unsubscribes(
    session: AsyncSession, workspace_id: uuid.UUID, email_keys: Collection[str]
) -> None:
    """The people opted in again explicitly (their status set back to
    `active`): an `unsubscribed` entry for their address (from an unsubscribe
    link) no longer stands. Stronger reasons (bounces, complaints, manual,
    erasure) stay."""
    if not email_keys:
        return
    removed = await session.execute(
        delete(Suppression)
        .where(
            Suppression.workspace_id == workspace_id,
            Suppression.reason == "unsubscribed",
            Suppression.address_hash.in_(address_hashes(email_keys)),
        )
        .returning(Suppression.address_hash, Suppression.address, Suppression.domain)
    )
    for key_hash, address, domain in removed:
        emit(
            session,
            workspace_id,
            "suppression.removed",
            {"address": address, "domain": domain, "reason": "unsubscribed"},
            subject_type="suppression",
            subject_id=key_hash,
        )


async def lift_erasure(
    session: AsyncSession, workspace_id: uuid.UUID, hashes: Collection[str]
) -> None:
    """The person opted in again explicitly: forget the erasure."""
    if hashes:
        await session.execute(
            delete(Suppression).where(
                Suppression.workspace_id == workspace_id,
                Suppression.reason == "erased",
                Suppression.address_hash.in_(list(hashes)),
            )
        )
