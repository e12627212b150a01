"""`classify_message`: one inbound message (a DSN, an ARF complaint, a
plain-text bounce notice, an auto-reply...) to a `Report` with one verdict
per recipient.

Pure: no database, no network, no clock. It never raises, whatever the
bytes (malformed MIME, unknown charsets, truncation, binary junk): what it
cannot read becomes a verdict of kind "other" and a note. Work is bounded
by the limits in `mime_scan` and `mta_formats`, so a 100 MB message costs
what its first half megabyte costs.

Order of the checks: an ARF part, then a delivery-status part, then the
non-DSN bounce formats, then challenge-response, auto-replies, unsubscribe
requests. Bounces come before auto-replies because MTAs mark their bounces
`Auto-Submitted: auto-replied` too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from sendstream.bounces import arf, autoreply
from sendstream.bounces.classify import best_status, classify, find_status
from sendstream.bounces.dsn import DeliveryStatus, parse_delivery_status
from sendstream.bounces.mime_scan import Part, Scan, decode_words, parse_headers, part_text, scan
from sendstream.bounces.mta_formats import TextBounce, addresses, cut_notice, scan_notice
from sendstream.bounces.verdict import Kind, Reason, RecipientVerdict, Report

# How much text of the human-readable parts is read.
MAX_NOTICE_TEXT = 128 * 1024
MAX_TEXT_PARTS = 4
MAX_DIAGNOSTIC = 500

_VERP_RE: Final = re.compile(r"bounces\+[A-Za-z0-9_=.-]+@[A-Za-z0-9.-]+[A-Za-z]", re.I)
_VERP_LOWER_RE: Final = re.compile(r"bounces\+[a-z0-9_=.-]+@[a-z0-9.-]+[a-z]")
_STATUS_PARTS: Final = frozenset({"message/delivery-status", "message/global-delivery-status"})
_FEEDBACK_PARTS: Final = frozenset({"message/feedback-report"})
_RETURNED_PARTS: Final = frozenset({"message/rfc822", "message/global", "text/rfc822-headers"})
_RETURN_PATH_HEADERS: Final = ("return-path", "sender", "errors-to", "x-original-return-path")
_OUR_HEADERS: Final = ("to", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to")


def classify_message(raw: bytes, *, envelope_to: Sequence[str] = ()) -> Report:
    """What `raw` (one whole message as received) reports, per recipient.
    `envelope_to` are the RCPT TO addresses it arrived for (our VERP return
    path): they come first in `Report.return_paths`."""
    try:
        return _classify(raw, envelope_to)
    except Exception as exc:
        return Report(
            verdicts=(RecipientVerdict(recipient=None, kind="other", reason=Reason.unknown),),
            return_paths=tuple(dict.fromkeys(a for a in envelope_to if a)),
            notes=(f"unreadable message: {type(exc).__name__}",),
        )


def _classify(raw: bytes, envelope_to: Sequence[str]) -> Report:
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise TypeError("raw must be bytes")
    parsed = scan(bytes(raw))
    root = parsed.root
    notes = list(parsed.notes)
    subject = decode_words(root.get("subject") or "")
    from_value = decode_words(root.get("from") or "")
    returned = _returned_headers(parsed)
    texts = _notice_text(parsed)
    paths = _Paths(envelope_to)
    for header in ("from", "reply-to", "sender"):
        for address in addresses(root.get(header) or ""):
            paths.exclude.add(address.lower())
    for header in _OUR_HEADERS:
        for value in root.get_all(header):
            for address in addresses(value):
                paths.exclude.add(address.lower())
                paths.verp_from(address)
    if returned is not None:
        for header in _RETURN_PATH_HEADERS:
            for value in returned.get_all(header):
                paths.add_any(value)
        # VERP matches never span a line: one search over all the values.
        paths.verp_from("\n".join(value for _, value in returned.headers))
    message_id = _message_id(returned)

    feedback = next((p for p in parsed.parts if p.content_type in _FEEDBACK_PARTS), None)
    if feedback is not None:
        return _arf_report(feedback, returned, paths, message_id, notes)

    verdicts: list[RecipientVerdict] = []
    reporter: str | None = None
    status_part = next((p for p in parsed.parts if p.content_type in _STATUS_PARTS), None)
    if status_part is not None:
        dsn = parse_delivery_status(part_text(status_part))
        reporter = dsn.reporting_mta
        if dsn.truncated:
            notes.append("delivery-status part cut after 1000 recipients")
        verdicts = _dsn_verdicts(dsn, texts, paths.exclude)
        if not verdicts:
            notes.append("delivery-status part without recipients")

    if not verdicts:
        forced = status_part is not None or root.params.get("report-type", "").lower() in (
            "delivery-status",
        )
        notice = scan_notice(subject, from_value, texts, paths.exclude, forced=forced)
        if notice is not None:
            reporter = reporter or notice.reporter
            verdicts = _text_verdicts(notice)
            if returned is None and notice.returned:
                head = notice.returned.partition("\n\n")[0].encode("utf-8", "replace")
                fields = parse_headers(head)
                fake = Part(headers=fields, content_type="text/plain", params={}, body=b"")
                for header in _RETURN_PATH_HEADERS:
                    for value in fake.get_all(header):
                        paths.add_any(value)
                paths.verp_from("\n".join(value for _, value in fields))
                message_id = message_id or _message_id(fake)

    if not verdicts:
        notice_text, _ = cut_notice(texts)
        kind: Kind
        if autoreply.is_challenge(root, subject, notice_text):
            # An auto-reply that wants an answer; never counts either.
            kind, reason = "auto_reply", Reason.challenge
        elif autoreply.is_auto_reply(root, subject, notice_text):
            kind, reason = "auto_reply", Reason.vacation
        elif autoreply.is_unsubscribe_request(subject):
            kind, reason = "unsubscribe", Reason.unsubscribe
        else:
            kind, reason = "other", Reason.unknown
        sender = next(iter(addresses(from_value)), None)
        verdicts = [RecipientVerdict(recipient=sender, kind=kind, reason=reason)]
    return Report(
        verdicts=tuple(verdicts),
        return_paths=paths.ordered(),
        original_message_id=message_id,
        reporter=reporter,
        notes=tuple(notes),
    )


class _Paths:
    """Return-path candidates in order: the envelope first, then what the
    returned message and the report's own headers show."""

    def __init__(self, envelope_to: Sequence[str]) -> None:
        self.items: dict[str, str] = {}
        self.exclude: set[str] = set()
        for address in envelope_to:
            if address:
                self.items.setdefault(address.lower(), address)
                self.exclude.add(address.lower())

    def add_any(self, value: str) -> None:
        for address in addresses(value):
            self.items.setdefault(address.lower(), address)
            self.exclude.add(address.lower())

    def verp_from(self, value: str) -> None:
        lowered = value.lower()
        if "bounces+" not in lowered:
            return
        if value.isascii():
            # Same offsets in both: match the lower-case text case-sensitively
            # (a literal prefix `re` finds fast), keep the original spelling.
            found = [value[m.start() : m.end()] for m in _VERP_LOWER_RE.finditer(lowered)]
        else:
            found = _VERP_RE.findall(value)
        for address in found:
            self.items.setdefault(address.lower(), address)
            self.exclude.add(address.lower())

    def ordered(self) -> tuple[str, ...]:
        return tuple(self.items.values())


def _returned_headers(parsed: Scan) -> Part | None:
    for part in parsed.parts:
        if part.content_type in _RETURNED_PARTS and part.children:
            return part.children[0]
    return None


def _message_id(returned: Part | None) -> str | None:
    if returned is None:
        return None
    value = returned.get("message-id")
    if not value:
        return None
    value = value.strip()
    return value[:998] or None


def _notice_text(parsed: Scan) -> str:
    """The human-readable text of the report: text/plain parts outside the
    returned message (text/html only when there is no plain text)."""
    plain: list[Part] = []
    html: list[Part] = []
    returned_ids = {
        id(child)
        for part in parsed.parts
        if part.content_type in _RETURNED_PARTS
        for child in part.children
    }
    for part in parsed.parts:
        if id(part) in returned_ids or part.content_type.startswith("multipart/"):
            continue
        if part.content_type == "text/plain":
            plain.append(part)
        elif part.content_type == "text/html":
            html.append(part)
    chosen = (plain or html)[:MAX_TEXT_PARTS]
    texts: list[str] = []
    size = 0
    for part in chosen:
        text = part_text(part, MAX_NOTICE_TEXT - size)
        texts.append(text)
        size += len(text)
        if size >= MAX_NOTICE_TEXT:
            break
    return "\n\n".join(texts)


def _dsn_verdicts(dsn: DeliveryStatus, texts: str, exclude: set[str]) -> list[RecipientVerdict]:
    fallback: dict[str, tuple[str | None, str]] = {}
    needs_text = any(r.diagnostic is None for r in dsn.recipients)
    if needs_text and texts:
        notice = scan_notice("", "", texts, exclude, forced=True)
        if notice is not None:
            for entry in notice.entries:
                if entry.recipient:
                    fallback[entry.recipient.lower()] = (entry.diagnostic, entry.context)
            if len(notice.entries) == 1 and notice.entries[0].recipient is None:
                fallback[""] = (notice.entries[0].diagnostic, notice.entries[0].context)
    verdicts: list[RecipientVerdict] = []
    seen: set[str] = set()
    for rcpt in dsn.recipients:
        address = rcpt.address
        key = (address or "").lower()
        if address and key in seen:
            continue
        seen.add(key)
        diagnostic = rcpt.diagnostic
        context = ""
        if diagnostic is None:
            found = fallback.get(key) or (fallback.get("") if len(dsn.recipients) == 1 else None)
            if found is None and len(dsn.recipients) == 1 and len(fallback) == 1:
                found = next(iter(fallback.values()))
            if found is not None:
                diagnostic, context = found
        if diagnostic is None and rcpt.status and "(" in rcpt.status:
            diagnostic = rcpt.status[rcpt.status.index("(") + 1 :].rstrip(")").strip() or None
        status = best_status(rcpt.status, diagnostic)
        action = rcpt.action or ""
        kind: Kind
        if action in ("delivered", "relayed", "expanded"):
            kind = "delivered"
        elif action == "delayed":
            kind = "delay"
        elif action == "failed":
            kind = "bounce"
        elif status and status[0] == "2":
            kind = "delivered"
        elif status and status[0] == "4":
            kind = "delay"
        else:
            kind = "bounce"
        verdicts.append(
            _verdict(address, kind, status, diagnostic, context, rcpt.remote_mta, permanent=True)
        )
    return verdicts


def _text_verdicts(notice: TextBounce) -> list[RecipientVerdict]:
    kind: Kind = "delay" if notice.delay else "bounce"
    return [
        _verdict(
            entry.recipient,
            kind,
            entry.status,
            entry.diagnostic,
            entry.context,
            None,
            permanent=not notice.delay,
        )
        for entry in notice.entries
    ]


def _verdict(
    recipient: str | None,
    kind: Kind,
    status: str | None,
    diagnostic: str | None,
    context: str,
    remote_mta: str | None,
    *,
    permanent: bool,
) -> RecipientVerdict:
    if diagnostic is not None:
        diagnostic = " ".join(diagnostic.split())[:MAX_DIAGNOSTIC] or None
    if kind == "delivered":
        return RecipientVerdict(
            recipient=recipient,
            kind=kind,
            reason=Reason.delivered,
            status=status,
            diagnostic=diagnostic,
            remote_mta=remote_mta,
        )
    reason, hard = classify(status, diagnostic, permanent=permanent, context=context)
    if status is None and kind == "bounce":
        status = find_status(context) if context else None
    return RecipientVerdict(
        recipient=recipient,
        kind=kind,
        reason=reason,
        hard=hard if kind == "bounce" else None,
        status=status,
        diagnostic=diagnostic,
        remote_mta=remote_mta,
    )


def _arf_report(
    feedback: Part,
    returned: Part | None,
    paths: _Paths,
    message_id: str | None,
    notes: list[str],
) -> Report:
    report = arf.parse_feedback_report(part_text(feedback))
    if report.original_mail_from:
        paths.add_any(report.original_mail_from)
    kind, reason = arf.kind_of(report.feedback_type)
    recipients = list(dict.fromkeys(report.original_rcpt_to + report.removal_recipient))
    if not recipients and returned is not None:
        for header in ("to", "x-hmxmroriginalrecipient", "x-original-to"):
            for value in returned.get_all(header):
                recipients.extend(a for a in addresses(value) if "redacted" not in a)
            if recipients:
                break
    if not recipients:
        notes.append("feedback report names no recipient (redacted)")
    named: list[str | None] = list(recipients) or [None]
    verdicts = tuple(
        RecipientVerdict(recipient=address, kind=kind, reason=reason) for address in named
    )
    return Report(
        verdicts=verdicts,
        return_paths=paths.ordered(),
        original_message_id=message_id,
        feedback_type=report.feedback_type or None,
        reporter=report.reporting_mta or report.user_agent,
        notes=tuple(notes),
    )
