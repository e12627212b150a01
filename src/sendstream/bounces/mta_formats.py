"""Bounces without a delivery-status part: the plain-text notices of Postfix
(old non-DSN), Exim, Sendmail, qmail, Exchange, Gmail, Yahoo, Amazon SES,
Hotmail, Lotus Domino, MDaemon, Courier, OpenSMTPD and others.

One scanner reads them all rather than one parser per MTA: the notice is
cut where the returned message starts, every address in it (but ours,
the daemon's and header echoes) is a recipient, and the lines from one
recipient to the next are its segment, in which the paragraph holding an
SMTP reply or status code is the diagnostic. The marker table only names
the format (the `reporter`) and decides that a message is a bounce at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from sendstream.bounces.classify import REPLY_RE, STATUS_RE, text_reason

# Failure codes only: a transcript's "250 2.1.0 Sender ok" is not the answer.
# (Look-behinds after the first digit: see `classify.STATUS_RE`.)
FAIL_STATUS_RE: Final = re.compile(r"[45](?<![\w.][45])\.\d{1,3}\.\d{1,3}(?!\.?\d)")
FAIL_REPLY_RE: Final = re.compile(r"([45](?<![\w.#/:-][45])[0-5]\d)(?:[ -]|$)", re.M)

MAX_NOTICE = 128 * 1024
MAX_RECIPIENTS = 1000
MAX_DIAGNOSTIC = 500
MAX_SEGMENT_LINES = 40

ADDRESS_RE: Final = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}\b"
)

_DOMAIN_HEAD: Final = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}\b"
)


_LOCAL_RUN: Final = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]*")


def addresses(text: str) -> list[str]:
    """`ADDRESS_RE.findall(text)`, found from each "@" instead of trying a
    local part at every position (which costs ~30 us on a Received line).
    Same matches: a match holds exactly one "@", its local part is the
    whole dot-atom run before it, and the domain part is `_DOMAIN_HEAD`."""
    found: list[str] = []
    at = text.find("@")
    done = 0  # where the previous match ended
    while at >= 0:
        if at > done:
            domain = _DOMAIN_HEAD.match(text, at + 1)
            if domain is not None:
                run = _LOCAL_RUN.match(text[done:at][::-1])
                local = text[at - run.end() : at] if run else ""
                if local and not local.endswith("."):
                    double = local.rfind("..")
                    local = local[double + 2 :].lstrip(".") if double >= 0 else local.lstrip(".")
                    if local:
                        found.append(f"{local}@{domain.group(0)}")
                        done = domain.end()
        at = text.find("@", at + 1)
    return found


def find_addresses(text: str) -> list[tuple[int, int, str]]:
    """(start, end, address) of the addresses in `text`, found from each "@"
    (scanning every position for a local part is the slow way)."""
    found: list[tuple[int, int, str]] = []
    at = text.find("@")
    while at >= 0 and len(found) < 4 * MAX_RECIPIENTS:
        domain = _DOMAIN_HEAD.match(text, at + 1)
        if domain is not None:
            # The run of local-part characters before the "@" (at most 256),
            # read backwards: a `[...]{1,256}$` search retries every start.
            # As that `$` did, a newline just before the "@" is skipped.
            end = at - 1 if text[at - 1 : at] == "\n" else at
            run = _LOCAL_RUN.match(text[max(0, at - 256) : end][::-1])
            if run is not None and run.end():
                name = text[end - run.end() : end].strip(".")
                if name:
                    start = at - len(name)
                    found.append((start, domain.end(), f"{name}@{domain.group(0)}"))
        at = text.find("@", at + 1)
    return found


# (reporter, phrases): one phrase (lower case) makes a message a bounce
# notice. Plain substrings, not regexes: they are looked for in every
# inbound message, and `in` is a hundred times cheaper than `re`.
_MARKERS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("qmail", ("this is the qmail-send program",)),
    ("postfix", ("this is the postfix program at host", "this is the mail system at host")),
    ("exim", ("this message was created automatically by mail delivery software",)),
    (
        "sendmail",
        (
            "following addresses had permanent fatal errors",
            "following address had permanent fatal errors",
            "following addresses had transient non-fatal",
            "----- transcript of session follows -----",
            "the original message was received at ",
        ),
    ),
    (
        "exchange",
        (
            "delivery has failed to these recipients",
            "your message did not reach some or all of the intended recipients",
            "the following recipient(s) could not be reached",
            "the following recipient(s) cannot be reached",
            "diagnostic information for administrators",
            "delivery is delayed to these recipients",
            "remote server returned '",
        ),
    ),
    (
        "gmail",
        (
            "** address not found **",
            "** message not delivered **",
            "** message blocked **",
            "** delivery incomplete **",
            "delivery to the following recipient failed permanently",
            "delivery to the following recipients failed permanently",
            "delivery to the following recipient has been delayed",
            "google tried to deliver your message",
            "technical details of permanent failure",
            "technical details of temporary failure",
        ),
    ),
    (
        "yahoo",
        (
            "sorry, we were unable to deliver your message to the following address",
            "message from yahoo.com",
            "unable to deliver message to the following address",
        ),
    ),
    (
        "amazonses",
        ("an error occurred while trying to deliver the mail to the following recipients",),
    ),
    (
        "hotmail",
        (
            "delivery to the following recipients failed",
            "this is an automatically generated delivery status notification",
        ),
    ),
    ("domino", ("was not delivered to:", "------- failure reasons")),
    (
        "mdaemon",
        (
            "the attached message had permanent fatal delivery errors",
            "the attached message had fatal delivery errors",
            "--- session transcript ---",
        ),
    ),
    (
        "courier",
        (
            "running the courier mail server",
            "your message to the following recipients cannot be delivered",
        ),
    ),
    (
        "opensmtpd",
        (
            "this is the mailer-daemon, please do not reply",
            "an error has occurred while attempting to deliver a message for",
        ),
    ),
    (
        "messagingserver",
        (
            "this report relates to a message you sent with the following header fields",
            "your message cannot be delivered to the following recipients",
        ),
    ),
    ("groupwise", ("the message that you sent was undeliverable to the following",)),
    (
        "mailmarshal",
        ("could not be delivered because of", "the following recipients were affected"),
    ),
    ("mcafee", ("--- the following addresses had delivery problems ---",)),
    ("ironport", ("was undeliverable.\nthe reason for the problem:",)),
    (
        "yandex",
        ("i'm sorry to have to inform you that your message could not\nbe delivered",),
    ),
    (
        "mailru",
        ("не удалось доставить", "сообщение не было доставлено", "не может быть доставлено"),
    ),
    ("imail", ("original message follows.", "body of message generated response:")),
    ("dovecot", ("was automatically rejected:",)),
    (
        "generic",
        (
            "was not delivered for the following reason",
            "your mail to the following recipients could not be delivered",
            "your message to the following recipients could not be delivered",
            "could not be delivered to the following recipients",
            "delivery failed for the following reason",
            "a transcript of the attempts to send the message follows",
            "i wasn't able to deliver your message to the following addresses",
        ),
    ),
)
_BOUNCE_SUBJECT: Final = re.compile(
    r"undeliver|undelivered mail|mail delivery fail|delivery (?:status )?(?:notification|failure)|"
    r"failure notice|returned mail|delivery failure|non-?delivery|nondeliverable|"
    r"message not delivered|could not be delivered|delivery notification|mail system error|"
    r"delivery problem|delivery report|rejected:|warning: message|delayed mail|"
    r"недоставленное|nicht zustellbar|unzustellbar|non remis|non recapitable|no entregado",
    re.I,
)
_DAEMON: Final = re.compile(
    r"mailer[-_]?daemon|mail[-_]daemon|\bpostmaster\b|mail delivery (?:subsystem|system|service)|"
    r"\bmdaemon\b|microsoftexchange|\bpost ?office\b|\bmail administrator\b",
    re.I,
)
_FAILURE_WORDS: Final = (
    "couldn't be delivered",
    "could not be delivered",
    "could not deliver",
    "not delivered",
    "wasn't delivered",
    "undeliverable",
    "delivery failed",
    "delivery has failed",
    "failed permanently",
    "permanent error",
    "permanent fatal",
    "unable to deliver",
    "non-delivery",
    "nondelivery",
    "delivery failure",
    "wasn't able to deliver",
    "rejected",
    "returned to sender",
)
_DELAY: Final = (
    "this is a warning only",
    "warning message only",
    "has not yet been delivered",
    "hasn't been delivered yet",
    "has been delayed",
    "is delayed",
    "delivery delayed",
    "delivery is delayed",
    "will continue trying",
    "will continue to try",
    "will continue retrying",
    "will keep trying",
    "will keep retrying",
    "still trying",
    "still being retried",
    "could not send message for past",
    "will retry",
    "will try again",
    "no action is required on your part",
    "transient non-fatal errors",
    "temporary problem delivering",
    "(delay)",
)
_DELAY_HOURS: Final = re.compile(r"delayed \d+ (?:hours?|minutes?|days?)")
# Where the returned message (or its headers) starts in a single-part notice.
# The leading run is possessive (`*+`): every phrase starts with a letter, so
# only the whole run can precede one, and a backtracking run made a line of
# 75 dashes cost ~0.4 ms; "-- original message --" is kept by look-behinds.
_CUT: Final = re.compile(
    r"^(?:[-=*_ \t]*+(?:below this line is a copy of the message|"
    r"this is a copy of the message|original message follows|"
    r"the header of the original message is following|returned message|"
    r"original message headers?|headers of the original message|copy of the original message|"
    r"below is a copy of the original message|possibly truncated original message follows|"
    r"(?:(?<=-)|(?<=- ))original message ?-+|undelivered message headers?)"
    r"|(?P<header>(?:return-path|received|dkim-signature|x-original-to|delivered-to):\s))",
    re.I | re.M,
)
# Lines whose addresses are the sender's or header echoes, not recipients
# (see `_not_recipient_line`).
_HEADER_ECHO: Final = re.compile(
    r"[>\s]*+(?:from|sender|reply-to|return-path|message-id|in-reply-to|references|"
    r"envelope-from|original-envelope-id|x-[\w-]+|received|resent-from|errors-to|"
    r"original-mail-from|x-postfix-sender)\s*:",
    re.I,
)
_MAIL_FROM: Final = re.compile(r"mail from\s*:|envelope sender", re.I)
# What follows a sender's address in a reply about the sender.
_SENDER_AFTER: Final = re.compile(r"[>\s]*(?:\.\.\.|:)?\s*sender\b", re.I)
_SKIP_LOCAL: Final = frozenset({"mailer-daemon", "postmaster", "mailerdaemon", "mail-daemon"})
_ADDRESS_ONLY: Final = re.compile(r"^[\s\"'<(]*[^\s@]+@[^\s]+?[\s\"'>):,;]*$")
_LEAD_ADDRESS: Final = re.compile(r"^\s*[<\"]?[^\s@<>\"]+@[^\s<>\"]+[>\"]?\s*[:.]*\s*")
_NOISE_LINE: Final = re.compile(r"^(?:because|reason|error|diagnostic(?: code)?)\s*:\s*$", re.I)


@dataclass(slots=True)
class TextEntry:
    recipient: str | None
    status: str | None
    diagnostic: str | None
    context: str


@dataclass(slots=True)
class TextBounce:
    reporter: str | None
    delay: bool
    entries: list[TextEntry] = field(default_factory=list)
    returned: str | None = None  # text of the returned message, from its cut


def cut_notice(text: str) -> tuple[str, str | None]:
    """(the notice, the returned message's text or None)."""
    match = _CUT.search(text)
    if match is None:
        return text, None
    start = match.start()
    returned = text[start:]
    if match.group("header") is None:
        # A marker line: the returned message starts on the next line.
        newline = returned.find("\n")
        returned = "" if newline < 0 else returned[newline + 1 :]
    return text[:start], returned.lstrip("\n")


def detect_reporter(notice: str) -> str | None:
    return _reporter(notice[:8000].lower())


def _reporter(head: str) -> str | None:
    for name, phrases in _MARKERS:
        for phrase in phrases:
            if phrase in head:
                return name
    return None


def _is_delay(subject: str, head: str) -> bool:
    text = f"{subject.lower()}\n{head}"
    for phrase in _DELAY:
        if phrase in text:
            return True
    return "delayed " in text and _DELAY_HOURS.search(text) is not None


def scan_notice(
    subject: str, from_value: str, text: str, exclude: set[str], *, forced: bool = False
) -> TextBounce | None:
    """A text bounce notice read from `text` (the message's notification text),
    or None when it is not one. `exclude` holds lower-cased addresses that are
    ours or the reporter's; `forced` says the caller already knows it is a
    report (a multipart/report whose status part could not be read)."""
    notice, returned = cut_notice(text[:MAX_NOTICE])
    head = notice[:8000].lower()
    reporter = _reporter(head)
    if reporter is None:
        from_daemon = bool(_DAEMON.search(from_value))
        subject_bounce = bool(_BOUNCE_SUBJECT.search(subject))
        failure_words = any(phrase in head for phrase in _FAILURE_WORDS)
        coded = bool(STATUS_RE.search(head) or REPLY_RE.search(head))
        if not (
            forced
            or (from_daemon and (subject_bounce or failure_words or coded))
            or (subject_bounce and failure_words and coded)
        ):
            return None
    delay = _is_delay(subject, head)
    result = TextBounce(reporter=reporter, delay=delay, returned=returned)
    lines = notice.split("\n")
    recipients = _recipients(notice, lines, exclude)
    if not recipients:
        global_diag, _ = _diagnostic(lines)
        status = _status(global_diag or "", notice)
        result.entries.append(TextEntry(None, status, global_diag, notice[:4000]))
        return result
    # The whole notice's diagnostic, read only when a recipient's segment
    # has none of its own (or no status).
    whole: list[str | None] = []
    for address, segment in recipients:
        diagnostic, known = _diagnostic(segment, address)
        if not known:
            if not whole:
                whole.append(_diagnostic(lines)[0])
            if whole[0]:
                diagnostic = whole[0]
        context = "\n".join(segment)[:4000]
        status = _status(diagnostic or "", context)
        if status is None:
            if not whole:
                whole.append(_diagnostic(lines)[0])
            global_diag = whole[0]
            if diagnostic is not global_diag and global_diag:
                status = _status(global_diag, "")
        result.entries.append(TextEntry(address, status, diagnostic, context))
    return result


def _status(diagnostic: str, context: str) -> str | None:
    match = FAIL_STATUS_RE.search(diagnostic) or FAIL_STATUS_RE.search(context)
    if match:
        return match.group(0)
    code = FAIL_REPLY_RE.search(diagnostic) or FAIL_REPLY_RE.search(context)
    if code:
        return f"{code.group(1)[0]}.0.0"
    return None


def _not_recipient_line(line: str) -> bool:
    """The line echoes a header or names the sender ("From: ...", "MAIL
    FROM:<...>", "envelope sender"). A case-insensitive `re` search costs
    ~40 ns a character, so the cheap necessary substrings go first."""
    if ":" in line and _HEADER_ECHO.match(line):
        return True
    low = line.lower()
    return ("from" in low or "envelope" in low) and _MAIL_FROM.search(line) is not None


def _recipients(notice: str, lines: list[str], exclude: set[str]) -> list[tuple[str, list[str]]]:
    # Line numbers by counting newlines since the previous address (they
    # come in text order).
    line_no = counted = 0
    not_recipient: dict[int, bool] = {}  # per line: one long line, many addresses
    order: list[str] = []
    spelled: dict[str, str] = {}
    at_lines: list[tuple[int, str]] = []
    for start, end, address in find_addresses(notice):
        key = address.lower()
        local = key.partition("@")[0]
        if key in exclude or local in _SKIP_LOCAL or local.startswith("bounces+"):
            continue
        if local.endswith((".png", ".jpg", ".gif", ".jpeg")):  # cid: image references
            continue
        if start >= counted:
            line_no += notice.count("\n", counted, start)
        else:
            line_no = notice.count("\n", 0, start)
        counted = start
        skip_line = not_recipient.get(line_no)
        if skip_line is None:
            skip_line = not_recipient[line_no] = _not_recipient_line(lines[line_no])
        if skip_line or _SENDER_AFTER.match(notice, end, end + 40):
            continue
        if key not in spelled:
            if len(order) >= MAX_RECIPIENTS:
                continue
            spelled[key] = address
            order.append(key)
        if not at_lines or at_lines[-1] != (line_no, key):
            at_lines.append((line_no, key))
    segments: dict[str, list[str]] = {key: [] for key in order}
    for index, (line_no, key) in enumerate(at_lines):
        end = len(lines)
        for later_line, later_key in at_lines[index + 1 :]:
            if later_key != key and later_line > line_no:
                end = later_line
                break
        segments[key].extend(lines[line_no : min(end, line_no + MAX_SEGMENT_LINES)])
        segments[key].append("")
    return [(spelled[key], segments[key]) for key in order]


def _paragraphs(lines: list[str]) -> list[list[str]]:
    out: list[list[str]] = []
    current: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped:
            if current:
                out.append(current)
                current = []
            continue
        if stripped[-1] == ":" and _NOISE_LINE.match(stripped):
            continue
        current.append(line.rstrip())
    if current:
        out.append(current)
    return out


def _coded(line: str) -> bool:
    return bool(FAIL_STATUS_RE.search(line) or FAIL_REPLY_RE.search(line))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _from_code(paragraph: list[str]) -> str | None:
    """The failure reply in a paragraph: its first line with a 4xx/5xx code,
    and the lines that continue it (indented as deep, not a new reply)."""
    for index, line in enumerate(paragraph):
        if not _coded(line):
            continue
        taken = [line.strip()]
        depth = _indent(line)
        for following in paragraph[index + 1 : index + 6]:
            bare = following.strip().lstrip("<>").strip()
            if (
                _indent(following) < depth
                or FAIL_REPLY_RE.match(bare)
                or bare[:5]
                in (
                    "Givin",
                    ">>> ",
                )
            ):
                break
            taken.append(following.strip())
        return " ".join(taken)
    return None


def _diagnostic(lines: list[str], address: str | None = None) -> tuple[str | None, bool]:
    """(diagnostic, whether it is a real one: has a failure code or words
    the classifier knows) of a recipient's segment, or of the whole notice
    when `address` is None."""
    paragraphs = []
    for paragraph in _paragraphs(lines):
        if len(paragraph) == 1 and _ADDRESS_ONLY.match(paragraph[0]):
            continue
        if address is not None:
            first = _LEAD_ADDRESS.sub("", paragraph[0], count=1)
            paragraph = ([first] if first.strip() else []) + paragraph[1:]
            if not paragraph:
                continue
        paragraphs.append(paragraph)
    for paragraph in paragraphs:
        found = _from_code(paragraph)
        if found:
            return _trim(found), True
    for paragraph in paragraphs:
        text = " ".join(line.strip() for line in paragraph)
        if text_reason(text) is not None:
            return _trim(text), True
    if address is None or not paragraphs:
        return None, False
    return _trim(" ".join(line.strip() for line in paragraphs[0])), False


def _trim(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DIAGNOSTIC else text[: MAX_DIAGNOSTIC - 1] + "…"
