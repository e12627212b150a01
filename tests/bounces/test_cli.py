"""`sendstream bounces classify FILE...` through the real typer app."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from sendstream.cli import app

CORPUS = Path(__file__).resolve().parent / "corpus"


def test_one_json_line_per_recipient() -> None:
    result = CliRunner().invoke(app, ["bounces", "classify", str(CORPUS / "dsn-multi-postfix.eml")])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["recipient"] for line in lines] == [
        "ada@example.com",
        "bob@example.net",
        "cy@example.org",
    ]
    first = lines[0]
    assert set(first) == {
        "file",
        "recipient",
        "kind",
        "is_bounce",
        "hard",
        "reason",
        "status",
        "diagnostic",
    }
    assert first["is_bounce"] is True
    assert first["hard"] is True
    assert first["reason"] == "user_unknown"
    assert first["status"] == "5.1.1"
    assert lines[2]["kind"] == "delay"
    assert lines[2]["is_bounce"] is False


def test_auto_reply_is_not_a_bounce() -> None:
    result = CliRunner().invoke(app, ["bounces", "classify", str(CORPUS / "auto-outlook.eml")])
    line = json.loads(result.stdout)
    assert (line["is_bounce"], line["kind"], line["hard"]) == (False, "auto_reply", None)


def test_unreadable_file_is_an_error_and_the_others_are_still_classified(tmp_path: Path) -> None:
    missing = tmp_path / "missing.eml"
    good = CORPUS / "qmail--unknown-sendmail.eml"
    result = CliRunner().invoke(app, ["bounces", "classify", str(missing), str(good)])
    assert result.exit_code == 1
    assert "missing.eml" in result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(good)]


def test_binary_junk_file_is_classified_as_other(tmp_path: Path) -> None:
    junk = tmp_path / "junk.eml"
    junk.write_bytes(bytes(range(256)) * 10)
    result = CliRunner().invoke(app, ["bounces", "classify", str(junk)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["kind"] == "other"
