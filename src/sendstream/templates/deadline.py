"""The render time limit: a deadline per render, in a context variable so
concurrent renders (threads, tasks) each keep their own. Guards in the
sandbox call `check_deadline`; code of ours that may be slow once (loading
a locale) runs `outside_deadline`.

The limit is CPU time of the rendering thread (`time.thread_time`), not the
wall clock: a render runs synchronously in one thread, so its CPU time is
what the template costs, while the wall clock also counts every other process
on a busy machine. With the wall clock, a worker sharing two cores with
PostgreSQL and a profiler failed messages whose template was fine."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class LimitExceeded(Exception):
    """A render went past one of its limits (raised inside Jinja)."""


# Guards run hundreds of times a render (every attribute, call and output
# chunk); reading the clock on each was a fifth of a render. The clock is
# read every `_CLOCK_EVERY` guards: between two reads a template can only run
# that many bounded steps.
_CLOCK_EVERY = 32


class _Budget:
    __slots__ = ("countdown", "cpu_started", "limit", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.limit = time.monotonic() + seconds
        # The thread's CPU clock is a system call (several microseconds on a
        # virtual machine), so it is read only when the wall clock says the
        # limit may have passed; until then CPU time <= wall time proves not.
        self.cpu_started = time.thread_time()
        self.countdown = _CLOCK_EVERY


_BUDGET: ContextVar[_Budget | None] = ContextVar("sendstream_template_deadline", default=None)


@contextmanager
def deadline(timeout_ms: int) -> Iterator[None]:
    """Every guard in this block fails once the render has used `timeout_ms`
    of CPU time."""
    token = _BUDGET.set(_Budget(timeout_ms / 1000))
    try:
        yield
    finally:
        _BUDGET.reset(token)


@contextmanager
def outside_deadline() -> Iterator[None]:
    """Work of ours rather than of the template (loading a locale's data, once
    per process): the time it takes is added back to the render's limit, so
    the first render in a new locale is not refused for being slow."""
    budget = _BUDGET.get()
    started = time.monotonic()
    cpu_started = time.thread_time()
    try:
        yield
    finally:
        if budget is not None:
            budget.limit += time.monotonic() - started
            budget.cpu_started += time.thread_time() - cpu_started


def check_deadline() -> None:
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.countdown -= 1
    if budget.countdown > 0:
        return
    budget.countdown = _CLOCK_EVERY
    now = time.monotonic()
    if now <= budget.limit:
        return
    # The wall clock passed the limit; the CPU clock decides. A busy machine
    # only moves the wall-clock mark on by the CPU time still allowed.
    left = budget.seconds - (time.thread_time() - budget.cpu_started)
    if left <= 0:
        raise LimitExceeded("the render took longer than its time limit")
    budget.limit = now + left
