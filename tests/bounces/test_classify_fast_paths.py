"""The classifier's fast paths give the answers of the plain forms they
replace (bench/bounce_parse.py measures the speed; these check that speed
changed nothing):

- every diagnostic rule's gate words are necessary for its pattern, so a
  rule whose gate fails could not have matched;
- `addresses` is `ADDRESS_RE.findall`, `find_addresses` is the
  `[...]{1,256}$` look-back it replaced;
- the regexes rewritten for `re`'s sake (look-behinds after the first
  digit, possessive runs, substring gates) match where the originals did.
"""

from __future__ import annotations

import re
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sendstream.bounces import classify, mta_formats, parse
from sendstream.bounces.mta_formats import ADDRESS_RE, addresses, find_addresses

FUZZ = settings(max_examples=400, deadline=None)

# ---------------------------------------------------------------------------
# Gates: the lower-case strings of which every match of a pattern holds one.


def _exact(seq: Any) -> list[str] | None:
    """The finite set of strings `seq` can match (lower case), or None."""
    out = [""]
    for op, av in seq:
        if op is sre.LITERAL:
            opts = [chr(av).lower()]
        elif op is sre.SUBPATTERN:
            found = _exact(av[-1])
            if found is None:
                return None
            opts = found
        elif op is sre.BRANCH:
            opts = []
            for branch in av[1]:
                found = _exact(branch)
                if found is None:
                    return None
                opts += found
        elif op in (sre.ASSERT, sre.ASSERT_NOT, sre.AT):
            opts = [""]  # zero-width: the real matches are a subset
        elif op is sre.IN and all(o is sre.LITERAL for o, _ in av):
            opts = sorted({chr(a).lower() for _, a in av})
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and av[0] == 0 and av[1] == 1:
            found = _exact(av[2])
            if found is None:
                return None
            opts = ["", *found]
        else:
            return None
        out = [a + b for a in out for b in opts]
        if len(out) > 64:
            return None
    return out


def _covered(seq: Any, gate: tuple[str, ...]) -> bool:
    """Every string `seq` matches contains one of `gate`: some run of its
    elements matches a finite set of strings that each hold a gate word, or
    one element is covered (an alternation when all its branches are)."""
    items = list(seq)
    for i in range(len(items)):
        for j in range(i + 1, len(items) + 1):
            strings = _exact(items[i:j])
            if strings is None:
                break
            if all(any(word in s for word in gate) for s in strings):
                return True
    for op, av in items:
        if op is sre.SUBPATTERN and _covered(av[-1], gate):
            return True
        if op is sre.BRANCH and all(_covered(branch, gate) for branch in av[1]):
            return True
        if (
            op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)
            and av[0] >= 1
            and _covered(av[2], gate)
        ):
            return True
    return False


def _gate_is_necessary(gate: tuple[str, ...], pattern: str) -> bool:
    return _covered(sre_parse.parse(pattern, re.I), gate)


RULES = [
    (reason.value, gate, pattern.pattern)
    for reason, _, rules in classify._STRONG
    for gate, pattern in rules
]


@pytest.mark.parametrize("table", classify._STRONG, ids=lambda t: str(t[0]))
def test_every_table_gate_covers_its_rules(table: Any) -> None:
    _, words, rules = table
    for gate, _ in rules:
        assert all(any(word in rule_word for word in words) for rule_word in gate)


@pytest.mark.parametrize(("reason", "gate", "pattern"), RULES)
def test_every_gate_is_necessary(reason: str, gate: tuple[str, ...], pattern: str) -> None:
    assert all(word == word.lower() and word for word in gate)
    assert _gate_is_necessary(gate, pattern), (reason, gate, pattern)


def test_a_wrong_gate_is_caught() -> None:
    assert not _gate_is_necessary(("mailbox",), r"mail ?box (?:is )?full")
    assert not _gate_is_necessary(("quota",), r"over quota|mailbox full")
    assert _gate_is_necessary(("full",), r"mail ?box (?:is )?full")
    assert _gate_is_necessary(("quota", "full"), r"over quota|mailbox full")


# ---------------------------------------------------------------------------
# Addresses.

TEXTS = st.text(alphabet="ab.@-_+1Z <>:;\n\té", max_size=60)


@FUZZ
@given(TEXTS)
def test_addresses_is_address_re_findall(text: str) -> None:
    assert addresses(text) == ADDRESS_RE.findall(text)


_LOCAL_TAIL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,256}$")


def _find_addresses_reference(text: str) -> list[tuple[int, int, str]]:
    found = []
    at = text.find("@")
    while at >= 0:
        domain = mta_formats._DOMAIN_HEAD.match(text, at + 1)
        if domain is not None:
            local = _LOCAL_TAIL.search(text, max(0, at - 256), at)
            if local is not None:
                name = local.group(0).strip(".")
                if name:
                    found.append((at - len(name), domain.end(), f"{name}@{domain.group(0)}"))
        at = text.find("@", at + 1)
    return found


@FUZZ
@given(TEXTS)
def test_find_addresses_is_the_look_back_it_replaced(text: str) -> None:
    assert find_addresses(text) == _find_addresses_reference(text)


def test_long_local_parts_are_cut_at_256() -> None:
    text = "x" * 300 + "@example.com and a.." + "y" * 10 + "@example.org"
    assert find_addresses(text) == _find_addresses_reference(text)
    assert addresses(text) == ADDRESS_RE.findall(text)


# ---------------------------------------------------------------------------
# Rewritten regexes against their plain forms.

_STATUS_PLAIN = re.compile(r"(?<![\w.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
_REPLY_PLAIN = re.compile(r"(?<![\w.#/:-])([245][0-5]\d)(?:[ -]|$)", re.M)
_FAIL_STATUS_PLAIN = re.compile(r"(?<![\w.])[45]\.\d{1,3}\.\d{1,3}(?!\.?\d)")
_FAIL_REPLY_PLAIN = re.compile(r"(?<![\w.#/:-])([45][0-5]\d)(?:[ -]|$)", re.M)
CODES = st.text(alphabet="245 .0-1a\n#:/9", max_size=30)


@FUZZ
@given(CODES)
def test_status_and_reply_regexes_match_their_plain_forms(text: str) -> None:
    for plain, fast in (
        (_STATUS_PLAIN, classify.STATUS_RE),
        (_REPLY_PLAIN, classify.REPLY_RE),
        (_FAIL_STATUS_PLAIN, mta_formats.FAIL_STATUS_RE),
        (_FAIL_REPLY_PLAIN, mta_formats.FAIL_REPLY_RE),
    ):
        want = [(m.span(), m.groups()) for m in plain.finditer(text)]
        assert [(m.span(), m.groups()) for m in fast.finditer(text)] == want


_CUT_PLAIN = re.compile(
    r"^(?:[-=*_ \t]*(?:below this line is a copy of the message|"
    r"this is a copy of the message|original message follows|"
    r"the header of the original message is following|returned message|"
    r"original message headers?|headers of the original message|copy of the original message|"
    r"below is a copy of the original message|possibly truncated original message follows|"
    r"-+ ?original message ?-+|undelivered message headers?)"
    r"|(?P<header>(?:return-path|received|dkim-signature|x-original-to|delivered-to):\s))",
    re.I | re.M,
)
CUT_PIECES = st.lists(
    st.sampled_from(
        [
            "-",
            "---",
            " ",
            "\t",
            "=",
            "*",
            "_",
            "\n",
            "x",
            "Original Message",
            "original message follows",
            "returned message",
            "Received:",
            " ",
            "undelivered message header",
        ]
    ),
    max_size=14,
).map("".join)


@FUZZ
@given(CUT_PIECES)
def test_cut_regex_matches_its_plain_form(text: str) -> None:
    plain, fast = _CUT_PLAIN.search(text), mta_formats._CUT.search(text)
    assert (plain is None) == (fast is None)
    if plain is not None and fast is not None:
        assert (fast.start(), fast.group("header")) == (plain.start(), plain.group("header"))


_NOT_RECIPIENT_PLAIN = re.compile(
    r"^\s*(?:[>\s]*)?(?:from|sender|reply-to|return-path|message-id|in-reply-to|references|"
    r"envelope-from|original-envelope-id|x-[\w-]+|received|resent-from|errors-to|"
    r"original-mail-from|x-postfix-sender)\s*:|mail from\s*:|\bmail from:<|envelope sender",
    re.I,
)
LINE_PIECES = st.lists(
    st.sampled_from(
        [
            *(" ", ">", "\t", "From", "MAIL FROM", "mail from", ":", "<", "X-Foo"),
            *("envelope", " sender", "Received", "a@b.com", "text", "\x0b"),
            "\u017f",  # long s: `re.I` folds it to "s", str.lower() does not
            "\u0131",  # dotless i, the same for "i"
        ]
    ),
    max_size=8,
).map("".join)


@FUZZ
@given(LINE_PIECES)
def test_not_recipient_line_matches_its_plain_form(line: str) -> None:
    assert mta_formats._not_recipient_line(line) == bool(_NOT_RECIPIENT_PLAIN.search(line))


@FUZZ
@given(st.text(alphabet="bounces+BOUNCES@.x-=_1 <>\n\u017f", max_size=80))
def test_verp_search_matches_the_case_insensitive_regex(text: str) -> None:
    paths = parse._Paths(())
    paths.verp_from(text)
    want: dict[str, str] = {}
    if "bounces+" in text.lower():
        for address in parse._VERP_RE.findall(text):
            want.setdefault(address.lower(), address)
    assert paths.items == want
