"""`sendstream contacts ...`."""

from __future__ import annotations

import typer

contacts_app = typer.Typer(help="Contacts: import, export, GDPR.", no_args_is_help=True)
