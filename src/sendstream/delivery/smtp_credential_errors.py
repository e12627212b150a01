"""Errors of SMTP credentials (the submission relay's logins), each with its
stable problem+json `code`."""

from __future__ import annotations

from collections.abc import Sequence

from sendstream.core.errors import Conflict, InvalidInput, NotFound


class SmtpCredentialNotFound(NotFound):
    code = "smtp_credential_not_found"

    def __init__(self, ref: str) -> None:
        super().__init__(f"No SMTP credential {ref} in this workspace.")


class SmtpUsernameTaken(Conflict):
    code = "smtp_username_taken"

    def __init__(self, username: str) -> None:
        super().__init__(
            f"The SMTP username {username!r} is taken; choose another or leave `username` "
            "out to get a generated one."
        )


class InvalidSmtpCredential(InvalidInput):
    """A create request the schema allows but the rules refuse; `code` says which."""

    code = "invalid_smtp_credential"

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message, code=code)


class UnknownSmtpScope(InvalidInput):
    code = "unknown_scope"

    def __init__(self, unknown: Sequence[str], valid: Sequence[str]) -> None:
        super().__init__(
            f"scopes: {', '.join(unknown)} cannot be held by an SMTP credential; "
            f"valid scopes are {', '.join(valid)}.",
            errors=[
                {"location": "body.scopes", "message": f"not an SMTP scope: {s}"} for s in unknown
            ],
        )
