"""Structured logs: one JSON object per line, with the request id (or job id)
bound through contextvars so every line of one request carries it."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from sendstream.core.settings import get_settings

_configured = False


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is at the time of writing, so a stream
    swapped after configuration (CLI test runners) is followed, and a closed
    one is never kept."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_CURRENT_STDERR: Any = _CurrentStderr()


def configure_logging(*, force: bool = False) -> None:
    global _configured
    if _configured and not force:
        return
    settings = get_settings().log
    level = logging.getLevelName(settings.level.upper())
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if settings.format == "json"
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=_CURRENT_STDERR),
        cache_logger_on_first_use=True,
    )
    # Libraries that log through the stdlib (uvicorn, alembic) go through the
    # same renderer so an operator reads one format.
    handler = logging.StreamHandler(_CURRENT_STDERR)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Access lines are written by our own middleware, with the request id.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    _configured = True


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
