"""From a status code and a remote server's words to a reason and hard/soft.

Two sources, in this order of trust:

1. The diagnostic text, matched against a table of the real wording of the
   common MTAs and mailbox providers. Servers put a generic or wrong code
   on a precise sentence often enough ("552 5.2.2 mailbox full" is a full
   mailbox, not a dead one; "550 5.7.1 ... user unknown" is a dead address;
   Gmail's "4.2.1 ... receiving mail too quickly" is rate limiting), so the
   words win over the code, except for the few codes that name exactly one
   cause (X.4.7 expired, X.7.20-26 authentication).
2. The RFC 3463 enhanced status code (subject.detail), then a few generic
   words ("rejected", "denied") that only say "policy".

`hard` is True only for a permanent (5.x.x) failure whose reason says the
address itself is dead (user unknown, host unknown, suspended), or whose
reason nobody can name; never for a 4.x.x.
"""

from __future__ import annotations

import re
from typing import Final

from sendstream.bounces.verdict import Reason

HARD_REASONS: Final = frozenset({Reason.user_unknown, Reason.host_unknown, Reason.suspended})
# Classified text is cut here: diagnostics are one or two lines, and a
# runaway segment must not cost more than a normal one.
MAX_TEXT = 1000

# An enhanced status code, not a piece of an IP address or version number.
# (The look-behind comes after the first digit, not before it: a pattern
# that starts with a character class lets `re` skip to candidate positions,
# one that starts with a look-behind is tried at every position, 5x slower.)
STATUS_RE: Final = re.compile(r"([245])(?<![\w.][245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
# A three-digit SMTP reply code where a reply starts.
REPLY_RE: Final = re.compile(r"([245](?<![\w.#/:-][245])[0-5]\d)(?:[ -]|$)", re.M)


_Rule = tuple[tuple[str, ...], re.Pattern[str]]
_Table = tuple[Reason, tuple[str, ...], tuple[_Rule, ...]]


def _table(reason: Reason, *rules: tuple[str, str]) -> _Table:
    """A reason's rules, and the table's own gate: the shortest of its
    rules' gate words, enough that each gate word contains one of them
    (none in the text, no rule can match: the table costs a dozen substring
    tests)."""
    words: list[str] = []
    for word in sorted({w for gate, _ in rules for w in gate.split("|")}, key=len):
        if not any(shorter in word for shorter in words):
            words.append(word)
    compiled = tuple((tuple(gate.split("|")), re.compile(pattern, re.I)) for gate, pattern in rules)
    return reason, tuple(words), compiled


# Order matters: the first table with a rule that matches names the reason.
# A rule is (gate, pattern): the gate lists lower-case substrings ("|"
# between them) of which every match of the pattern contains one. Python's
# `re` tries every alternative at every position, so one big alternation
# per table costs ~100 us on a short diagnostic; a substring test per rule
# and a search only where it passes (most patterns then start with a
# literal, which `re` finds with a fast scan) costs a few. Every gate is
# checked against its pattern by tests/bounces/test_classify_fast_paths.py;
# a gate is matched against the lower-cased text.
_STRONG: Final[tuple[_Table, ...]] = (
    _table(
        Reason.rate_limited,
        ("receiving mail ", r"receiving mail (?:too quickly|at a rate)"),
        ("limit", r"rate[- ]?limit"),
        (
            "too many ",
            (
                r"too many (?:messages|mails?|e-?mails|connections|concurrent|sessions|recipients|"
                r"invalid recipients|errors|simultaneous)"
            ),
        ),
        ("too much|too fast", r"too (?:much|fast)"),
        ("throttl", r"throttl"),
        ("unusual rate", r"unusual rate"),
        ("unexpected volume", r"unexpected volume"),
        ("[ts0|[tss0", r"\[ts[s]?0[14]\]"),
        ("sending ", r"sending (?:quota|limit)"),
        (" sending", r"(?:daily|hourly) (?:user |smtp relay )?sending"),
        ("server ", r"server (?:is )?busy"),
        ("slow down", r"slow down"),
        ("exceeded the ", r"exceeded the (?:maximum )?(?:number of )?(?:connections|messages)"),
        ("connection ", r"connection (?:count|limit)"),
        ("rp-00", r"\bRP-00\d"),
        ("please try again later", r"please try again later\W{0,4}\s*\(?(?:rate|limit)"),
    ),
    _table(
        Reason.mailbox_full,
        ("full", r"mail ?box (?:is |was )?(?:currently )?full"),
        (" exceeded | reached ", r"mail ?box (?:has )?(?:exceeded|reached) (?:its|the)"),
        ("full mail", r"full mail ?box"),
        (" quota", r"over (?:the |its )?(?:allowed |storage )?quota"),
        ("quota ", r"quota (?:exceeded|exceed|full|violation)"),
        (
            "exceed",
            (
                r"(?:exceeded|exceeds) (?:the )?(?:storage|mailbox|disk|allowed) ?"
                r"(?:allocation|quota|size)"
            ),
        ),
        (
            " exceeded| reached",
            r"(?:mailbox|storage|disk) (?:size )?(?:limit|quota) (?:exceeded|reached)",
        ),
        ("insufficient ", r"insufficient (?:system )?storage"),
        ("out of ", r"out of (?:storage|disk space)"),
        ("mailfolder is over", r"mailfolder is over"),
        ("user mailbox exceeds allowed size", r"user mailbox exceeds allowed size"),
        ("not enough ", r"not enough (?:disk )?space"),
        ("mailbox ", r"mailbox (?:quota|size) "),
        ("would exceed ", r"would exceed (?:the )?(?:mailbox|quota)"),
        ("postfach ", r"postfach (?:ist )?voll"),
        ("pleine", r"bo[iî]te (?:aux lettres )?pleine"),
        ("ящик переполнен", r"ящик переполнен"),
    ),
    _table(
        Reason.message_too_large,
        (
            "exceeds|too large|too big|too long",
            (
                r"message (?:size |length )?"
                r"(?:exceeds|is too (?:large|big|long)|too (?:large|big|long))"
            ),
        ),
        (" exceed", r"(?:size|length) (?:limit )?(?:exceeded|exceeds)"),
        (
            "exceed",
            r"exceeds? (?:the )?(?:maximum|fixed maximum|size limit|message size|allowed size)",
        ),
        ("message size ", r"message size \d+ exceeds"),
        ("message size limit", r"message size limits?"),
        ("mail ", r"mail (?:size|too large)"),
        ("too large for|too big for", r"too (?:large|big) for"),
        ("message too ", r"message too (?:large|big|long)"),
        ("size exceeds", r"size exceeds"),
    ),
    _table(
        Reason.relay_denied,
        (
            "relay",
            r"relay(?:ing)? (?:access )?(?:denied|not (?:permitted|allowed)|prohibited|refused)",
        ),
        (" to relay", r"(?:not permitted|unable|not allowed) to relay"),
        ("we do not relay", r"we do not relay"),
        ("no relaying", r"no relaying"),
        ("allowed rcpthosts", r"allowed rcpthosts"),
        ("gateway|relay", r"not (?:a )?(?:gateway|relay) for"),
        ("authentication required", r"authentication required"),
    ),
    _table(
        Reason.policy,
        ("sender address rejected", r"sender address rejected"),
        (
            "sender ",
            (
                r"sender (?:domain|address) (?:\S+ )?"
                r"(?:not found|does not exist|is not allowed|unknown)"
            ),
        ),
        ("greylist", r"greylist"),
        ("gray", r"gray ?list"),
        ("spoofing", r"anti-?spoofing"),
        ("envelope blocked", r"envelope blocked"),
    ),
    _table(
        Reason.host_unknown,
        (" not found", r"host (?:or domain name )?not found"),
        (" not found", r"domain (?:name )?not found"),
        ("unknown ", r"unknown (?:host|domain)"),
        ("host unknown", r"host unknown"),
        ("no such ", r"no such (?:domain|host)"),
        (
            "domain ",
            (
                r"domain (?:\S+ )?"
                r"(?:does not exist|doesn't exist|couldn't be found|could not be found)"
            ),
        ),
        ("name service error", r"name service error"),
        ("unrout", r"unroutable|unrouteable"),
        ("no mx ", r"no mx (?:record|host)"),
        ("null mx", r"null mx"),
        ("nxdomain", r"nxdomain"),
        ("mx records point to non-existent hosts", r"mx records point to non-existent hosts"),
        ("couldn't find any host", r"couldn't find any host"),
        ("could not resolve", r"could not resolve"),
        ("unable to resolve", r"unable to resolve"),
        (" error| failure", r"dns (?:lookup )?(?:error|failure)"),
        (" lookup fail", r"(?:host ?name|dns|mx) lookup fail"),
        ("domain ", r"domain (?:is )?(?:invalid|not (?:valid|registered))"),
    ),
    _table(
        Reason.suspended,
        (
            "disabled|deactivated|suspended|inactive|terminated",
            (
                r"(?:account|mail ?box|user|address|recipient)\S*(?: \S+){0,2} "
                r"(?:is |has been |was )?"
                r"(?:disabled|deactivated|(?<!temporarily )suspended|inactive|terminated)"
            ),
        ),
        (
            "disabled|deactivated|suspended|inactive|terminated|closed",
            (
                r"(?:disabled|deactivated|suspended|inactive|terminated|closed) "
                r"(?:e-?mail |mail ?box |user |account |recipient )"
            ),
        ),
        ("account ", r"account (?:has been |was |is )?(?:closed|expired|locked|blocked|frozen)"),
        ("disabled|deactivated|inactive", r"\bis (?:currently )?(?:disabled|deactivated|inactive)"),
        (" not active", r"(?:mailbox|account) (?:is )?not active"),
        ("no longer ", r"no longer (?:active|available|in use|valid|accepting)"),
        ("account inactive", r"account inactive"),
    ),
    _table(
        Reason.user_unknown,
        (" unknown", r"user(?:name)? (?:is )?unknown"),
        (
            "unknown ",
            r"unknown (?:user|recipient|mail ?box|local ?part|address|e-?mail address|account)",
        ),
        (
            "no such ",
            (
                r"no such (?:user|mail ?box|recipient|address|account|person|local user|"
                r"e-?mail address)"
            ),
        ),
        (
            " exist",
            (
                r"(?:user|mail ?box|recipient|address|account|alias|addressee)\S* "
                r"(?:\S+ ){0,5}(?:does not|doesn't|did not|does ?nt) exist"
            ),
        ),
        ("does not exist", r"does not exist"),
        ("doesn't exist", r"doesn't exist"),
        (
            "not found|not listed",
            r"(?:user|recipient|mail ?box|address|addressee)\S* (?:\S+ )?(?:not found|not listed)",
        ),
        (" valid | known ", r"not (?:a )?(?:valid|known) (?:user|recipient|mail ?box|address)"),
        ("invalid ", r"invalid (?:recipient|mail ?box|user|address|e-?mail address)"),
        ("notfound", r"recip(?:ient)?notfound"),
        ("resolver.adr.", r"resolver\.adr\."),
        ("not listed in ", r"not listed in (?:domino directory|public name)"),
        (" be found", r"(?:couldn't|could not|cannot|can't) be found"),
        ("box here", r"no mail ?box here"),
        (
            "unavailable|not available|not found",
            r"mail ?box (?:is )?(?:unavailable|not available|not found)",
        ),
        ("address ", r"address (?:not found|unknown|rejected: access denied)"),
        (
            "recipient ",
            r"recipient (?:address )?(?:rejected: access denied|unknown|not found|invalid)",
        ),
        ("doesn't have a ", r"doesn't have a \S+ account"),
        ("bad destination mail", r"bad destination mail ?box"),
        ("no such person", r"no such person"),
        ("not our customer", r"not our customer"),
        ("not a registered ", r"not a registered (?:\S+ )?user"),
        ("unknown or illegal alias", r"unknown or illegal alias"),
        ("user not found", r"user not found"),
        ("has no mail", r"has no mail ?box"),
        ("undeliverable address", r"undeliverable address"),
        ("adresse in", r"adresse (?:inconnue|introuvable)"),
        ("unbekannt", r"unbekannt"),
        ("не существует", r"не существует"),
    ),
    _table(
        Reason.auth_failure,
        ("spf", r"\bspf\b"),
        ("dkim", r"\bdkim\b"),
        ("dmarc", r"\bdmarc\b"),
        ("sender policy framework", r"sender policy framework"),
        ("authentication ", r"authentication (?:checks|information|results?|failure|failed)"),
        ("unauthenticated", r"unauthenticated"),
        (" authenticated", r"not (?:been )?authenticated"),
        ("ptr record", r"ptr record"),
        ("reverse ", r"reverse (?:dns|hostname|lookup)"),
        ("cannot find your ", r"cannot find your (?:reverse )?hostname"),
        (" to pass authentication", r"fails? to pass authentication"),
    ),
    _table(
        Reason.spam_blocked,
        ("spam", r"spam"),
        ("blocked using", r"blocked using"),
        ("rbl|dnsbl|uribl", r"\b(?:rbl|dnsbl|uribl|surbl)\b"),
        ("block", r"block ?list(?:ed)?"),
        ("black", r"black ?list(?:ed)?"),
        ("deny", r"deny ?list(?:ed)?"),
        ("listed ", r"listed (?:at|on|in|by) "),
        ("barracuda", r"barracuda"),
        ("proofpoint", r"proofpoint"),
        ("ipcheck", r"ipcheck"),
        ("reputation", r"reputation"),
        ("unsolicited", r"unsolicited"),
        ("junk", r"\bjunk\b"),
        ("bulk ", r"bulk (?:e-?)?mail"),
        ("content ", r"content (?:rejected|filter|blocked|not accepted)"),
        (" content", r"(?:message|mail) content"),
        ("content ", r"content (?:presents|was identified)"),
        ("security ", r"security (?:issue|policy violation|threat)"),
        ("virus|malware|phish|infected", r"virus|malware|phish|infected"),
        ("banned sending ip", r"banned sending ip"),
        ("traffic not accepted", r"traffic not accepted"),
        ("-00", r"\b(?:SC|DY|SR|OU)-00\d"),
        ("[tss0", r"\[tss0[59]\]"),
        ("permanently deferred", r"permanently deferred"),
        ("poor reputation", r"poor reputation"),
        ("suspicious", r"suspicious"),
    ),
    _table(
        Reason.expired,
        ("retry time", r"retry time(?:out)? (?:not reached|exceeded)"),
        ("in the queue too long", r"in the queue too long"),
        ("queue ", r"queue (?:time|lifetime)"),
        ("limit ", r"(?:delivery )?time ?limit (?:exceeded|reached)"),
        (" expired", r"(?:message|delivery) expired"),
        ("expired", r"\bexpired\b"),
        (" delivered within", r"not (?:been )?delivered within"),
        ("could not be delivered ", r"could not be delivered (?:with)?in"),
        ("maximum ", r"maximum (?:delivery )?(?:time|attempts)"),
        ("delivery failed ", r"delivery failed \d+ attempts"),
        ("too many ", r"too many (?:delivery )?(?:retries|attempts)"),
    ),
    _table(
        Reason.network,
        ("connection ", r"connection (?:refused|timed out|reset|lost|closed|died|failed)"),
        ("out", r"timed? ?out"),
        ("no route to host", r"no route to host"),
        (" unreachable", r"network (?:is )?unreachable"),
        (
            " connect| establish",
            r"(?:could ?n[o']t|unable to|can ?not|failed to) (?:connect|establish)",
        ),
        ("wasn't able to establish", r"wasn't able to establish"),
        ("lost connection", r"lost connection"),
        ("tls|ssl", r"\b(?:tls|starttls|ssl)\b"),
        ("certificate", r"certificate"),
        ("handshake", r"handshake"),
        ("host is down", r"host is down"),
        ("temporary failure in name resolution", r"temporary failure in name resolution"),
        ("delivery temporarily suspended", r"delivery temporarily suspended"),
        (" back to myself", r"loops? back to myself"),
        (" loop", r"(?:mail|routing|message is) loop"),
        ("looping", r"looping"),
        ("hop count exceeded", r"hop count exceeded"),
        ("service ", r"service (?:not available|unavailable)"),
        (" server ", r"(?:remote|mail) server (?:is )?(?:down|not responding|unreachable)"),
    ),
    _table(
        Reason.policy,
        ("polic", r"polic(?:y|ies)"),
        ("administrative", r"administrative(?:ly)? prohibit"),
        ("not authori", r"not authori[sz]ed"),
        ("envelope blocked", r"envelope blocked"),
        ("prohibited", r"prohibited"),
        ("not accepted", r"not accepted"),
    ),
)

# Words that say no more than "refused here": used only when neither the
# tables above nor the status code name a reason.
_WEAK_POLICY: Final = (
    "reject",
    "denied",
    "refused",
    "blocked",
    "not allowed",
    "forbidden",
    "declined",
)

# (subject, detail) of RFC 3463 (and the registry's later additions).
_STATUS: Final[dict[tuple[int, int], Reason]] = {
    (1, 1): Reason.user_unknown,
    (1, 2): Reason.host_unknown,
    (1, 3): Reason.user_unknown,
    (1, 6): Reason.user_unknown,
    (1, 7): Reason.policy,
    (1, 8): Reason.policy,
    (1, 10): Reason.host_unknown,
    (2, 1): Reason.suspended,
    (2, 2): Reason.mailbox_full,
    (2, 3): Reason.message_too_large,
    (3, 1): Reason.mailbox_full,
    (3, 2): Reason.network,
    (3, 4): Reason.message_too_large,
    (4, 0): Reason.network,
    (4, 1): Reason.network,
    (4, 2): Reason.network,
    (4, 3): Reason.network,
    (4, 4): Reason.host_unknown,
    (4, 5): Reason.network,
    (4, 6): Reason.network,
    (4, 7): Reason.expired,
    (7, 0): Reason.policy,
    (7, 1): Reason.policy,
    (7, 2): Reason.policy,
    (7, 3): Reason.policy,
    (7, 4): Reason.policy,
    (7, 5): Reason.policy,
    (7, 6): Reason.policy,
    (7, 7): Reason.policy,
    (7, 8): Reason.policy,
    (7, 9): Reason.policy,
    (7, 10): Reason.network,
    (7, 11): Reason.network,
    (7, 12): Reason.policy,
    (7, 13): Reason.suspended,
    (7, 14): Reason.policy,
    (7, 15): Reason.policy,
    (7, 16): Reason.message_too_large,
    (7, 17): Reason.user_unknown,
    (7, 18): Reason.host_unknown,
    (7, 19): Reason.policy,
    (7, 20): Reason.auth_failure,
    (7, 21): Reason.auth_failure,
    (7, 22): Reason.auth_failure,
    (7, 23): Reason.auth_failure,
    (7, 24): Reason.auth_failure,
    (7, 25): Reason.auth_failure,
    (7, 26): Reason.auth_failure,
    (7, 27): Reason.policy,
    (7, 28): Reason.rate_limited,
    (7, 29): Reason.policy,
    (7, 30): Reason.policy,
    # Microsoft 365's own details.
    (7, 504): Reason.user_unknown,
    (7, 509): Reason.auth_failure,
}
# Codes that name exactly one cause: the status wins over the words.
# X.4.7 only when permanent: "4.4.7 Message delayed" is a still-trying notice.
_DECISIVE: Final = frozenset({(7, 20), (7, 21), (7, 22), (7, 23), (7, 24), (7, 25), (7, 26)})


def find_status(text: str) -> str | None:
    """The first enhanced status code in `text` (`5.1.1`), if any."""
    match = STATUS_RE.search(text)
    return match.group(0) if match else None


def find_reply_code(text: str) -> int | None:
    match = REPLY_RE.search(text)
    return int(match.group(1)) if match else None


def best_status(declared: str | None, diagnostic: str | None) -> str | None:
    """The DSN's Status, unless the diagnostic has a more precise code of the
    same class (`5.0.0` declared, `550 5.1.1 ...` said), or the DSN has
    none; then a bare class from an SMTP reply code (`550` -> `5.0.0`)."""
    said = find_status(diagnostic) if diagnostic else None
    if declared:
        match = STATUS_RE.search(declared)
        declared = match.group(0) if match else None
    if declared and said and said[0] == declared[0] and declared.endswith(".0.0"):
        return said
    if declared:
        return declared
    if said:
        return said
    code = find_reply_code(diagnostic) if diagnostic else None
    if code is not None and code >= 400:
        return f"{code // 100}.0.0"
    return None


def _status_key(status: str | None) -> tuple[int, int] | None:
    if not status:
        return None
    try:
        _, subject, detail = status.split(".")
        return int(subject), int(detail)
    except ValueError:
        return None


def text_reason(text: str) -> Reason | None:
    """The reason the diagnostic's words name, if any."""
    lowered = text[:MAX_TEXT].lower()
    for reason, words, rules in _STRONG:
        for word in words:
            if word in lowered:
                break
        else:
            continue
        for gate, pattern in rules:
            for word in gate:
                if word in lowered:
                    if pattern.search(lowered):
                        return reason
                    break
    return None


def status_reason(status: str | None) -> Reason | None:
    key = _status_key(status)
    if key is None:
        return None
    reason = _STATUS.get(key)
    if reason is None and key[0] == 7 and 500 <= key[1] < 700 and status:
        # Microsoft 365: 5.7.5xx/6xx are spam and reputation blocks, 4.7.5xx
        # to 4.7.6xx "server busy" throttling.
        return Reason.spam_blocked if status.startswith("5") else Reason.rate_limited
    return reason


def classify(
    status: str | None,
    diagnostic: str | None,
    *,
    permanent: bool = False,
    context: str | None = None,
) -> tuple[Reason, bool]:
    """(reason, hard) of one failed recipient. `context` is the report's
    other text about the recipient, read only when the diagnostic's words
    name nothing; `permanent` says the report itself called the failure
    final when no status class is known."""
    text = (diagnostic or "")[:MAX_TEXT]
    key = _status_key(status)
    reason: Reason | None = None
    if key in _DECISIVE or (key == (4, 7) and status and status[0] == "5"):
        reason = _STATUS[key]
    if reason is None:
        reason = text_reason(text)
    if reason is None and context:
        reason = text_reason(context)
    if reason is None:
        reason = status_reason(status)
    if reason is None:
        lowered = f"{text}\n{(context or '')[:MAX_TEXT]}".lower()
        if any(word in lowered for word in _WEAK_POLICY):
            reason = Reason.policy
    if reason is None:
        reason = Reason.unknown
    return reason, is_hard(reason, status, permanent=permanent)


def is_hard(reason: Reason, status: str | None, *, permanent: bool = False) -> bool:
    klass = status[0] if status else None
    if klass == "4" or klass == "2":
        return False
    final = klass == "5" or (klass is None and permanent)
    return final and (reason in HARD_REASONS or reason is Reason.unknown)
