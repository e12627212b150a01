"""`sendstream bounces classify FILE...`: how the classifier reads a message,
so an operator can check a puzzling bounce by hand. Pure: no database.

One JSON line per recipient of each file: `file`, `recipient`, `kind`,
`is_bounce`, `hard`, `reason`, `status`, `diagnostic`. A file that cannot be
read is reported on stderr; the others are still classified, and the
exit code is 1."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from sendstream.bounces.parse import classify_message

bounces_app = typer.Typer(
    help="Bounces, complaints and auto-replies: check how a message is classified.",
    no_args_is_help=True,
)


@bounces_app.command("classify")
def classify(
    files: Annotated[
        list[Path], typer.Argument(help="Message files (.eml, one whole message each).")
    ],
) -> None:
    """Print one JSON line per recipient of each message file."""
    failed = 0
    out = sys.stdout
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            failed += 1
            sys.stderr.write(f"error: {path}: cannot read: {exc.strerror or exc}\n")
            continue
        report = classify_message(raw)
        for verdict in report.verdicts:
            line = {
                "file": str(path),
                "recipient": verdict.recipient,
                "kind": verdict.kind,
                "is_bounce": verdict.kind == "bounce",
                "hard": verdict.hard,
                "reason": verdict.reason.value,
                "status": verdict.status,
                "diagnostic": verdict.diagnostic,
            }
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    out.flush()
    if failed:
        raise typer.Exit(1)
