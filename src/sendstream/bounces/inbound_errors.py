"""Errors of inbound routing, each with its stable problem+json `code`."""

from __future__ import annotations

import uuid

from sendstream.core.errors import Conflict, InvalidInput, NotFound


class InboundDomainNotFound(NotFound):
    code = "inbound_domain_not_found"

    def __init__(self, domain_id: uuid.UUID | str) -> None:
        super().__init__(f"No inbound domain {domain_id} in this workspace.")


class InboundDomainTaken(Conflict):
    """Domain names are unique across the deployment: the MX must know whose
    mail it is from the recipient alone."""

    code = "inbound_domain_taken"

    def __init__(self, name: str) -> None:
        super().__init__(f"The inbound domain {name!r} is already registered.")


class InvalidInboundDomain(InvalidInput):
    code = "invalid_inbound_domain"

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"name: {name[:300]!r} cannot receive mail here: {why}.")
        self.errors = [{"location": "body.name", "message": why}]


class InboundRouteNotFound(NotFound):
    code = "inbound_route_not_found"

    def __init__(self, route_id: uuid.UUID | str) -> None:
        super().__init__(f"No inbound route {route_id} in this workspace.")


class InvalidInboundRoute(InvalidInput):
    code = "invalid_inbound_route"

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.errors = [{"location": f"body.{field}", "message": why}]


class InboundEmailNotFound(NotFound):
    code = "inbound_email_not_found"

    def __init__(self, email_id: uuid.UUID | str) -> None:
        super().__init__(f"No inbound email {email_id} in this workspace.")


class InboundAttachmentNotFound(NotFound):
    code = "inbound_attachment_not_found"

    def __init__(self, attachment_id: uuid.UUID | str) -> None:
        super().__init__(f"No attachment {attachment_id} on this inbound email.")


class InboundAttachmentOmitted(NotFound):
    """The part was larger than the attachment limit: only its metadata was kept."""

    code = "inbound_attachment_omitted"
    status = 410

    def __init__(self, attachment_id: uuid.UUID | str) -> None:
        super().__init__(
            f"Attachment {attachment_id} was over the size limit when received; only its "
            "name, type, size and SHA-256 were kept."
        )


class InboundRawGone(NotFound):
    code = "inbound_raw_gone"
    status = 410

    def __init__(self, email_id: uuid.UUID | str) -> None:
        super().__init__(
            f"The original MIME of inbound email {email_id} is past its retention "
            "(bounces.inbound_retention_days) and was deleted."
        )
