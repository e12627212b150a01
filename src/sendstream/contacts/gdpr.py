"""GDPR/CCPA: everything held about one person, and its erasure.

Export is one JSON document: the contact, the definitions of the custom
fields its attributes use, external ids, subscriptions, consent records, the
timeline (every event whose subject is the contact) and messages (empty until
the delivery domain exists).

Erasure runs in the caller's transaction, all or nothing: the contact row goes
(subscriptions, consent records and external ids cascade with it), every event
whose subject is the contact has its `data` replaced by `{"erased": true}`,
stored `Idempotency-Key` responses that mention the address are dropped (a
retry must not replay it), and the address survives only as a keyed hash with
suppression reason `erased`, which every write path checks. `contact.erased`
carries the id and that hash, never the address.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.contacts.addresses import InvalidAddress, normalize_address
from sendstream.contacts.errors import ContactNotFound, InvalidErasureAddress
from sendstream.contacts.list_repository import gdpr_repository, subscription_repository
from sendstream.contacts.service import contact_document
from sendstream.contacts.suppression import address_hash, suppress
from sendstream.core.outbox import emit
from sendstream.models.contact import Contact


@dataclass(frozen=True)
class ErasureReceipt:
    address_hash: str
    erased_at: datetime
    # None when the address belonged to no contact (it is suppressed anyway).
    contact_id: uuid.UUID | None
    removed: dict[str, int] = field(default_factory=dict)


class GdprService:
    async def export_contact(
        self, session: AsyncSession, workspace_id: uuid.UUID, contact_id: uuid.UUID
    ) -> dict[str, Any]:
        contact = await subscription_repository.find_contact(session, workspace_id, contact_id)
        if contact is None:
            raise ContactNotFound(contact_id)
        fields = await gdpr_repository.fields(session, workspace_id, list(contact.attributes or {}))
        external_ids = await gdpr_repository.external_ids(session, workspace_id, contact_id)
        subscriptions = await subscription_repository.of_contact(session, workspace_id, contact_id)
        consent = await subscription_repository.consent_page(
            session, workspace_id, contact_id, before=None, limit=None
        )
        timeline = await gdpr_repository.timeline(session, workspace_id, contact_id)
        return {
            "exported_at": datetime.now(UTC).isoformat(),
            "contact": contact_document(contact, {e.system: e.external_id for e in external_ids}),
            "fields": [
                {
                    "key": f.key,
                    "label": f.label,
                    "type": f.type,
                    "options": f.options,
                    "description": f.description,
                }
                for f in fields
            ],
            "external_ids": [
                {"system": e.system, "external_id": e.external_id} for e in external_ids
            ],
            "subscriptions": [
                {
                    "list_id": str(sub.list_id),
                    "list_name": name,
                    "status": sub.status,
                    "created_at": sub.created_at.isoformat(),
                    "updated_at": sub.updated_at.isoformat(),
                }
                for sub, name in subscriptions
            ],
            "consent": [
                {
                    "id": c.id,
                    "list_id": str(c.list_id) if c.list_id else None,
                    "status": c.status,
                    "previous_status": c.previous_status,
                    "source": c.source,
                    "actor": c.actor,
                    "ip": str(c.ip) if c.ip is not None else None,
                    "user_agent": c.user_agent,
                    "text": c.consent_text,
                    "occurred_at": c.occurred_at.isoformat(),
                }
                for c in reversed(consent)
            ],
            "timeline": [
                {
                    "position": e.position,
                    "type": e.type,
                    "occurred_at": e.occurred_at.isoformat(),
                    "data": e.data,
                }
                for e in timeline
            ],
            # The delivery domain does not exist yet: no message is stored.
            "messages": [],
        }

    async def erase_contact(
        self, session: AsyncSession, workspace_id: uuid.UUID, contact_id: uuid.UUID
    ) -> ErasureReceipt:
        contact = await subscription_repository.find_contact(
            session, workspace_id, contact_id, for_update=True
        )
        if contact is None:
            raise ContactNotFound(contact_id)
        return await self._erase(session, workspace_id, contact.email_key, contact)

    async def erase_address(
        self, session: AsyncSession, workspace_id: uuid.UUID, email: str
    ) -> ErasureReceipt:
        """Erase whoever has this address, contact or not: a person may ask
        before (or without) ever being a contact, and must not become one later."""
        try:
            address = normalize_address(email)
        except InvalidAddress as exc:
            raise InvalidErasureAddress(str(exc)) from None
        contact = await gdpr_repository.find_contact_by_key(session, workspace_id, address.key)
        return await self._erase(session, workspace_id, address.key, contact, extra=(email,))

    async def _erase(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        email_key: str,
        contact: Contact | None,
        extra: tuple[str, ...] = (),
    ) -> ErasureReceipt:
        hashed = address_hash(email_key)
        removed = {
            "contacts": 0,
            "subscriptions": 0,
            "consent_records": 0,
            "external_ids": 0,
            "events_redacted": 0,
            "idempotency_records": 0,
        }
        needles = {email_key, *extra}
        if contact is not None:
            needles.add(contact.email)
            removed.update(await gdpr_repository.count_held(session, workspace_id, contact.id))
            removed["events_redacted"] = await gdpr_repository.redact_events(
                session, workspace_id, contact.id
            )
            await gdpr_repository.delete_contact(session, workspace_id, contact.id)
            removed["contacts"] = 1
            session.expunge(contact)
        removed["idempotency_records"] = await gdpr_repository.forget_idempotent_responses(
            session, workspace_id, needles
        )
        await suppress(session, workspace_id, email_key, "erased")
        contact_id = contact.id if contact is not None else None
        if contact_id is not None:
            emit(
                session,
                workspace_id,
                "contact.erased",
                {"id": contact_id, "address_hash": hashed},
                subject_type="contact",
                subject_id=contact_id,
            )
        else:
            emit(
                session,
                workspace_id,
                "contact.erased",
                {"id": None, "address_hash": hashed},
                subject_type="suppression",
                subject_id=hashed,
            )
        return ErasureReceipt(
            address_hash=hashed,
            erased_at=datetime.now(UTC),
            contact_id=contact_id,
            removed=removed,
        )


gdpr_service = GdprService()
