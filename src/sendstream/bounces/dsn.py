"""RFC 3464 `message/delivery-status` fields, tolerant of what real MTAs
send: missing blank lines between recipient blocks, folded fields, lower
or mixed case names, `rfc822;addr` with or without a space or angle
brackets, Status with a comment (`5.1.1 (user unknown)`)."""

from __future__ import annotations

from dataclasses import dataclass, field

# A DSN with more recipients than this is cut (the storm case has
# 500; a hostile one may claim a million).
MAX_RECIPIENTS = 1000


@dataclass(slots=True)
class DsnRecipient:
    final_recipient: str | None = None
    original_recipient: str | None = None
    action: str | None = None
    status: str | None = None
    diagnostic: str | None = None
    remote_mta: str | None = None

    @property
    def address(self) -> str | None:
        # A gateway's Final-Recipient may be a foreign (X.400) address.
        final = self.final_recipient
        if final and "@" not in final and self.original_recipient:
            return self.original_recipient
        return final or self.original_recipient


@dataclass(slots=True)
class DeliveryStatus:
    reporting_mta: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    recipients: list[DsnRecipient] = field(default_factory=list)
    truncated: bool = False


def typed_value(value: str) -> str:
    """`rfc822; ada@example.com` -> `ada@example.com` (also for `dns;`,
    `smtp;` and `x-unix;`), angle brackets and quotes removed."""
    _, sep, rest = value.partition(";")
    text = (rest if sep else value).strip()
    if text.startswith("<") and ">" in text:
        text = text[1 : text.index(">")]
    return text.strip().strip('"').strip()


def parse_delivery_status(text: str) -> DeliveryStatus:
    result = DeliveryStatus()
    current: DsnRecipient | None = None
    name: str | None = None
    value: list[str] = []

    def flush() -> None:
        nonlocal name
        if name is not None:
            _assign(result, current, name, " ".join(value).strip())
        name = None

    for line in text.split("\n"):
        if line[:1] in (" ", "\t") and name is not None:
            value.append(line.strip())
            continue
        flush()
        stripped = line.strip()
        if not stripped:
            if current is not None and current.address is not None:
                current = None
            continue
        key, sep, rest = stripped.partition(":")
        if not sep or " " in key.strip():
            continue
        key = key.strip().lower()
        if key in ("final-recipient", "original-recipient"):
            if (
                current is None
                or (
                    current.final_recipient
                    if key == "final-recipient"
                    else current.original_recipient
                )
                is not None
            ):
                if len(result.recipients) >= MAX_RECIPIENTS:
                    result.truncated = True
                    break
                current = DsnRecipient()
                result.recipients.append(current)
        elif current is None and key in ("action", "status", "diagnostic-code", "remote-mta"):
            # A recipient block that lost its Final-Recipient line.
            current = DsnRecipient()
            result.recipients.append(current)
        name = key
        value = [rest.strip()]
    flush()
    return result


def _assign(result: DeliveryStatus, rcpt: DsnRecipient | None, name: str, value: str) -> None:
    if rcpt is None:
        result.fields.setdefault(name, value)
        if name == "reporting-mta":
            result.reporting_mta = typed_value(value)
        return
    if name == "final-recipient":
        rcpt.final_recipient = typed_value(value) or None
    elif name == "original-recipient":
        rcpt.original_recipient = typed_value(value) or None
    elif name == "action":
        rcpt.action = (value.split() or [""])[0].lower() or None
    elif name == "status":
        rcpt.status = value or None
    elif name == "diagnostic-code":
        kind, sep, rest = value.partition(";")
        text = rest if sep and " " not in kind.strip() else value
        rcpt.diagnostic = text.strip() or None
    elif name == "remote-mta":
        rcpt.remote_mta = typed_value(value) or None
