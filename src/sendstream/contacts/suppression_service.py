"""The rules of managing the suppression list (API and CLI): list and
search it, add an address or a whole domain, remove one, export the list.

Addresses and domains are normalised as contacts' matching keys are, so an
entry added as `Ann@Example.COM` suppresses `ann@example.com`. An `erased`
entry is never removed here: only an explicit new opt-in on a contact write
lifts an erasure. Removing an entry resubscribes no one: a contact's status
and list subscriptions are separate (see docs/suppressions.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.contacts.addresses import InvalidAddress, normalize_address
from sendstream.contacts.errors import (
    InvalidSuppressionAddress,
    InvalidSuppressionDomain,
    SuppressionErased,
    SuppressionNotFound,
)
from sendstream.contacts.exports import PreparedExport
from sendstream.contacts.suppression import (
    address_hash,
    address_hashes,
    domain_key,
    strongest,
    upsert_suppression,
)
from sendstream.contacts.suppression_repository import suppression_repository
from sendstream.core.errors import InvalidInput
from sendstream.core.outbox import emit
from sendstream.core.pagination import PageParams, encode_cursor
from sendstream.models.suppression import Suppression

MAX_NOTE_LENGTH = 1000
EXPORT_COLUMNS = ("address", "domain", "reason", "source", "note", "created_at", "address_hash")


@dataclass(frozen=True, slots=True)
class Target:
    """An address or a domain, normalised: its key hash and how it is shown."""

    key_hash: str
    address: str | None
    domain: str | None

    @property
    def label(self) -> str:
        return self.address or f"@{self.domain}"


def address_target(raw: str) -> Target:
    try:
        address = normalize_address(raw)
    except InvalidAddress as exc:
        raise InvalidSuppressionAddress(str(exc)) from None
    return Target(address_hash(address.key), address.email, None)


def domain_target(raw: str) -> Target:
    """`example.com` (or `@example.com`), lower-cased and IDNA-encoded the
    way address keys hold their domain."""
    text = raw.strip().removeprefix("@")
    if not text or "@" in text:
        raise InvalidSuppressionDomain(raw, "give the part after the @ (`example.com`)")
    try:
        # The address check knows domains: labels, lengths, IDNA.
        domain = normalize_address(f"postmaster@{text}").key.rpartition("@")[2]
    except InvalidAddress as exc:
        raise InvalidSuppressionDomain(raw, str(exc)) from None
    return Target(address_hash(domain_key(domain)), None, domain)


def _after(cursor: dict[str, Any] | None) -> tuple[datetime, str] | None:
    if cursor is None:
        return None
    try:
        created_at = datetime.fromisoformat(str(cursor["t"]))
        key_hash = str(cursor["h"])
    except (KeyError, ValueError):
        created_at = None
        key_hash = ""
    if created_at is None or created_at.tzinfo is None or len(key_hash) != 64:
        raise InvalidInput(
            "cursor: not a cursor this list issued; pass back `next_cursor` unchanged.",
            code="invalid_cursor",
        )
    return created_at, key_hash


class SuppressionService:
    async def list_suppressions(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        page: PageParams,
        *,
        reason: str | None = None,
        search: str | None = None,
    ) -> tuple[Sequence[Suppression], str | None]:
        """Newest first; `search` matches part of an address or domain."""
        rows = list(
            await suppression_repository.page(
                session,
                workspace_id,
                reason=reason,
                search=search,
                after=_after(page.cursor),
                limit=page.limit + 1,
            )
        )
        next_cursor = None
        if len(rows) > page.limit:
            rows = rows[: page.limit]
            last = rows[-1]
            next_cursor = encode_cursor({"t": last.created_at.isoformat(), "h": last.address_hash})
        return rows, next_cursor

    async def find_for_key(
        self, session: AsyncSession, workspace_id: uuid.UUID, email_key: str
    ) -> Suppression | None:
        """The entry that suppresses the address with this matching key: its
        own, or its domain's (the stronger one when both exist)."""
        domain = domain_key(email_key.rpartition("@")[2])
        own, by_domain = address_hashes([email_key, domain])
        found = await suppression_repository.find(session, workspace_id, [own, by_domain])
        entries = [e for e in (found.get(own), found.get(by_domain)) if e is not None]
        reason = strongest(e.reason for e in entries)
        return next((e for e in entries if e.reason == reason), None)

    async def get_for_address(
        self, session: AsyncSession, workspace_id: uuid.UUID, raw: str
    ) -> Suppression:
        try:
            address = normalize_address(raw)
        except InvalidAddress as exc:
            raise InvalidSuppressionAddress(str(exc)) from None
        found = await self.find_for_key(session, workspace_id, address.key)
        if found is None:
            raise SuppressionNotFound(address.email)
        return found

    async def get_domain(
        self, session: AsyncSession, workspace_id: uuid.UUID, raw: str
    ) -> Suppression:
        return await self._get(session, workspace_id, domain_target(raw))

    async def add_suppression(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        target: Target,
        *,
        reason: str,
        source: str,
        note: str | None = None,
    ) -> tuple[Suppression, bool]:
        """Suppress `target` (see `suppression.upsert_suppression`: an
        existing entry keeps a stronger reason). Returns the entry and
        whether it was created."""
        if reason == "erased":
            raise InvalidInput(
                "reason: `erased` is set by GDPR erasure only (POST /v1/contacts/erase).",
                code="validation_error",
            )
        return await upsert_suppression(
            session,
            workspace_id,
            key_hash=target.key_hash,
            reason=reason,
            source=source,
            address=target.address,
            domain=target.domain,
            note=note,
        )

    async def remove(
        self, session: AsyncSession, workspace_id: uuid.UUID, target: Target
    ) -> Suppression:
        """Delete the entry of exactly this address or domain (an address's
        domain entry stays). An erased address is refused (409)."""
        entry = await self._get(session, workspace_id, target)
        if entry.reason == "erased":
            raise SuppressionErased()
        await suppression_repository.remove(session, workspace_id, target.key_hash)
        emit(
            session,
            workspace_id,
            "suppression.removed",
            {"address": entry.address, "domain": entry.domain, "reason": entry.reason},
            subject_type="suppression",
            subject_id=target.key_hash,
        )
        return entry

    def prepare_export(self, workspace_id: uuid.UUID, *, reason: str | None) -> PreparedExport:
        """The list as CSV (newest first), for `export_service.stream`."""
        where: list[sql.Composable] = [
            sql.SQL("workspace_id = {}").format(sql.Literal(str(workspace_id)))
        ]
        if reason is not None:
            where.append(sql.SQL("reason = {}").format(sql.Literal(reason)))
        statement = sql.SQL(
            "COPY (SELECT {} FROM suppressions WHERE {} "
            "ORDER BY created_at DESC, address_hash DESC) TO STDOUT WITH (FORMAT csv, HEADER)"
        ).format(
            sql.SQL(", ").join(sql.Identifier(c) for c in EXPORT_COLUMNS),
            sql.SQL(" AND ").join(where),
        )
        return PreparedExport("csv", statement)

    async def _get(
        self, session: AsyncSession, workspace_id: uuid.UUID, target: Target
    ) -> Suppression:
        found = await suppression_repository.find(session, workspace_id, [target.key_hash])
        entry = found.get(target.key_hash)
        if entry is None:
            raise SuppressionNotFound(target.label)
        return entry


suppression_service = SuppressionService()
