"""The rules of inbound routing: which workspace's route takes mail for an
address, and the inbound domains, routes and received mail of the API.

- A domain belongs to one workspace (unique name across the deployment).
  The MX takes mail for it when it is `verified` (its MX record names
  `bounces.inbound_mx_host`, default the bounce domain) or when
  `bounces.inbound_allow_unverified` allows unverified domains (None: only
  in development).
- A recipient matches a route by its local part (case-insensitive): exact,
  `*`, or a prefix ending in `*`. Of the enabled routes matching, the lowest
  priority wins, then the oldest. No enabled route: refused at RCPT.
- Verification asks DNS before locking the row (like sending domains), and
  emits nothing: an inbound domain's state is visible on the domain.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.bounces.inbound_errors import (
    InboundAttachmentNotFound,
    InboundAttachmentOmitted,
    InboundDomainNotFound,
    InboundDomainTaken,
    InboundEmailNotFound,
    InboundRawGone,
    InboundRouteNotFound,
    InvalidInboundDomain,
)
from sendstream.bounces.inbound_repository import inbound_repository
from sendstream.bounces.inbound_schemas import (
    InboundDomainCreate,
    InboundDomainRead,
    InboundRouteCreate,
    InboundRouteUpdate,
)
from sendstream.core.pagination import PageParams, cursor_uuid, trim_page
from sendstream.core.settings import Settings, get_settings
from sendstream.delivery.dns_check import check_records
from sendstream.delivery.domain_records import DnsRecord, normalize_domain_name
from sendstream.delivery.errors import InvalidDomainName
from sendstream.models.inbound_email import InboundAttachment, InboundEmail
from sendstream.models.inbound_route import InboundDomain, InboundRoute


def mx_host(settings: Settings) -> str:
    host = settings.bounces.inbound_mx_host or settings.delivery.bounce_domain
    return host.lower().rstrip(".")


def allows_unverified(settings: Settings) -> bool:
    allowed = settings.bounces.inbound_allow_unverified
    return settings.environment == "development" if allowed is None else allowed


def pattern_matches(pattern: str, local_part: str) -> bool:
    pattern, local_part = pattern.lower(), local_part.lower()
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return local_part.startswith(pattern[:-1])
    return local_part == pattern


def best_route(routes: Sequence[InboundRoute], local_part: str) -> InboundRoute | None:
    """`routes` come ordered by (priority, id): the first that matches wins."""
    return next((r for r in routes if pattern_matches(r.pattern, local_part)), None)


class InboundRoutingService:
    # --- the MX and the processing job

    async def route_for(
        self, session: AsyncSession, address: str, settings: Settings
    ) -> tuple[InboundDomain, InboundRoute] | None:
        """The domain and winning route taking mail for `address`, or None."""
        local, at, domain_part = address.rpartition("@")
        if not at or not local:
            return None
        try:
            name = normalize_domain_name(domain_part)
        except InvalidDomainName:
            return None
        domain = await inbound_repository.find_domain_by_name(session, name)
        if domain is None:
            return None
        if domain.status != "verified" and not allows_unverified(settings):
            return None
        route = best_route(await inbound_repository.routes_for_domain(session, domain.id), local)
        return None if route is None else (domain, route)

    # --- domains

    def describe_domain(self, domain: InboundDomain, settings: Settings) -> InboundDomainRead:
        return InboundDomainRead(
            id=domain.id,
            name=domain.name,
            status=domain.status,
            mx_record={
                "type": "MX",
                "host": domain.name,
                "value": mx_host(settings),
                "priority": 10,
            },
            check_results=domain.check_results,
            checked_at=domain.checked_at,
            verified_at=domain.verified_at,
            created_at=domain.created_at,
        )

    async def create_domain(
        self, session: AsyncSession, workspace_id: uuid.UUID, body: InboundDomainCreate
    ) -> InboundDomain:
        try:
            name = normalize_domain_name(body.name)
        except InvalidDomainName as exc:
            raise InvalidInboundDomain(
                body.name, exc.message.rsplit(": ", 1)[-1].rstrip(".")
            ) from None
        settings = get_settings()
        reserved = {settings.delivery.bounce_domain.lower().rstrip(".")}
        if name in reserved:
            raise InvalidInboundDomain(name, "it is the deployment's bounce domain")
        if await inbound_repository.find_domain_by_name(session, name) is not None:
            raise InboundDomainTaken(name)
        domain = InboundDomain(workspace_id=workspace_id, name=name, status="pending")
        try:
            async with session.begin_nested():
                return await inbound_repository.add(session, domain)  # type: ignore[no-any-return]
        except IntegrityError:  # registered at the same moment by someone else
            raise InboundDomainTaken(name) from None

    async def get_domain(
        self, session: AsyncSession, workspace_id: uuid.UUID, domain_id: uuid.UUID
    ) -> InboundDomain:
        domain = await inbound_repository.get_domain(session, workspace_id, domain_id)
        if domain is None:
            raise InboundDomainNotFound(domain_id)
        return domain

    async def list_domains(
        self, session: AsyncSession, workspace_id: uuid.UUID, page: PageParams
    ) -> tuple[list[InboundDomain], str | None]:
        rows = await inbound_repository.page_domains(
            session, workspace_id, after=cursor_uuid(page.cursor), limit=page.limit + 1
        )
        return trim_page(list(rows), page.limit, lambda d: {"id": str(d.id)})

    async def delete_domain(
        self, session: AsyncSession, workspace_id: uuid.UUID, domain_id: uuid.UUID
    ) -> None:
        await self.get_domain(session, workspace_id, domain_id)
        await inbound_repository.delete_domain(session, workspace_id, domain_id)

    async def verify_domain(
        self, session: AsyncSession, workspace_id: uuid.UUID, domain_id: uuid.UUID
    ) -> InboundDomain:
        """Ask DNS for the domain's MX now and record the outcome: `ok` ->
        verified, `missing`/`wrong` -> failed, `error` keeps the status."""
        settings = get_settings()
        found = await self.get_domain(session, workspace_id, domain_id)
        record = DnsRecord(
            key="mx",
            type="MX",
            host=found.name,
            value=mx_host(settings),
            purpose="return_path",
            required=True,
            priority=10,
        )
        check = (await check_records([record], settings.delivery))["mx"]
        domain = await inbound_repository.get_domain(
            session, workspace_id, domain_id, for_update=True
        )
        if domain is None:
            raise InboundDomainNotFound(domain_id)
        now = datetime.now(UTC)
        if check.status == "ok":
            if domain.status != "verified":
                domain.verified_at = now
            domain.status = "verified"
        elif check.status in ("missing", "wrong"):
            domain.status = "failed"
        domain.check_results = {"mx": check.as_json()}
        domain.checked_at = now
        return await inbound_repository.save(session, domain)  # type: ignore[no-any-return]

    # --- routes

    async def create_route(
        self, session: AsyncSession, workspace_id: uuid.UUID, body: InboundRouteCreate
    ) -> InboundRoute:
        await self.get_domain(session, workspace_id, body.domain_id)
        route = InboundRoute(
            workspace_id=workspace_id,
            domain_id=body.domain_id,
            name=body.name.strip(),
            pattern=body.pattern.lower(),
            priority=body.priority,
            action=body.action,
            enabled=body.enabled,
        )
        return await inbound_repository.add(session, route)  # type: ignore[no-any-return]

    async def get_route(
        self, session: AsyncSession, workspace_id: uuid.UUID, route_id: uuid.UUID
    ) -> InboundRoute:
        route = await inbound_repository.get_route(session, workspace_id, route_id)
        if route is None:
            raise InboundRouteNotFound(route_id)
        return route

    async def list_routes(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        page: PageParams,
        domain_id: uuid.UUID | None,
    ) -> tuple[list[InboundRoute], str | None]:
        rows = await inbound_repository.page_routes(
            session,
            workspace_id,
            domain_id=domain_id,
            after=cursor_uuid(page.cursor),
            limit=page.limit + 1,
        )
        return trim_page(list(rows), page.limit, lambda r: {"id": str(r.id)})

    async def update_route(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        route_id: uuid.UUID,
        body: InboundRouteUpdate,
    ) -> InboundRoute:
        route = await inbound_repository.get_route(session, workspace_id, route_id, for_update=True)
        if route is None:
            raise InboundRouteNotFound(route_id)
        for name in body.model_fields_set:
            value = getattr(body, name)
            if value is None:
                continue  # null leaves a field as it is: none of them can be unset
            if name == "name":
                value = value.strip()
            if name == "pattern":
                value = value.lower()
            setattr(route, name, value)
        return await inbound_repository.save(session, route)  # type: ignore[no-any-return]

    async def delete_route(
        self, session: AsyncSession, workspace_id: uuid.UUID, route_id: uuid.UUID
    ) -> None:
        await self.get_route(session, workspace_id, route_id)
        await inbound_repository.delete_route(session, workspace_id, route_id)

    # --- received mail

    async def get_email(
        self, session: AsyncSession, workspace_id: uuid.UUID, email_id: uuid.UUID
    ) -> tuple[InboundEmail, Sequence[InboundAttachment], InboundRoute | None]:
        email = await inbound_repository.get_email(session, workspace_id, email_id)
        if email is None:
            raise InboundEmailNotFound(email_id)
        attachments = await inbound_repository.attachments(session, workspace_id, email.id)
        route = None
        if email.route_id is not None:
            route = await inbound_repository.get_route(session, workspace_id, email.route_id)
        return email, attachments, route

    async def list_emails(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        page: PageParams,
        filters: dict[str, Any],
    ) -> tuple[list[InboundEmail], str | None]:
        rows = await inbound_repository.page_emails(
            session,
            workspace_id,
            before=cursor_uuid(page.cursor),
            limit=page.limit + 1,
            **filters,
        )
        return trim_page(list(rows), page.limit, lambda e: {"id": str(e.id)})

    async def get_attachment(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        email_id: uuid.UUID,
        attachment_id: uuid.UUID,
    ) -> InboundAttachment:
        attachment = await inbound_repository.get_attachment(
            session, workspace_id, email_id, attachment_id
        )
        if attachment is None:
            if await inbound_repository.get_email(session, workspace_id, email_id) is None:
                raise InboundEmailNotFound(email_id)
            raise InboundAttachmentNotFound(attachment_id)
        if attachment.content is None:
            raise InboundAttachmentOmitted(attachment_id)
        return attachment

    async def get_raw(
        self, session: AsyncSession, workspace_id: uuid.UUID, email_id: uuid.UUID
    ) -> bytes:
        email = await inbound_repository.get_email(session, workspace_id, email_id)
        if email is None:
            raise InboundEmailNotFound(email_id)
        raw = None
        if email.inbound_message_id is not None:
            raw = await inbound_repository.raw_of(session, workspace_id, email.inbound_message_id)
        if raw is None:
            raise InboundRawGone(email_id)
        return raw


inbound_routing_service = InboundRoutingService()
