"""Request and response shapes of /v1/domains. Private keys never appear in
any of them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from sendstream.core.pagination import Page
from sendstream.core.types import NO_CONTROL_CHARS
from sendstream.delivery.domain_records import (
    Purpose,
    RecordType,
    return_path_host,
    tracking_host,
    txt_strings,
    unicode_name,
)
from sendstream.delivery.domain_service import RecordState
from sendstream.models.sending_domain import SendingDomain

DomainStatus = Literal["pending", "verified", "failed"]
CheckStatus = Literal["ok", "missing", "wrong", "error"]


class DomainCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[
        str, StringConstraints(min_length=1, max_length=253, pattern=NO_CONTROL_CHARS)
    ] = Field(
        description="The domain mail will be sent from, e.g. `example.com` or "
        "`bücher.example` (stored as its A-label). Subdomains of it are covered too.",
        examples=["example.com"],
    )
    dual_sign_ed25519: bool = Field(
        default=False,
        description="Also generate an Ed25519 key and sign with both (RFC 8463); receivers "
        "that do not know Ed25519 use the RSA signature.",
    )


class RecordCheckRead(BaseModel):
    status: CheckStatus = Field(
        description="`ok`; `missing`: no such record; `wrong`: a record with another value "
        "(see `found`); `error`: DNS gave no answer (timeout, SERVFAIL), nothing is known."
    )
    found: list[str] = Field(description="The values found at this host and type.")
    message: str | None = Field(default=None, description="What is wrong and what to do.")


class DnsRecordRead(BaseModel):
    type: RecordType
    host: str = Field(description="Fully qualified name the record goes at (no trailing dot).")
    value: str = Field(
        description="What to publish. For SPF, once a check has seen an SPF record there, "
        "your record with our include added (publish it instead of yours)."
    )
    strings: list[str] | None = Field(
        default=None,
        description="TXT only: the value cut into the <=255-byte strings DNS holds; zone "
        "files and some DNS hosts need them quoted one by one.",
    )
    priority: int | None = Field(default=None, description="MX only.")
    purpose: Purpose
    required: bool = Field(
        description="Needed for verification. DMARC is advice; the tracking CNAME is "
        "needed only once tracking runs on the domain."
    )
    check: RecordCheckRead | None = Field(
        default=None, description="The last check of this record; null before the first."
    )

    @classmethod
    def of(cls, state: RecordState) -> DnsRecordRead:
        record, check = state.record, state.check
        value = record.value
        if check is not None and check.get("suggested_value"):
            value = str(check["suggested_value"])
        return cls(
            type=record.type,
            host=record.host,
            value=value,
            strings=txt_strings(value) if record.type == "TXT" else None,
            priority=record.priority,
            purpose=record.purpose,
            required=record.required,
            check=RecordCheckRead(
                status=check["status"], found=check.get("found") or [], message=check["message"]
            )
            if check is not None
            else None,
        )


class DomainRead(BaseModel):
    id: uuid.UUID
    name: str = Field(description="The domain as an A-label (`xn--bcher-kva.example`).")
    unicode_name: str = Field(description="The domain as people read it (`bücher.example`).")
    status: DomainStatus = Field(
        description="`pending` until a check is conclusive; `verified` when every required "
        "record was right; `failed` when one was missing or wrong."
    )
    dkim_selectors: list[str] = Field(description="RSA first, then Ed25519 when dual signing.")
    return_path_host: str = Field(description="The envelope sender (Return-Path) domain.")
    tracking_host: str
    records: list[DnsRecordRead]
    checked_at: datetime | None
    verified_at: datetime | None = Field(
        description="When the domain last became verified; null when it is not."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, domain: SendingDomain, records: list[RecordState]) -> DomainRead:
        return cls(
            id=domain.id,
            name=domain.name,
            unicode_name=unicode_name(domain.name),
            status=domain.status,
            dkim_selectors=[s for s in (domain.dkim_selector, domain.ed25519_selector) if s],
            return_path_host=return_path_host(domain),
            tracking_host=tracking_host(domain),
            records=[DnsRecordRead.of(state) for state in records],
            checked_at=domain.checked_at,
            verified_at=domain.verified_at,
            created_at=domain.created_at,
            updated_at=domain.updated_at,
        )


class DomainPage(Page[DomainRead]):
    pass
