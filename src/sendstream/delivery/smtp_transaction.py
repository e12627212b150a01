"""One mail transaction (MAIL, RCPT..., DATA, the message) on a pooled
connection, and what each SMTP answer means for each recipient:

- 2xx -> sent; 4xx -> deferred; 5xx -> failed. A recipient refused at RCPT
  keeps its own answer; the others go on to DATA.
- A refused MAIL FROM (other than 421) decides every recipient.
- 421 before the message was sent ("closing, try later"), or the connection
  breaking or timing out before then: nothing was delivered, so this raises
  `RelayFailure` and the transport tries another relay (or, for a reused
  connection that failed at once, a fresh one).
- The connection breaking or timing out after the message was sent and
  before the final reply: deferred with `uncertain=True`.

With PIPELINING (RFC 2920) the commands up to DATA go in one write and the
message in a second; without it, one command per round trip, stopping early
when MAIL or every RCPT is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sendstream.delivery.smtp_wire import (
    ConnectionBroken,
    RelayFailure,
    Reply,
    SmtpConnection,
    enhanced_code,
)
from sendstream.delivery.transport import Envelope, Outcome, RecipientResult

# Characters that cannot appear inside <...> of MAIL FROM / RCPT TO.
_BAD_PATH = re.compile(r"[\x00-\x20<>\x7f]")
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")


def outcome_of(code: int) -> Outcome:
    if 200 <= code < 300:
        return "sent"
    if 500 <= code < 600:
        return "failed"
    # 4xx, and anything out of place (a 3xx where none belongs): try again later.
    return "deferred"


def result_of(recipient: str, reply: Reply) -> RecipientResult:
    return RecipientResult(
        recipient=recipient,
        outcome=outcome_of(reply.code),
        code=reply.code,
        enhanced=enhanced_code(reply.text),
        response=reply.text,
    )


def deferred(
    recipient: str, reason: str, code: int | None = None, enhanced: str | None = None
) -> RecipientResult:
    return RecipientResult(
        recipient=recipient, outcome="deferred", code=code, enhanced=enhanced, response=reason
    )


def failed(recipient: str, reason: str) -> RecipientResult:
    return RecipientResult(
        recipient=recipient, outcome="failed", code=None, enhanced=None, response=reason
    )


def wire_data(data: bytes) -> tuple[bytes, int]:
    """The message as DATA sends it (CRLF line ends, dot-stuffed, ending in
    CRLF.CRLF) and its size for the SIZE parameter. A bare CR or LF is made
    CRLF: relays differ on them, which is what SMTP smuggling exploits."""
    # Cheapest order first: counting one byte is about 4x faster than a pair.
    lf = data.count(b"\n")
    if lf != data.count(b"\r") or lf != data.count(b"\r\n"):
        data = _LINE_ENDS.sub(b"\r\n", data)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    size = len(data)
    if data.startswith(b"."):
        data = b"." + data
    # (replace returns the same object when there is nothing to replace)
    return data.replace(b"\n.", b"\n..") + b".\r\n", size


def unsendable(address: str) -> bool:
    """True for an address that cannot go into MAIL FROM / RCPT TO at all."""
    return not address or "@" not in address or _BAD_PATH.search(address) is not None


def refused_locally(envelope: Envelope) -> tuple[RecipientResult, ...] | None:
    """Every recipient's outcome when nothing of the envelope can be sent
    (no connection needed), else None."""
    if _BAD_PATH.search(envelope.mail_from):
        reason = f"the return path {envelope.mail_from[:200]!r} cannot be sent in MAIL FROM"
        return tuple(failed(r, reason) for r in envelope.recipients)
    if all(unsendable(r) for r in envelope.recipients):
        return tuple(failed(r, "not an address SMTP can send to") for r in envelope.recipients)
    return None


@dataclass(frozen=True, slots=True)
class Transacted:
    results: tuple[RecipientResult, ...]
    uncertain: bool = False


async def transact(
    conn: SmtpConnection, envelope: Envelope, *, command_timeout: float, data_timeout: float
) -> Transacted:
    """Run the transaction; raises `RelayFailure` when nothing was delivered
    and another relay (or connection) should be tried."""
    recipients = envelope.recipients
    results: list[RecipientResult | None] = [None] * len(recipients)
    relay = conn.relay.name

    mail_from = envelope.mail_from
    if _BAD_PATH.search(mail_from) or (not mail_from.isascii() and not conn.smtputf8):
        reason = f"the return path {mail_from[:200]!r} cannot be sent in MAIL FROM"
        return Transacted(tuple(failed(r, reason) for r in recipients))
    utf8 = not mail_from.isascii()

    rcpt_commands: list[bytes] = []
    rcpt_index: list[int] = []
    for i, recipient in enumerate(recipients):
        if unsendable(recipient):
            results[i] = failed(recipient, "not an address SMTP can send to")
        elif not recipient.isascii() and not conn.smtputf8:
            results[i] = failed(
                recipient, f"the address needs SMTPUTF8, which {relay} does not offer"
            )
        else:
            utf8 = utf8 or not recipient.isascii()
            rcpt_commands.append(b"RCPT TO:<" + recipient.encode() + b">")
            rcpt_index.append(i)
    if not rcpt_index:
        return Transacted(tuple(r for r in results if r is not None))

    payload, size = wire_data(envelope.data)
    mail = b"MAIL FROM:<" + mail_from.encode() + b">"
    if conn.size_limit is not None:
        mail += b" SIZE=%d" % size
    if conn.eightbitmime and not payload.isascii():
        mail += b" BODY=8BITMIME"
    if utf8:
        mail += b" SMTPUTF8"
    commands = [b"RSET"] if conn.dirty else []
    commands += [mail, *rcpt_commands, b"DATA"]
    first_mail = 1 if conn.dirty else 0

    replies = await _exchange(conn, commands, first_mail, len(rcpt_commands), command_timeout)
    # Anything but a completed DATA leaves state on the relay: RSET next time.
    conn.dirty = True

    def relay_failure(reply: Reply, what: str, *, stale: bool = False) -> RelayFailure:
        conn.close(quit=False)
        return RelayFailure(
            f"{relay} answered {what} with {reply.code} {reply.text}",
            code=reply.code,
            reply_text=reply.text,
            stale=stale,
        )

    if first_mail and replies[0].code != 250:
        raise relay_failure(replies[0], "RSET", stale=True)
    mail_reply = replies[first_mail]
    if mail_reply.code == 421:
        raise relay_failure(mail_reply, "MAIL FROM", stale=conn.reused)
    if not 200 <= mail_reply.code < 300:
        for i in rcpt_index:
            results[i] = result_of(recipients[i], mail_reply)
        return Transacted(_complete(results))

    accepted: list[int] = []
    rcpt_replies = replies[first_mail + 1 : first_mail + 1 + len(rcpt_index)]
    for i, reply in zip(rcpt_index, rcpt_replies, strict=False):
        if reply.code == 421:
            raise relay_failure(reply, "RCPT TO")
        if 200 <= reply.code < 300:
            accepted.append(i)
        else:
            results[i] = result_of(recipients[i], reply)
    data_reply = replies[-1] if len(replies) == len(commands) else None
    if data_reply is not None and data_reply.code == 421:
        raise relay_failure(data_reply, "DATA")
    if not accepted:
        if data_reply is not None and data_reply.code == 354:
            # Only a confused relay says "go ahead" with no recipient: end the empty message.
            await _exchange_one(conn, b".\r\n", command_timeout)
        return Transacted(_complete(results))
    if data_reply is None or (200 <= data_reply.code < 400 and data_reply.code != 354):
        # A relay that takes DATA as anything but "go ahead" (or says nothing,
        # which cannot happen here) is out of step: nothing was sent.
        conn.close(quit=False)
        got = f"{data_reply.code} {data_reply.text}" if data_reply else "nothing"
        reason = f"{relay} answered DATA with {got} instead of 354: the message was not sent"
        for i in accepted:
            results[i] = deferred(recipients[i], reason)
        return Transacted(_complete(results))
    if data_reply.code != 354:
        for i in accepted:
            results[i] = result_of(recipients[i], data_reply)
        return Transacted(_complete(results))

    try:
        conn.wire.send(payload, 1)
    except ConnectionBroken as exc:
        # Closed before a byte of the message went out: safe to try elsewhere.
        conn.close(quit=False)
        raise RelayFailure(f"{exc} ({relay}, before the message was sent)") from exc
    # The message is out: from here on a broken connection may have delivered it.
    try:
        final = await conn.wire.read(data_timeout)
    except ConnectionBroken as exc:
        conn.close(quit=False)
        reason = f"{exc} after the message was sent to {relay}: it may have been delivered"
        for i in accepted:
            results[i] = deferred(recipients[i], reason)
        return Transacted(_complete(results), uncertain=True)
    conn.dirty = False
    conn.transactions += 1
    if final.code == 421:
        conn.close(quit=False)
    for i in accepted:
        results[i] = result_of(recipients[i], final)
    return Transacted(_complete(results))


async def _exchange(
    conn: SmtpConnection, commands: list[bytes], first_mail: int, rcpts: int, within: float
) -> list[Reply]:
    """Replies to `commands`: all of them when pipelining; otherwise one
    round trip each, stopping once the rest cannot matter (RSET or MAIL
    refused, a 421, every RCPT refused). A broken connection before the
    first useful reply raises `RelayFailure` (stale when the connection was
    reused and nothing was accepted yet)."""
    wire = conn.wire
    replies: list[Reply] = []
    try:
        if conn.pipelining:
            wire.send(b"\r\n".join(commands) + b"\r\n", len(commands))
            for _ in commands:
                replies.append(await wire.read(within))
            return replies
        rcpt_ok = False
        for n, command in enumerate(commands):
            wire.send(command + b"\r\n", 1)
            reply = await wire.read(within)
            replies.append(reply)
            if reply.code == 421:
                break
            if n < first_mail and reply.code != 250:
                break
            if n == first_mail and not 200 <= reply.code < 300:
                break
            if first_mail < n <= first_mail + rcpts:
                rcpt_ok = rcpt_ok or 200 <= reply.code < 300
                if n == first_mail + rcpts and not rcpt_ok:
                    break
        return replies
    except ConnectionBroken as exc:
        # A 421 already read explains the close better than "connection lost".
        if replies and replies[-1].code == 421:
            return replies
        conn.close(quit=False)
        mail_ok = len(replies) > first_mail and 200 <= replies[first_mail].code < 300
        raise RelayFailure(
            f"{exc} ({conn.relay.name}, before the message was sent)",
            stale=conn.reused and not mail_ok,
        ) from exc


async def _exchange_one(conn: SmtpConnection, data: bytes, within: float) -> Reply | None:
    try:
        conn.wire.send(data, 1)
        return await conn.wire.read(within)
    except ConnectionBroken:
        conn.close(quit=False)
        return None


def _complete(results: list[RecipientResult | None]) -> tuple[RecipientResult, ...]:
    done = tuple(r for r in results if r is not None)
    if len(done) != len(results):
        raise RuntimeError("a recipient was left without an outcome")
    return done
