"""Errors of the delivery domain, each with its stable problem+json `code`.

(Several people add to this file: append new classes at the end.)"""

from __future__ import annotations

import uuid

from sendstream.core.errors import Conflict, InvalidInput, NotFound

# --- sending domains


class DomainNotFound(NotFound):
    code = "domain_not_found"

    def __init__(self, domain_id: uuid.UUID | str) -> None:
        super().__init__(f"No sending domain {domain_id} in this workspace.")


class DomainExists(Conflict):
    code = "domain_exists"

    def __init__(self, name: str) -> None:
        super().__init__(f"The sending domain {name!r} is already registered in this workspace.")


class InvalidDomainName(InvalidInput):
    code = "invalid_domain_name"

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"name: {name[:300]!r} is not a domain you can send from: {why}.")


class DomainNotVerified(InvalidInput):
    """Sending from a registered domain whose DNS records are not (or no
    longer) right, while `delivery.allow_unverified_domains` is off."""

    code = "domain_not_verified"

    def __init__(self, name: str, status: str) -> None:
        super().__init__(
            f"The sending domain {name!r} is {status}, not verified: publish the DNS records "
            "GET /v1/domains/{id} lists, then POST /v1/domains/{id}/verify."
        )


class UnknownSendingDomain(InvalidInput):
    code = "unknown_sending_domain"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"{name[:300]!r} is not a sending domain of this workspace (nor a subdomain of "
            "one): register it with POST /v1/domains and publish its DNS records."
        )


# --- the send API (messages)


class MessageNotFound(NotFound):
    code = "message_not_found"

    def __init__(self, message_id: uuid.UUID | str) -> None:
        super().__init__(f"No message {message_id} in this workspace.")


class MessageNotCaptured(NotFound):
    code = "message_not_captured"

    def __init__(self, message_id: uuid.UUID | str) -> None:
        super().__init__(
            f"Message {message_id} has no captured copy: only messages sent through the "
            "capture transport (no SMTP relay configured) are kept."
        )


class InvalidMessage(InvalidInput):
    """A send request the schema allows but the rules refuse; `code` says
    which rule (content_required, from_required, invalid_address ...)."""

    code = "invalid_message"

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message, code=code)


class InvalidRecipientAddress(InvalidInput):
    code = "invalid_address"

    def __init__(self, field: str, address: str, why: str) -> None:
        super().__init__(f"{field}: {address[:320]!r} is not an address we can send to: {why}.")


class RecipientSuppressed(InvalidInput):
    code = "recipient_suppressed"

    def __init__(self, field: str, address: str, reason: str) -> None:
        super().__init__(
            f"{field}: {address} is on the workspace's suppression list ({reason}); "
            "nothing was queued."
        )


class HeaderInjectionRefused(InvalidInput):
    code = "header_injection"

    def __init__(self, field: str) -> None:
        super().__init__(
            f"{field}: CR, LF and NUL are not allowed in a header name or value "
            "(they would let the value write headers of its own)."
        )


class ReservedHeader(InvalidInput):
    code = "reserved_header"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"headers: {name[:100]!r} is written by Sendstream itself and cannot be given."
        )


class AttachmentTooLarge(InvalidInput):
    code = "attachment_too_large"

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} is {size} bytes; the limit is {limit} bytes.")
