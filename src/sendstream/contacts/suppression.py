"""The suppression list, keyed by a hash of the address's matching key.

Only the keyed hash is stored (see core.keys), so an erased person leaves no
readable address behind, yet any later write of the same address (API,
import, sync) is recognised: `erased_hashes` tells which of a batch were
erased, and such writes are refused unless they carry an explicit new opt-in,
which lifts the erasure (`lift_erasure`).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Collection, Iterable
from typing import Final

from sqlalchemy import Text, any_, delete, literal, select
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.keys import keyed_hash, subkey
from sendstream.models.suppression import Suppression

HASH_PURPOSE: Final = "address-hash"


def address_hash(email_key: str) -> str:
    """The stored stand-in for an address: HMAC-SHA256 of its matching key."""
    return keyed_hash(HASH_PURPOSE, email_key)


def address_hashes(email_keys: Iterable[str]) -> list[str]:
    """`address_hash` of each key, deriving the key once for the lot."""
    key = subkey(HASH_PURPOSE)
    return [hmac.new(key, k.encode(), hashlib.sha256).hexdigest() for k in email_keys]


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


async def suppress(
    session: AsyncSession, workspace_id: uuid.UUID, email_key: str, reason: str
) -> None:
    """Add the address to the list (an existing entry keeps its first reason,
    except that `erased` always wins)."""
    statement = insert(Suppression).values(
        workspace_id=workspace_id, address_hash=address_hash(email_key), reason=reason
    )
    if reason == "erased":
        statement = statement.on_conflict_do_update(
            index_elements=["workspace_id", "address_hash"], set_={"reason": "erased"}
        )
    else:
        statement = statement.on_conflict_do_nothing()
    await session.execute(statement)


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
