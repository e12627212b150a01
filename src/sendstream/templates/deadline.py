"""The render time limit: a deadline per render, in a context variable so
concurrent renders (threads, tasks) each keep their own. Guards in the
sandbox call `check_deadline`; code of ours that may be slow once (loading
a locale) runs `outside_deadline`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class LimitExceeded(Exception):
    """A render went past one of its limits (raised inside Jinja)."""


_DEADLINE: ContextVar[float | None] = ContextVar("sendstream_template_deadline", default=None)


@contextmanager
def deadline(timeout_ms: int) -> Iterator[None]:
    """Every guard in this block fails once `timeout_ms` have passed."""
    token = _DEADLINE.set(time.monotonic() + timeout_ms / 1000)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


@contextmanager
def outside_deadline() -> Iterator[None]:
    """Work of ours rather than of the template (loading a locale's data, once
    per process): the time it takes is added back to the render's limit, so
    the first render in a new locale is not refused for being slow."""
    limit = _DEADLINE.get()
    started = time.monotonic()
    try:
        yield
    finally:
        if limit is not None:
            _DEADLINE.set(limit + (time.monotonic() - started))


def check_deadline() -> None:
    limit = _DEADLINE.get()
    if limit is not None and time.monotonic() > limit:
        raise LimitExceeded("the render took longer than its time limit")
