"""The event type catalogue: it names every type the code emits (found by
scanning the source, so a new event cannot go undocumented), docs/webhooks.md
shows each one with exactly the catalogue's example, and patterns and
filters match as documented."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from sendstream.webhooks.catalogue import (
    EVENT_TYPES,
    example_payload,
    matches,
    passes_filters,
    validate_patterns,
)

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "sendstream"
DOCS = ROOT / "docs" / "webhooks.md"
EVENT_TYPE = re.compile(r"^[a-z][a-z_]*\.[a-z][a-z_]*$")
# Event types written by SQL (`write_events_from_select`): quoted in a
# statement that names a `type` column; `'message.' || status` is a prefix.
SQL_TYPE = re.compile(r"'([a-z][a-z_]*\.[a-z_]*)'")


def _constants(node: ast.AST) -> list[str]:
    """String constants a type expression can evaluate to (a literal, either
    branch of a conditional)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _constants(node.body) + _constants(node.orelse)
    return []


def _prefix(node: ast.AST) -> str | None:
    """The literal start of an f-string type (`f"contact_import.{status}"`)."""
    if isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def _type_argument(call: ast.Call) -> ast.AST | None:
    for keyword in call.keywords:
        if keyword.arg == "type":
            return keyword.value
    return call.args[2] if len(call.args) > 2 else None


def _is_emit(call: ast.Call) -> bool:
    func = call.func
    return (isinstance(func, ast.Name) and func.id == "emit") or (
        isinstance(func, ast.Attribute) and func.attr == "emit"
    )


def emitted_types() -> tuple[set[str], set[str]]:
    """(exact types, type prefixes) emitted anywhere in the source."""
    exact: set[str] = set()
    prefixes: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        # Values assigned to names anywhere in the module, for `emit(..., event, ...)`.
        assigned: dict[str, list[str]] = {}
        # First items of tuples such as `("contact.created", id, data)`, which
        # code collects and emits in a loop.
        tuple_heads: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assigned.setdefault(target.id, []).extend(_constants(node.value))
            elif isinstance(node, ast.Tuple) and node.elts:
                tuple_heads.update(c for c in _constants(node.elts[0]) if EVENT_TYPE.match(c))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                if re.search(r"\bAS type\b", node.value):
                    for found in SQL_TYPE.findall(node.value):
                        (prefixes if found.endswith(".") else exact).add(found)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and _is_emit(node)):
                continue
            argument = _type_argument(node)
            if argument is None:
                continue
            exact.update(_constants(argument))
            if (prefix := _prefix(argument)) is not None:
                prefixes.add(prefix)
            if isinstance(argument, ast.Name):
                values = [v for v in assigned.get(argument.id, []) if EVENT_TYPE.match(v)]
                exact.update(values or tuple_heads)
    return exact, prefixes


class TestCatalogueCoversTheSource:
    def test_the_scan_sees_events_of_every_kind_of_emitter(self) -> None:
        # A scanner that found nothing would pass the test below vacuously.
        exact, prefixes = emitted_types()
        assert {
            "contact.created",  # a tuple collected then emitted in a loop
            "contact.subscribed",  # a conditional assigned to a name, and SQL
            "message.queued",  # a literal argument
            "message.opened",  # a conditional argument
            "contact.updated",  # SQL CASE in an import
        } <= exact
        assert {"message.", "contact_import."} <= prefixes

    def test_every_emitted_type_is_catalogued(self) -> None:
        exact, _ = emitted_types()

        missing = sorted(exact - set(EVENT_TYPES))

        assert not missing, f"emitted but not in webhooks/catalogue.py: {missing}"

    @pytest.mark.parametrize(
        ("prefix", "expected"),
        [
            ("message.", {"message.sent", "message.deferred", "message.failed"}),
            ("contact_import.", {"contact_import.completed", "contact_import.failed"}),
        ],
    )
    def test_types_built_from_a_status_are_catalogued_for_each_status(
        self, prefix: str, expected: set[str]
    ) -> None:
        _, prefixes = emitted_types()
        assert prefix in prefixes
        assert expected <= set(EVENT_TYPES)

    def test_every_entry_has_a_description_and_a_json_example(self) -> None:
        for name, info in EVENT_TYPES.items():
            assert EVENT_TYPE.match(name), name
            assert info.description.endswith("."), name
            assert json.loads(json.dumps(info.example)) == info.example


class TestDocsShowTheCatalogue:
    def test_each_type_has_a_heading_and_the_catalogue_example(self) -> None:
        docs = DOCS.read_text(encoding="utf-8")
        for name in EVENT_TYPES:
            section = re.search(
                rf"^### `{re.escape(name)}`\n(.*?)```json\n(.*?)```", docs, re.M | re.S
            )
            assert section is not None, f"docs/webhooks.md has no section for {name}"
            assert json.loads(section.group(2)) == example_payload(name), name

    def test_the_docs_list_no_type_the_catalogue_does_not_have(self) -> None:
        documented = set(
            re.findall(r"^### `([a-z_]+\.[a-z_]+)`$", DOCS.read_text(encoding="utf-8"), re.M)
        )
        assert documented == set(EVENT_TYPES)


class TestPatterns:
    @pytest.mark.parametrize(
        ("patterns", "event_type", "expected"),
        [
            (["message.sent"], "message.sent", True),
            (["message.sent"], "message.sent_late", False),
            (["message.*"], "message.opened", True),
            (["message.*"], "messages.opened", False),
            (["contact.*"], "contact_import.completed", False),
            (["*"], "template.created", True),
            ([], "template.created", False),
            (["field.*", "domain.verified"], "domain.verified", True),
        ],
    )
    def test_matches(self, patterns: list[str], event_type: str, expected: bool) -> None:
        assert matches(patterns, event_type) is expected

    def test_validation_keeps_order_and_drops_repeats(self) -> None:
        assert validate_patterns(["message.*", "contact.created", "message.*"]) == [
            "message.*",
            "contact.created",
        ]

    @pytest.mark.parametrize("bad", ["message.exploded", "nothing.*", "message*", "*.sent", ""])
    def test_validation_refuses_what_matches_no_type(self, bad: str) -> None:
        with pytest.raises(Exception, match="event_types") as raised:
            validate_patterns(["message.sent", bad])
        assert getattr(raised.value, "code", None) == "unknown_event_type"


class TestFilters:
    def test_no_filters_pass_everything(self) -> None:
        assert passes_filters({}, {"stream": "marketing"})

    def test_each_filter_given_must_intersect(self) -> None:
        data = {"stream": "marketing", "tags": ["vip", "eu"], "list_id": "l1"}

        assert passes_filters({"streams": ["marketing"], "tags": ["eu"]}, data)
        assert not passes_filters({"streams": ["transactional"], "tags": ["eu"]}, data)
        assert passes_filters({"list_ids": ["l2", "l1"]}, data)
        assert not passes_filters({"tags": ["us"]}, data)

    def test_an_event_without_the_field_does_not_pass_its_filter(self) -> None:
        assert not passes_filters({"streams": ["marketing"]}, {"id": "c1"})
        assert not passes_filters({"list_ids": ["l1"]}, {"list_id": None})
