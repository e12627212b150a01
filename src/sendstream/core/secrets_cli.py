"""`sendstream secrets`: the state of secrets at rest and their rotation to a
new master key (docs/operations.md, "Rotating the master key")."""

from __future__ import annotations

import typer
from rich.table import Table

from sendstream.core import secrets_rotation
from sendstream.core.cli import console, print_json, run_async
from sendstream.core.db import get_database
from sendstream.core.secrets_rotation import ColumnReport

secrets_app = typer.Typer(help="Secrets at rest and master-key rotation.", no_args_is_help=True)


def _show(reports: list[ColumnReport], as_json: bool, title: str) -> None:
    if as_json:
        print_json([vars(r) for r in reports])
        return
    table = Table(title=title)
    for name in ("table", "column", "secrets", "under an older key", "rotated"):
        table.add_column(name)
    for r in reports:
        table.add_row(r.table, r.column, str(r.secrets), str(r.outdated), str(r.rotated))
    console.print(table)


@secrets_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Count the stored secrets and those still encrypted under an older master key."""

    async def body() -> list[ColumnReport]:
        return await secrets_rotation.status(get_database())

    reports = run_async(body)
    _show(reports, as_json, "Secrets at rest")
    if not as_json and any(r.outdated for r in reports):
        console.print("Run `sendstream secrets rotate` before dropping an old key.")


@secrets_app.command("rotate")
def rotate(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Re-encrypt every secret under the current master key (SENDSTREAM_SECURITY__MASTER_KEY),
    reading old ones with SENDSTREAM_SECURITY__PREVIOUS_KEYS. Safe to stop and run again."""

    async def body() -> list[ColumnReport]:
        return await secrets_rotation.rotate(get_database())

    reports = run_async(body)
    _show(reports, as_json, "Secrets rotated")
    if not as_json:
        console.print(
            f"{sum(r.rotated for r in reports)} secrets re-encrypted; "
            "every secret is now under the current master key."
        )
