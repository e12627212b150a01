"""Errors of the contacts domain, each with its stable problem+json `code`.

(Several people add to this file: append new classes at the end.)"""

from __future__ import annotations

import uuid

from sendstream.core.errors import Conflict, InvalidInput, NotFound, SendstreamError


class ContactNotFound(NotFound):
    code = "contact_not_found"

    def __init__(self, contact_id: uuid.UUID | str) -> None:
        super().__init__(f"No contact {contact_id} in this workspace.")


class ContactExists(Conflict):
    code = "contact_exists"

    def __init__(self, what: str, contact_id: uuid.UUID) -> None:
        super().__init__(f"Contact {contact_id} already has {what}; update it or upsert instead.")


class ContactErased(Conflict):
    code = "contact_erased"

    def __init__(self) -> None:
        super().__init__(
            "This address was erased at the person's request; it can only come back with an "
            'explicit new opt-in (`"consent": {"explicit_opt_in": true, ...}`).'
        )


class FieldNotFound(NotFound):
    code = "field_not_found"

    def __init__(self, key: str) -> None:
        super().__init__(f"No custom field {key!r} in this workspace.")


class FieldExists(Conflict):
    code = "field_exists"

    def __init__(self, key: str) -> None:
        super().__init__(f"A custom field {key!r} already exists in this workspace.")


class InvalidContact(InvalidInput):
    code = "invalid_contact"


class ListNotFound(NotFound):
    code = "list_not_found"

    def __init__(self, list_id: uuid.UUID | str) -> None:
        super().__init__(f"No list {list_id} in this workspace.")


# --- lists, subscriptions, double opt-in, erasure (helper B)


class ListExists(Conflict):
    code = "list_exists"

    def __init__(self, name: str) -> None:
        super().__init__(f"A list named {name!r} already exists in this workspace.")


class SubscriptionStatusNotSettable(Conflict):
    code = "subscription_status_not_settable"

    def __init__(self, status: str) -> None:
        super().__init__(
            f"status: {status!r} is set only by bounce and complaint handling, never through "
            'the API; set "subscribed" or "unsubscribed".'
        )


class ConfirmationLinkInvalid(NotFound):
    code = "confirmation_link_invalid"

    def __init__(self, why: str) -> None:
        super().__init__(
            f"This confirmation link is not valid ({why}); copy the whole link from the mail, "
            "or subscribe again to get a new one."
        )


class ConfirmationLinkExpired(SendstreamError):
    code = "confirmation_link_expired"
    status = 410
    title = "Gone"

    def __init__(self, expired_at: str) -> None:
        super().__init__(
            f"This confirmation link expired at {expired_at}; subscribe again to get a new one."
        )


class ConfirmationNotPending(Conflict):
    code = "confirmation_not_pending"

    def __init__(self, status: str) -> None:
        super().__init__(
            f"This subscription is {status} now, no longer waiting for confirmation; the link "
            "cannot change it. Subscribe again to get a new link."
        )


class InvalidErasureAddress(InvalidInput):
    code = "invalid_email"

    def __init__(self, why: str) -> None:
        super().__init__(f"email: not an address that can be erased: {why}.")


class ImportNotFound(NotFound):
    code = "import_not_found"

    def __init__(self, import_id: uuid.UUID | str) -> None:
        super().__init__(f"No contact import {import_id} in this workspace.")


class InvalidImportFile(InvalidInput):
    """The file cannot be imported at all (empty, header only, unknown
    columns, bad mapping); nothing was written."""

    code = "invalid_import_file"


class ImportFinished(Conflict):
    code = "import_finished"

    def __init__(self, import_id: uuid.UUID, status: str) -> None:
        super().__init__(f"Contact import {import_id} already ended ({status}); nothing to cancel.")


# --- resumable command-line imports, the suppression list (contacts clean-up)


class ImportNotResumable(Conflict):
    code = "import_not_resumable"

    def __init__(self, import_id: uuid.UUID, why: str) -> None:
        super().__init__(f"Contact import {import_id} cannot be resumed: {why}.")


class ImportFileChanged(Conflict):
    code = "import_file_changed"

    def __init__(self, import_id: uuid.UUID, what: str) -> None:
        super().__init__(
            f"This is not the file contact import {import_id} started with ({what}); resume it "
            "with that same file, or start a new import."
        )


class ResumeOptionsDiffer(InvalidInput):
    code = "resume_options_differ"

    def __init__(self, import_id: uuid.UUID, options: list[str]) -> None:
        super().__init__(
            f"Contact import {import_id} continues with the options it started with; "
            f"{', '.join(options)} differ. Leave them out, or start a new import."
        )


class SuppressionNotFound(NotFound):
    code = "suppression_not_found"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is not on this workspace's suppression list.")


class SuppressionErased(Conflict):
    code = "erased_address"

    def __init__(self) -> None:
        super().__init__(
            "This address was erased at the person's request; its suppression cannot be removed "
            "here. Only an explicit new opt-in through the API lifts it "
            '(`"consent": {"explicit_opt_in": true, ...}` on a contact write).'
        )


class InvalidSuppressionAddress(InvalidInput):
    code = "invalid_email"

    def __init__(self, why: str) -> None:
        super().__init__(f"address: not an email address: {why}.")


class InvalidSuppressionDomain(InvalidInput):
    code = "invalid_domain_name"

    def __init__(self, value: str, why: str) -> None:
        super().__init__(f"domain: {value!r} is not a domain name: {why}.")
