"""Helpers every CLI command shares: a database session at the edge, JSON or
rich output, and errors printed as one clear line with a non-zero exit."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
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
