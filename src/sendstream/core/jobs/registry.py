"""Job kinds: the `@job("domain.verb")` decorator and the lookup the worker uses.

A kind's settings (attempt limit, timeout, priority) live beside its handler,
so the code that knows what a job does also decides how hard to retry it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


class Retry(Exception):
    """Raised by a handler to run the job again after `after` seconds instead of
    the computed backoff (a remote asked us to wait). The attempt still counts,
    so a job cannot postpone itself forever past its attempt limit."""

    def __init__(self, after: float, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.after = max(0.0, after)
        self.reason = reason


class Cancel(Exception):
    """Raised by a handler when the job has become pointless (its subject was
    deleted): the job ends `cancelled`, never retried."""


@dataclass(frozen=True, slots=True)
class JobInfo:
    id: int
    kind: str
    payload: dict[str, Any]
    # 1 on the first run; the attempt being made now.
    attempt: int
    max_attempts: int
    workspace_id: uuid.UUID | None


@dataclass(slots=True)
class JobContext:
    """What a handler receives. `session` is opened on first use; when the
    handler used it, the runner commits it in the same transaction that marks
    the job succeeded, so the handler's writes and the job's completion land
    together or not at all."""

    job: JobInfo
    _open_session: Callable[[], AsyncSession]
    _session: AsyncSession | None = field(default=None)

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            self._session = self._open_session()
        return self._session

    @property
    def session_used(self) -> AsyncSession | None:
        return self._session


Handler = Callable[[JobContext], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class JobKind:
    name: str
    handler: Handler
    # None: `settings.jobs.default_max_attempts`.
    max_attempts: int | None
    # Seconds one attempt may run before it is failed (and retried); None: no limit.
    timeout: float | None
    # Lower runs first; used when `enqueue` is not given a priority.
    priority: int


_kinds: dict[str, JobKind] = {}


def job(
    kind: str,
    *,
    max_attempts: int | None = None,
    timeout: float | None = None,
    priority: int = 100,
) -> Callable[[Handler], Handler]:
    """Register `handler` as the code that runs jobs of `kind` (named
    `domain.verb`). Registering a kind twice with a different handler is a bug
    (two modules claiming one name) and raises."""
    if max_attempts is not None and max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")

    def register(handler: Handler) -> Handler:
        existing = _kinds.get(kind)
        if existing is not None and existing.handler is not handler:
            same_place = (
                existing.handler.__module__ == handler.__module__
                and existing.handler.__qualname__ == handler.__qualname__
            )
            if not same_place:
                raise ValueError(f"job kind {kind!r} is already registered by {existing.handler!r}")
        _kinds[kind] = JobKind(kind, handler, max_attempts, timeout, priority)
        return handler

    return register


def find_kind(kind: str) -> JobKind | None:
    return _kinds.get(kind)


def registered_kinds() -> list[str]:
    return sorted(_kinds)


# --- housekeeping

Cleanup = Callable[["AsyncSession"], Awaitable[int]]
_cleanups: dict[str, Cleanup] = {}


def cleanup(name: str) -> Callable[[Cleanup], Cleanup]:
    """Register a domain's housekeeping (deleting what is past its retention):
    every worker runs each one about once a minute in its own transaction.
    It returns how many rows it removed, and removes a bounded slice per call
    so one run never holds locks for long."""

    def register(fn: Cleanup) -> Cleanup:
        _cleanups[name] = fn
        return fn

    return register


def registered_cleanups() -> dict[str, Cleanup]:
    return dict(_cleanups)
