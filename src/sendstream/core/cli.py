"""Helpers every CLI command shares: a database session at the edge, JSON or
rich output, and errors printed as one clear line with a non-zero exit."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from sendstream.core.db import create_database, install_database
from sendstream.core.errors import SendstreamError
from sendstream.core.logging import configure_logging

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)


def run_async(fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run one command body against the configured database; SendstreamErrors
    become a one-line message and exit code 1, not a traceback."""

    async def main() -> T:
        db = create_database()
        install_database(db)
        try:
            return await fn()
        finally:
            await db.dispose()
            install_database(None)

    configure_logging()
    try:
        return asyncio.run(main())
    except SendstreamError as exc:
        err_console.print(f"[red]error[/red] ({exc.code}): {exc.message}")
        raise typer.Exit(1) from None


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str, indent=2) + "\n")


AsyncBody = Callable[[], Awaitable[None]]


async def write_chunks(chunks: AsyncIterator[bytes], output: Path | None) -> int:
    """Write a streamed export to `output`, or to standard output when it is
    None; the number of bytes written."""
    written = 0
    target = output.open("wb") if output else sys.stdout.buffer
    try:
        async for data in chunks:
            target.write(data)
            written += len(data)
    finally:
        if output:
            target.close()
        else:
            target.flush()
    return written
