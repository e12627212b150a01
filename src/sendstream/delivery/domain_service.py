"""The rules of sending domains.

- Registering a domain generates its DKIM keys (RSA-2048, plus Ed25519 when
  asked for dual signing), stores the private keys encrypted
  (`core.secrets`, bound to the row), and the records to publish follow
  from the domain and `settings.delivery` (`domain_records`).
- `verify_domain` checks DNS now. All required records `ok`: `verified`;
  any `missing` or `wrong`: `failed`; otherwise (some lookups ended in
  `error`) the status stays as it was, since a DNS outage proves nothing.
  Becoming verified emits `domain.verified`; losing it emits
  `domain.verification_failed`.
- `signing_keys` is what the delivery pipeline asks before signing: the
  decrypted keys of the registered domain covering the From: domain, or
  `DomainNotVerified` / `UnknownSendingDomain`, as
  `delivery.allow_unverified_domains` says.
"""

from __future__ import annotations

import asyncio
import secrets as random_tokens
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core import secrets
from sendstream.core.ids import uuid7
from sendstream.core.outbox import emit
from sendstream.core.pagination import PageParams, cursor_uuid, trim_page
from sendstream.core.settings import Settings, get_settings
from sendstream.delivery.dkim import DkimKey, generate_ed25519_key, generate_rsa_key
from sendstream.delivery.dns_check import check_records
from sendstream.delivery.domain_records import (
    MAX_NAME_LENGTH,
    DnsRecord,
    expected_records,
    normalize_domain_name,
)
from sendstream.delivery.domain_repository import domain_repository
from sendstream.delivery.errors import (
    DomainExists,
    DomainNotFound,
    DomainNotVerified,
    InvalidDomainName,
    UnknownSendingDomain,
)
from sendstream.models.sending_domain import SendingDomain

RSA_BITS = 2048
SUBJECT_TYPE = "sending_domain"
# Selector letters: lower-case, no look-alikes, valid in any DNS label.
_SELECTOR_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"


@dataclass(frozen=True)
class RecordState:
    """A record to publish and what the last check found (None: never checked)."""

    record: DnsRecord
    check: dict[str, Any] | None


def key_context(column: str, domain_id: uuid.UUID) -> str:
    """The `core.secrets` context of a domain's private key: a token only
    decrypts in the row and column it was written to."""
    return f"sending_domains.{column}:{domain_id}"


def allow_unverified(settings: Settings) -> bool:
    configured = settings.delivery.allow_unverified_domains
    return settings.environment == "development" if configured is None else configured


def _new_selector_stem() -> str:
    """`ss1-` and six random letters: unique enough that a re-registered
    domain never reuses the selector (and so the DNS record) of its past."""
    return "ss1-" + "".join(random_tokens.choice(_SELECTOR_ALPHABET) for _ in range(6))


def _covering_names(name: str) -> list[str]:
    """`name` and each parent with at least two labels, longest first."""
    labels = name.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


class DomainService:
    async def create_domain(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        name: str,
        dual_sign_ed25519: bool = False,
    ) -> SendingDomain:
        settings = get_settings()
        normalized = normalize_domain_name(name)
        domain_id = uuid7()
        stem = _new_selector_stem()
        draft = SendingDomain(
            id=domain_id,
            workspace_id=workspace_id,
            name=normalized,
            dkim_selector=stem,
            dkim_public_key="",
            ed25519_selector=f"{stem}-ed" if dual_sign_ed25519 else None,
            ed25519_public_key="" if dual_sign_ed25519 else None,
            return_path_subdomain=settings.delivery.return_path_subdomain,
            tracking_subdomain=settings.delivery.tracking_subdomain,
        )
        for record in expected_records(draft, settings.delivery):
            if len(record.host) > MAX_NAME_LENGTH:
                raise InvalidDomainName(
                    name,
                    f"its record host {record.host[:40]}... would be longer than "
                    f"{MAX_NAME_LENGTH} characters",
                )
        # Key generation takes tens of milliseconds of CPU: off the event loop.
        rsa_pem, rsa_public = await asyncio.to_thread(generate_rsa_key, RSA_BITS)
        values: dict[str, Any] = {
            "id": domain_id,
            "name": normalized,
            "dkim_selector": draft.dkim_selector,
            "dkim_private_key": secrets.encrypt(
                rsa_pem, key_context("dkim_private_key", domain_id)
            ),
            "dkim_public_key": rsa_public,
            "return_path_subdomain": draft.return_path_subdomain,
            "tracking_subdomain": draft.tracking_subdomain,
        }
        if dual_sign_ed25519:
            ed_pem, ed_public = generate_ed25519_key()
            values |= {
                "ed25519_selector": draft.ed25519_selector,
                "ed25519_private_key": secrets.encrypt(
                    ed_pem, key_context("ed25519_private_key", domain_id)
                ),
                "ed25519_public_key": ed_public,
            }
        created = await domain_repository.insert(session, workspace_id, values)
        if created is None:
            raise DomainExists(normalized)
        return created

    async def list_domains(
        self, session: AsyncSession, workspace_id: uuid.UUID, page: PageParams
    ) -> tuple[list[SendingDomain], str | None]:
        rows = list(
            await domain_repository.page(
                session, workspace_id, after=cursor_uuid(page.cursor, "id"), limit=page.limit + 1
            )
        )
        return trim_page(rows, page.limit, lambda row: {"id": str(row.id)})

    async def get_domain(
        self, session: AsyncSession, workspace_id: uuid.UUID, domain_id: uuid.UUID
    ) -> SendingDomain:
        found = await domain_repository.get(session, workspace_id, domain_id)
        if found is None:
            raise DomainNotFound(domain_id)
        return found

    def records(self, domain: SendingDomain) -> list[RecordState]:
        """The records `domain` should publish, each with its last check."""
        checks = domain.check_results or {}
        return [
            RecordState(record, checks.get(record.key))
            for record in expected_records(domain, get_settings().delivery)
        ]

    async def verify_domain(
        self, session: AsyncSession, workspace_id: uuid.UUID, domain_id: uuid.UUID
    ) -> SendingDomain:
        """Check DNS now and record the outcome (see the module docstring).

        DNS is asked before the row is locked, so a slow resolver never holds
        the lock; the status change is decided on the locked row, so two
        checks at once emit an event at most once."""
        settings = get_settings().delivery
        found = await self.get_domain(session, workspace_id, domain_id)
        records = expected_records(found, settings)
        checks = await check_records(records, settings)

        domain = await domain_repository.get(session, workspace_id, domain_id, for_update=True)
        if domain is None:  # deleted while DNS was asked
            raise DomainNotFound(domain_id)
        required = [checks[r.key].status for r in records if r.required]
        previous = domain.status
        if any(status in ("missing", "wrong") for status in required):
            status = "failed"
        elif all(status == "ok" for status in required):
            status = "verified"
        else:
            status = previous
        now = datetime.now(UTC)
        domain.check_results = {key: check.as_json() for key, check in checks.items()}
        domain.checked_at = now
        domain.status = status
        data = {
            "domain_id": domain.id,
            "name": domain.name,
            "status": status,
            "records": {key: check.status for key, check in checks.items()},
        }
        if status == "verified" and previous != "verified":
            domain.verified_at = now
            emit(
                session,
                workspace_id,
                "domain.verified",
                data,
                subject_type=SUBJECT_TYPE,
                subject_id=domain.id,
            )
        elif status == "failed":
            domain.verified_at = None
            if previous == "verified":
                emit(
                    session,
                    workspace_id,
                    "domain.verification_failed",
                    data,
                    subject_type=SUBJECT_TYPE,
                    subject_id=domain.id,
                )
        await session.flush()
        await session.refresh(domain)
        return domain

    async def delete_domain(
        self, session: AsyncSession, workspace_id: uuid.UUID, domain_id: uuid.UUID
    ) -> None:
        """Mail from the domain is refused (or unsigned, where unverified
        domains are allowed) from the commit on; its keys are gone for good."""
        found = await domain_repository.get(session, workspace_id, domain_id, for_update=True)
        if found is None:
            raise DomainNotFound(domain_id)
        await domain_repository.delete(session, found)

    async def signing_keys(
        self, session: AsyncSession, workspace_id: uuid.UUID, from_address_domain: str
    ) -> list[DkimKey]:
        """The DKIM keys to sign mail whose From: address is at
        `from_address_domain`: those of the workspace's registered domain
        that is that domain or its closest parent (`news.example.com` is
        signed with d=example.com), RSA first.

        Refused with `UnknownSendingDomain` when no registered domain covers
        it and `DomainNotVerified` when the covering one is not verified,
        unless `delivery.allow_unverified_domains` (by default: only in
        development), which returns the keys of an unverified domain and no
        keys (send unsigned) for an unregistered one."""
        settings = get_settings()
        allowed = allow_unverified(settings)
        try:
            name = normalize_domain_name(from_address_domain)
        except InvalidDomainName:
            name = None
        domain = (
            await domain_repository.find_covering(session, workspace_id, _covering_names(name))
            if name is not None
            else None
        )
        if domain is None:
            if allowed:
                return []
            raise UnknownSendingDomain(from_address_domain)
        if domain.status != "verified" and not allowed:
            raise DomainNotVerified(domain.name, domain.status)
        keys = [
            DkimKey.from_pem(
                domain.name,
                domain.dkim_selector,
                secrets.decrypt(
                    domain.dkim_private_key, key_context("dkim_private_key", domain.id)
                ),
                generated_here=True,
            )
        ]
        if domain.ed25519_selector and domain.ed25519_private_key:
            keys.append(
                DkimKey.from_pem(
                    domain.name,
                    domain.ed25519_selector,
                    secrets.decrypt(
                        domain.ed25519_private_key, key_context("ed25519_private_key", domain.id)
                    ),
                    generated_here=True,
                )
            )
        return keys


domain_service = DomainService()
