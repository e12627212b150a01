"""The fixed set of API key scopes. `admin` implies every other scope.

Adding a scope is a code change (and a line in docs/api.md), never data: a
key can only hold scopes from this list."""

from __future__ import annotations

from collections.abc import Iterable

from sendstream.workspaces.errors import UnknownScope

ADMIN = "admin"

SCOPES: tuple[str, ...] = (
    "contacts:read",
    "contacts:write",
    "messages:send",
    "messages:read",
    "templates:read",
    "templates:write",
    "domains:read",
    "domains:write",
    "suppressions:read",
    "suppressions:write",
    "webhooks:read",
    "webhooks:write",
    "events:write",
    "events:read",
    "jobs:read",
    "jobs:write",
    "audit:read",
    "keys:read",
    "keys:write",
    "users:read",
    "users:write",
    "inbound:read",
    "inbound:write",
    ADMIN,
)
_KNOWN = frozenset(SCOPES)


def is_known(scope: str) -> bool:
    return scope in _KNOWN


def validate_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes de-duplicated in the documented order, or `UnknownScope`."""
    requested = list(scopes)
    unknown = sorted({s for s in requested if s not in _KNOWN})
    if unknown:
        raise UnknownScope(unknown, SCOPES)
    wanted = set(requested)
    return [s for s in SCOPES if s in wanted]


def grants(held: Iterable[str], scope: str) -> bool:
    held_set = set(held)
    return ADMIN in held_set or scope in held_set


def ungranted(held: Iterable[str], requested: Iterable[str]) -> list[str]:
    """The scopes in `requested` that `held` does not cover."""
    held_set = frozenset(held)
    return [s for s in requested if not grants(held_set, s)]
