"""Errors of the IMAP bounce mailboxes, each with its stable problem+json `code`."""

from __future__ import annotations

import uuid

from sendstream.core.errors import InvalidInput, NotFound


class ImapMailboxNotFound(NotFound):
    code = "bounce_mailbox_not_found"

    def __init__(self, mailbox_id: uuid.UUID | str) -> None:
        super().__init__(f"No bounce mailbox {mailbox_id} in this workspace.")


class InvalidImapMailbox(InvalidInput):
    """Settings that cannot work together (auth `xoauth2` without any token,
    action `move` to the folder being read ...)."""

    code = "invalid_bounce_mailbox"

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.errors = [{"location": f"body.{field}", "message": why}]
