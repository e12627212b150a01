"""Errors of the workspaces domain, each with its stable problem+json `code`."""

from __future__ import annotations

from collections.abc import Sequence

from sendstream.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated

# RFC 9110: a 401 names the scheme the client should use.
_BEARER = {"WWW-Authenticate": "Bearer"}


class MissingApiKey(Unauthenticated):
    code = "missing_api_key"

    def __init__(self) -> None:
        super().__init__(
            "This endpoint needs an API key: send `Authorization: Bearer <key>`.",
            headers=_BEARER,
        )


class InvalidApiKey(Unauthenticated):
    code = "invalid_api_key"

    def __init__(self) -> None:
        super().__init__(
            "The API key is not valid: check it was copied whole (ss_<prefix>_<secret>).",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


class ApiKeyRevoked(Unauthenticated):
    code = "api_key_revoked"

    def __init__(self, prefix: str) -> None:
        super().__init__(
            f"The API key {prefix} has been revoked; create a new one.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


class ApiKeyExpired(Unauthenticated):
    code = "api_key_expired"

    def __init__(self, prefix: str) -> None:
        super().__init__(
            f"The API key {prefix} has expired; create a new one.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


class MissingScope(Forbidden):
    code = "missing_scope"

    def __init__(self, scope: str) -> None:
        super().__init__(f"This API key lacks the `{scope}` scope this request needs.")
        self.scope = scope


class ScopeEscalation(Forbidden):
    code = "scope_escalation"

    def __init__(self, scopes: Sequence[str]) -> None:
        names = ", ".join(scopes)
        super().__init__(
            f"A key cannot grant scopes its creator lacks: {names}.",
            errors=[{"location": "body.scopes", "message": f"not held: {s}"} for s in scopes],
        )


class UnknownScope(InvalidInput):
    code = "unknown_scope"

    def __init__(self, unknown: Sequence[str], valid: Sequence[str]) -> None:
        super().__init__(
            f"scopes: unknown scope(s) {', '.join(unknown)}; valid scopes are {', '.join(valid)}.",
            errors=[
                {"location": "body.scopes", "message": f"unknown scope: {s}", "valid": list(valid)}
                for s in unknown
            ],
        )


class WorkspaceNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"No workspace {ref}.")


class WorkspaceExists(Conflict):
    code = "workspace_exists"

    def __init__(self, slug: str) -> None:
        super().__init__(f"A workspace with slug {slug!r} already exists.")


class InvalidSlug(InvalidInput):
    code = "invalid_slug"

    def __init__(self, slug: str) -> None:
        super().__init__(
            f"slug: {slug!r} is not a valid slug: use 1-63 lower-case letters, digits and "
            "hyphens, starting and ending with a letter or digit."
        )


class UserNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"No user {ref} in this workspace.")


class UserExists(Conflict):
    code = "user_exists"

    def __init__(self, email: str) -> None:
        super().__init__(f"A user with email {email!r} already exists in this workspace.")


class LastOwner(Conflict):
    code = "last_owner"

    def __init__(self) -> None:
        super().__init__(
            "This is the workspace's last active owner; make another user owner first."
        )


class ApiKeyNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"No API key {ref} in this workspace.")


class InvalidExpiry(InvalidInput):
    code = "invalid_expiry"

    def __init__(self) -> None:
        super().__init__("expires_at: must be in the future.")
