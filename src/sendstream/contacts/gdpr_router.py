"""HTTP routes of GDPR/CCPA requests: export everything held about a contact,
erase a contact, erase an address. The rules live in `gdpr.py`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.contacts.gdpr import ErasureReceipt, gdpr_service
from sendstream.contacts.lists_router import ConsentRead
from sendstream.core.http import UnitOfWorkRoute, get_session
from sendstream.workspaces.auth import Principal, require_scope

router = APIRouter(route_class=UnitOfWorkRoute, tags=["gdpr"])
Session = Annotated[AsyncSession, Depends(get_session)]
ContactId = Annotated[uuid.UUID, Path(description="The contact's id.")]


class ExportedField(BaseModel):
    key: str
    label: str
    type: str
    options: list[str] | None
    description: str | None


class ExportedExternalId(BaseModel):
    system: str
    external_id: str


class ExportedSubscription(BaseModel):
    list_id: uuid.UUID
    list_name: str
    status: str
    created_at: datetime
    updated_at: datetime


class ExportedEvent(BaseModel):
    position: int
    type: str
    occurred_at: datetime
    data: dict[str, Any]


class ContactExport(BaseModel):
    """Everything Sendstream holds about one contact."""

    exported_at: datetime
    contact: dict[str, Any] = Field(description="The contact, as `GET /v1/contacts/{id}` shows it.")
    fields: list[ExportedField] = Field(description="Definitions of the custom fields it uses.")
    external_ids: list[ExportedExternalId]
    subscriptions: list[ExportedSubscription]
    consent: list[ConsentRead] = Field(description="Consent records, oldest first.")
    timeline: list[ExportedEvent] = Field(description="Events about the contact, oldest first.")
    messages: list[dict[str, Any]] = Field(
        description="Messages sent to the contact (empty until the delivery domain exists)."
    )


class ErasureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Annotated[str, StringConstraints(min_length=1, max_length=320)] = Field(
        description="The address to erase, whether or not a contact has it."
    )


class ErasureRemoved(BaseModel):
    contacts: int
    subscriptions: int
    consent_records: int
    external_ids: int
    events_redacted: int
    idempotency_records: int


class ErasureReceiptRead(BaseModel):
    erased: bool = True
    contact_id: uuid.UUID | None = Field(description="null: no contact had the address.")
    address_hash: str = Field(
        description="The keyed hash kept in the suppression list instead of the address."
    )
    erased_at: datetime
    removed: ErasureRemoved

    @classmethod
    def of(cls, receipt: ErasureReceipt) -> ErasureReceiptRead:
        return cls(
            contact_id=receipt.contact_id,
            address_hash=receipt.address_hash,
            erased_at=receipt.erased_at,
            removed=ErasureRemoved(**receipt.removed),
        )


@router.get(
    "/contacts/{contact_id}/export",
    summary="Export everything held about a contact (GDPR access request)",
)
async def export_contact(
    contact_id: ContactId,
    session: Session,
    response: Response,
    principal: Principal = require_scope("contacts:read"),
) -> ContactExport:
    document = await gdpr_service.export_contact(session, principal.workspace_id, contact_id)
    response.headers["Content-Disposition"] = f'attachment; filename="contact-{contact_id}.json"'
    response.headers["Cache-Control"] = "no-store"
    return ContactExport.model_validate(document)


@router.post(
    "/contacts/{contact_id}/erase",
    summary="Erase a contact (GDPR erasure request)",
    description="In one transaction: deletes the contact with its subscriptions, consent "
    "records and external ids, redacts every event about it, and keeps only a keyed hash "
    "of the address (suppression reason `erased`) so that no API call, import or sync "
    "brings it back without a new explicit opt-in. Emits `contact.erased`.",
)
async def erase_contact(
    contact_id: ContactId, session: Session, principal: Principal = require_scope("contacts:write")
) -> ErasureReceiptRead:
    receipt = await gdpr_service.erase_contact(session, principal.workspace_id, contact_id)
    return ErasureReceiptRead.of(receipt)


@router.post(
    "/contacts/erase",
    summary="Erase an address (GDPR erasure request)",
    description="Erases the contact with this address if there is one, and suppresses the "
    "address either way: a person may ask before ever being a contact.",
)
async def erase_address(
    body: ErasureRequest, session: Session, principal: Principal = require_scope("contacts:write")
) -> ErasureReceiptRead:
    receipt = await gdpr_service.erase_address(session, principal.workspace_id, body.email)
    return ErasureReceiptRead.of(receipt)
