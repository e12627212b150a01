# ruff: noqa: E501, RUF001 - the messages are kept as their servers write them, one line each
"""Writes the constructed part of the bounce corpus: one .eml per (format,
case), each in the real layout and wording of that MTA or provider, with
the remote server's diagnostic taken from the CASES table (real wording of
Gmail, Outlook, Yahoo, Postfix, Exim, Proofpoint, Spamhaus ...), and the
expected answers in labels.csv.

    .venv/bin/python tests/bounces/corpus/make_corpus.py

The hand-written files (rfc*.eml, arf-*.eml, auto-*.eml ...) are not
generated: their labels are kept in HAND_LABELS below and written with the
rest. Addresses are example.com/.net/.org only; the VERP return path is a
well-formed but unsigned `bounces+` address.
"""

from __future__ import annotations

import base64
import csv
import quopri
import zlib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERP = "bounces+Q2hhcmxlcy1CYWJiYWdlLTE4MzMtYW5hbHl0aWNhbC1lbmdpbmUtbm90ZXMtYWRh@bounce.example.org"
FROM = "News <news@example.org>"
DATE = "Tue, 24 Nov 2026 10:15:02 +0000"


@dataclass(frozen=True)
class Case:
    name: str
    status: str | None  # what the report says (None: only a reply code, or nothing)
    diag: str  # the remote server's words; {rcpt} is replaced
    reason: str
    hard: bool

    def expected_status(self) -> str:
        if self.status:
            return self.status
        head = self.diag[:3]
        if head.isdigit() and head[0] in "45":
            return f"{head[0]}.0.0"
        return ""


CASES = [
    Case(
        "unknown-postfix",
        "5.1.1",
        "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in local recipient table",
        "user_unknown",
        True,
    ),
    Case(
        "unknown-gmail",
        "5.1.1",
        "550-5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. Learn more at https://support.google.com/mail/?p=NoSuchUser a1si1234567qkb.12 - gsmtp",
        "user_unknown",
        True,
    ),
    Case(
        "unknown-o365",
        "5.1.10",
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient {rcpt} not found by SMTP address lookup",
        "user_unknown",
        True,
    ),
    Case(
        "unknown-outlook",
        "5.5.0",
        "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302). [DB5EUR03FT012.eop-EUR03.prod.protection.outlook.com]",
        "user_unknown",
        True,
    ),
    Case(
        "unknown-yahoo",
        None,
        "554 delivery error: dd This user doesn't have a yahoo.com account ({rcpt}) [0] - mta1234.mail.bf1.yahoo.com",
        "user_unknown",
        True,
    ),
    Case("unknown-571-trap", "5.7.1", "550 5.7.1 <{rcpt}>... User unknown", "user_unknown", True),
    Case(
        "unknown-exchange",
        "5.1.1",
        "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found",
        "user_unknown",
        True,
    ),
    Case("unknown-sendmail", "5.1.1", "550 5.1.1 <{rcpt}>... User unknown", "user_unknown", True),
    Case(
        "unknown-mailru",
        None,
        "550 Message was not accepted -- invalid mailbox. Local mailbox {rcpt} is unavailable: user not found",
        "user_unknown",
        True,
    ),
    Case("unknown-yandex", "5.7.1", "550 5.7.1 No such user!", "user_unknown", True),
    Case(
        "unknown-icloud", "5.1.1", "550 5.1.1 <{rcpt}>: user does not exist", "user_unknown", True
    ),
    Case(
        "unknown-gmx",
        None,
        "550 Requested action not taken: mailbox unavailable",
        "user_unknown",
        True,
    ),
    Case(
        "unknown-dbeb",
        "5.4.1",
        "550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [AM7EUR03FT051.eop-EUR03.prod.protection.outlook.com]",
        "user_unknown",
        True,
    ),
    Case("unknown-exim-local", None, "550 Unknown user", "user_unknown", True),
    Case(
        "host-postfix",
        "5.4.4",
        "Host or domain name not found. Name service error for name=example.invalid type=A: Host not found",
        "host_unknown",
        True,
    ),
    Case("host-nullmx", "5.1.10", "556 5.1.10 Recipient address has null MX", "host_unknown", True),
    Case("host-gmail", None, "DNS Error: Domain name not found", "host_unknown", True),
    Case(
        "full-gmail",
        "5.2.2",
        "552-5.2.2 The email account that you tried to reach is over quota. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaPerm - gsmtp",
        "mailbox_full",
        False,
    ),
    Case(
        "full-temp-gmail",
        "4.2.2",
        "452-4.2.2 The email account that you tried to reach is over quota. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp - gsmtp",
        "mailbox_full",
        False,
    ),
    Case(
        "full-dovecot",
        "5.2.2",
        "552 5.2.2 <{rcpt}>: Quota exceeded (mailbox for user is full)",
        "mailbox_full",
        False,
    ),
    Case(
        "full-o365",
        "5.2.2",
        "554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded",
        "mailbox_full",
        False,
    ),
    Case("full-521-trap", "5.2.1", "550 5.2.1 <{rcpt}>: Mailbox is full", "mailbox_full", False),
    Case(
        "suspended-gmail",
        "5.2.1",
        "550-5.2.1 The email account that you tried to reach is disabled. Learn more at https://support.google.com/mail/?p=DisabledUser - gsmtp",
        "suspended",
        True,
    ),
    Case(
        "suspended-yahoo",
        None,
        "554 delivery error: dd Sorry your message to {rcpt} cannot be delivered. This mailbox is disabled (554.30). - mta1001.mail.gq1.yahoo.com",
        "suspended",
        True,
    ),
    Case(
        "suspended-icloud", "5.1.1", "550 5.1.1 <{rcpt}>: inactive email address", "suspended", True
    ),
    Case(
        "suspended-generic",
        "5.2.1",
        "550 5.2.1 <{rcpt}>... Mailbox disabled for this recipient",
        "suspended",
        True,
    ),
    Case(
        "toolarge-gmail",
        "5.3.4",
        "552-5.3.4 Your message exceeded Google's message size limits. Please visit https://support.google.com/mail/?p=MaxSizeError to view our size guidelines. - gsmtp",
        "message_too_large",
        False,
    ),
    Case(
        "toolarge-postfix",
        "5.3.4",
        "552 5.3.4 Message size exceeds fixed limit",
        "message_too_large",
        False,
    ),
    Case(
        "toolarge-exchange",
        "5.2.3",
        "552 5.2.3 Message exceeds maximum fixed size",
        "message_too_large",
        False,
    ),
    Case(
        "spam-spamhaus",
        "5.7.1",
        "554 5.7.1 Service unavailable; Client host [192.0.2.25] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.25",
        "spam_blocked",
        False,
    ),
    Case(
        "spam-gmail",
        "5.7.1",
        "550-5.7.1 [192.0.2.25] Our system has detected that this message is likely unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been blocked. - gsmtp",
        "spam_blocked",
        False,
    ),
    Case(
        "spam-outlook",
        "5.7.1",
        "550 5.7.1 Unfortunately, messages from [192.0.2.25] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150). You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors.",
        "spam_blocked",
        False,
    ),
    Case(
        "spam-proofpoint",
        None,
        "554 Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.25",
        "spam_blocked",
        False,
    ),
    Case(
        "spam-barracuda",
        "5.7.1",
        "554 5.7.1 Service unavailable; Client host [192.0.2.25] blocked using Barracuda Reputation; http://www.barracudanetworks.com/reputation/?pr=1&ip=192.0.2.25",
        "spam_blocked",
        False,
    ),
    Case(
        "spam-mimecast",
        "5.7.1",
        "554 5.7.1 [P2] Message blocked due to spam content in the message",
        "spam_blocked",
        False,
    ),
    Case(
        "spam-tss09",
        "5.7.2",
        "553 5.7.2 [TSS09] All messages from 192.0.2.25 will be permanently deferred; Retrying will NOT succeed. See https://postmaster.yahooinc.com/error-codes",
        "spam_blocked",
        False,
    ),
    Case(
        "spam-o365-banned",
        "5.7.606",
        "550 5.7.606 Access denied, banned sending IP [192.0.2.25]. To request removal from this list please visit https://sender.office.com/ and follow the directions.",
        "spam_blocked",
        False,
    ),
    Case(
        "spam-o365-708",
        "5.7.708",
        "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.",
        "spam_blocked",
        False,
    ),
    Case(
        "spam-virus-gmail",
        "5.7.0",
        "552-5.7.0 This message was blocked because its content presents a potential security issue. Please visit https://support.google.com/mail/?p=BlockedMessage to review our message content and attachment content guidelines. - gsmtp",
        "spam_blocked",
        False,
    ),
    Case(
        "auth-dmarc-gmail",
        "5.7.26",
        "550-5.7.26 Unauthenticated email from example.org is not accepted due to domain's DMARC policy. Please contact the administrator of example.org domain if this was a legitimate mail. - gsmtp",
        "auth_failure",
        False,
    ),
    Case(
        "auth-unauth-gmail",
        "5.7.26",
        "550-5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail requires all senders to authenticate with either SPF or DKIM. - gsmtp",
        "auth_failure",
        False,
    ),
    Case(
        "auth-spf",
        "5.7.23",
        "550 5.7.23 The message was rejected because of Sender Policy Framework violation",
        "auth_failure",
        False,
    ),
    Case(
        "auth-ptr-gmail",
        "5.7.25",
        "550-5.7.25 [192.0.2.25] The IP address sending this message does not have a PTR record setup, or the corresponding forward DNS entry does not point to the sending IP. - gsmtp",
        "auth_failure",
        False,
    ),
    Case(
        "auth-dmarc-o365",
        "5.7.509",
        "550 5.7.509 Access denied, sending domain example.org does not pass DMARC verification and has a DMARC policy of reject.",
        "auth_failure",
        False,
    ),
    Case(
        "rate-gmail-421-trap",
        "4.2.1",
        "450-4.2.1 The user you are trying to contact is receiving mail too quickly. Please resend your message at a later time. - gsmtp",
        "rate_limited",
        False,
    ),
    Case(
        "rate-gmail-428",
        "4.7.28",
        "421-4.7.28 [192.0.2.25] Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited. - gsmtp",
        "rate_limited",
        False,
    ),
    Case(
        "rate-yahoo-tss04",
        "4.7.0",
        "421 4.7.0 [TSS04] Messages from 192.0.2.25 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
        "rate_limited",
        False,
    ),
    Case(
        "rate-o365-busy",
        "4.7.500",
        "451 4.7.500 Server busy. Please try again later from [192.0.2.25]. (S77714)",
        "rate_limited",
        False,
    ),
    Case(
        "rate-hotmail-rp",
        None,
        "421 RP-001 (BAY004-MC1F2) Unfortunately, some messages from 192.0.2.25 weren't sent. Please try again. We have limits for how many messages can be sent per hour and per day.",
        "rate_limited",
        False,
    ),
    Case(
        "rate-generic",
        "4.7.1",
        "450 4.7.1 Too many connections from your IP, slow down",
        "rate_limited",
        False,
    ),
    Case(
        "relay-postfix", "5.7.1", "554 5.7.1 <{rcpt}>: Relay access denied", "relay_denied", False
    ),
    Case(
        "relay-qmail",
        "5.7.1",
        "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
        "relay_denied",
        False,
    ),
    Case(
        "network-refused",
        "4.4.1",
        "connect to mx.example.com[192.0.2.10]:25: Connection refused",
        "network",
        False,
    ),
    Case(
        "network-timeout",
        "4.4.2",
        "conversation with mx.example.com[192.0.2.10] timed out while receiving the initial server greeting",
        "network",
        False,
    ),
    Case(
        "network-tls",
        "4.7.4",
        "TLS is required, but was not offered by host mx.example.com[192.0.2.10]",
        "network",
        False,
    ),
    Case("expired-exim", None, "retry timeout exceeded", "expired", False),
    Case(
        "expired-447", "4.4.7", "Message expired, delivery attempts over 2 days", "expired", False
    ),
    Case(
        "expired-547",
        "5.4.7",
        "550 5.4.7 Message expired: unable to deliver in 2880 minutes.<421 4.4.0 Unable to lookup DNS for example.com>",
        "expired",
        False,
    ),
    Case(
        "policy-greylist",
        "4.7.1",
        "450 4.7.1 <{rcpt}>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.com.html",
        "policy",
        False,
    ),
    Case(
        "policy-gmail",
        "5.7.1",
        "550-5.7.1 The user or domain that you are sending to (or from) has a policy that prohibited the mail that you sent. Please contact your domain administrator for further details. - gsmtp",
        "policy",
        False,
    ),
    Case(
        "policy-sender",
        "5.1.8",
        "553 5.1.8 <news@example.org>: Sender address rejected: Domain not found",
        "policy",
        False,
    ),
    Case(
        "policy-yahoo",
        "5.7.9",
        "554 5.7.9 Message not accepted for policy reasons. See https://postmaster.yahooinc.com/error-codes",
        "policy",
        False,
    ),
    Case(
        "policy-mimecast",
        None,
        "550 Administrative prohibition - envelope blocked - https://community.mimecast.com/docs/DOC-1369#550",
        "policy",
        False,
    ),
    Case(
        "unknown-reason-5",
        "5.0.0",
        "550 5.0.0 Unknown error; contact the administrator",
        "unknown",
        True,
    ),
    Case("unknown-reason-4", "4.3.0", "451 4.3.0 Temporary system failure", "unknown", False),
]
BY_NAME = {c.name: c for c in CASES}
DELAY_CASES = [c for c in CASES if c.expected_status().startswith("4")]


def headers(from_: str, subject: str, extra: str = "", to: str = VERP) -> str:
    return (
        f"Return-Path: <>\nDelivered-To: {to}\nDate: {DATE}\nFrom: {from_}\nTo: {to}\n"
        f"Subject: {subject}\nMessage-ID: <report.{zlib.crc32(subject.encode())}@mx.example.net>\n"
        f"{extra}"
    )


def original(rcpt: str, n: int) -> str:
    return (
        f"Return-Path: <{VERP}>\nReceived: from mail.example.org (mail.example.org [198.51.100.7])\n"
        f"\tby mx.example.net with ESMTPS id 4XYZ{n}; {DATE}\nDKIM-Signature: v=1; a=rsa-sha256; "
        f"d=example.org; s=s1; h=from:to:subject; bh=abc=; b=def=\nFrom: {FROM}\nTo: {rcpt}\n"
        f"Subject: Your November newsletter\nDate: {DATE}\n"
        f"Message-ID: <msg-{n}@mail.example.org>\nMIME-Version: 1.0\n"
        f"Content-Type: text/plain; charset=utf-8\n"
    )


def dsn_fields(rcpt: str, action: str, status: str, diag: str | None, mta: str | None) -> str:
    out = f"Final-Recipient: rfc822; {rcpt}\nOriginal-Recipient: rfc822;{rcpt}\nAction: {action}\nStatus: {status}\n"
    if mta:
        out += f"Remote-MTA: dns; {mta}\n"
    if diag:
        out += f"Diagnostic-Code: smtp; {diag}\n"
    return out


def report(
    head: str,
    text: str,
    status_part: str,
    rcpt: str,
    n: int,
    *,
    headers_only: bool = True,
    boundary: str = "B0UNDARY.1732443302/mx.example.net",
    html: str | None = None,
) -> str:
    body = f'{head}MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status;\n\tboundary="{boundary}"\n\nThis is a MIME-encapsulated message.\n\n'
    if html is None:
        body += f"--{boundary}\nContent-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n\n{text}\n"
    else:
        alt = "ALT-" + boundary
        body += (
            f'--{boundary}\nContent-Type: multipart/alternative; boundary="{alt}"\n\n'
            f"--{alt}\nContent-Type: text/plain; charset=us-ascii\n\n{text}\n"
            f"--{alt}\nContent-Type: text/html; charset=us-ascii\n\n{html}\n--{alt}--\n"
        )
    body += f"--{boundary}\nContent-Description: Delivery report\nContent-Type: message/delivery-status\n\n{status_part}\n"
    if headers_only:
        body += f"--{boundary}\nContent-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers\n\n{original(rcpt, n)}\n"
    else:
        body += f"--{boundary}\nContent-Description: Undelivered Message\nContent-Type: message/rfc822\n\n{original(rcpt, n)}\nHello Ada, here is the news.\n\n"
    return body + f"--{boundary}--\n"


def fmt(c: Case, rcpt: str) -> str:
    return c.diag.replace("{rcpt}", rcpt)


# --- one function per format: (case, rcpt, n) -> (message text, kind) ---------------


def postfix_dsn(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = (
        "This is the mail system at host mail.example.net.\n\nI'm sorry to have to inform you that your message could not\n"
        "be delivered to one or more recipients. It's attached below.\n\nFor further assistance, please send mail to postmaster.\n\n"
        "If you do so, please include this problem report. You can\ndelete your own text from the attached returned message.\n\n"
        f"                   The mail system\n\n<{rcpt}>: host mx.example.com[192.0.2.10] said: {d} (in reply to RCPT TO command)\n"
    )
    st = f"Reporting-MTA: dns; mail.example.net\nX-Postfix-Queue-ID: 4XYZ{n}\nX-Postfix-Sender: rfc822; {VERP}\nArrival-Date: {DATE}\n\n"
    st += dsn_fields(rcpt, "failed", c.status or "5.0.0", d, "mx.example.com")
    head = headers(
        "MAILER-DAEMON@mail.example.net (Mail Delivery System)",
        "Undelivered Mail Returned to Sender",
        "Auto-Submitted: auto-replied\n",
    )
    return report(head, text, st, rcpt, n), "bounce"


def postfix_delay(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = (
        "This is the mail system at host mail.example.net.\n\n####################################################################\n"
        "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n####################################################################\n\n"
        "Your message could not be delivered for more than 4 hour(s).\nIt will be retried until it is 5 day(s) old.\n\n"
        f"                   The mail system\n\n<{rcpt}>: {d}\n"
    )
    st = f"Reporting-MTA: dns; mail.example.net\nArrival-Date: {DATE}\n\n"
    st += dsn_fields(rcpt, "delayed", c.status or "4.0.0", d, None)
    st += "Will-Retry-Until: Sun, 29 Nov 2026 10:15:02 +0000\n"
    head = headers(
        "MAILER-DAEMON@mail.example.net (Mail Delivery System)",
        "Delayed Mail (still being retried)",
        "Auto-Submitted: auto-replied\n",
    )
    return report(head, text, st, rcpt, n), "delay"


def postfix_old(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    b = "4XYZ.1000/mail.example.net"
    text = (
        "This is the Postfix program at host mail.example.net.\n\nI'm sorry to have to inform you that the message returned\n"
        "below could not be delivered to one or more destinations.\n\nFor further assistance, please send mail to <postmaster>\n\n"
        f"\t\t\tThe Postfix program\n\n<{rcpt}>: host mx.example.com[192.0.2.10] said: {d[:60]}\n    {d[60:]} (in reply to RCPT TO command)\n"
    )
    head = headers(
        "MAILER-DAEMON@mail.example.net (Mail Delivery System)",
        "Undelivered Mail Returned to Sender",
    )
    msg = f'{head}MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="{b}"\n\n--{b}\nContent-Description: Notification\nContent-Type: text/plain\n\n{text}\n'
    msg += f"--{b}\nContent-Description: Undelivered Message\nContent-Type: message/rfc822\n\n{original(rcpt, n)}\nHello\n\n--{b}--\n"
    return msg, "bounce"


def exim(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    if d[:3].isdigit():
        detail = f"    SMTP error from remote mail server after RCPT TO:<{rcpt}>:\n    host mx.example.com [192.0.2.10]: {d}"
    else:
        detail = f"    {d}"
    text = (
        "This message was created automatically by mail delivery software.\n\nA message that you sent could not be delivered to one or more of its\n"
        f"recipients. This is a permanent error. The following address(es) failed:\n\n  {rcpt}\n{detail}\n\n"
        f"------ This is a copy of the message, including all the headers. ------\n\n{original(rcpt, n)}\nHello\n"
    )
    head = headers(
        "Mail Delivery System <Mailer-Daemon@mx.example.net>",
        "Mail delivery failed: returning message to sender",
        "Auto-Submitted: auto-replied\nX-Failed-Recipients: " + rcpt + "\n",
    )
    return head + "\n" + text, "bounce"


def exim_delay(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = (
        "This message was created automatically by mail delivery software.\n\nA message that you sent has not yet been delivered to one or more of its\n"
        "recipients after more than 24 hours on the queue on mx.example.net.\n\nThe message identifier is:     1tKxyz-000ABC-12\n"
        f"The subject of the message is: Your November newsletter\n\nThe address to which the message has not yet been delivered is:\n\n  {rcpt}\n"
        f"    host mx.example.com [192.0.2.10]: {d}\n\nNo action is required on your part. Delivery attempts will continue for\nsome time, and this warning may be repeated at intervals if the message\nremains undelivered. Eventually the mail delivery software will give up,\nand when that happens, the message will be returned to you.\n"
    )
    head = headers(
        "Mail Delivery System <Mailer-Daemon@mx.example.net>",
        "Warning: message 1tKxyz-000ABC-12 delayed 24 hours",
        "Auto-Submitted: auto-replied\n",
    )
    return head + "\n" + text, "delay"


def sendmail_dsn(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = (
        f"The original message was received at {DATE}\nfrom mail.example.org [198.51.100.7]\n\n"
        f"   ----- The following addresses had permanent fatal errors -----\n<{rcpt}>\n    (reason: {d})\n\n"
        f"   ----- Transcript of session follows -----\n... while talking to mx.example.com.:\n>>> DATA\n<<< {d}\n"
    )
    st = f"Reporting-MTA: dns; mx.example.net\nReceived-From-MTA: DNS; mail.example.org\nArrival-Date: {DATE}\n\n"
    st += dsn_fields(rcpt, "failed", c.status or "5.0.0", d, "mx.example.com")
    st += f"Last-Attempt-Date: {DATE}\n"
    head = headers(
        "Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>",
        "Returned mail: see transcript for details",
        "Auto-Submitted: auto-generated (failure)\n",
    )
    return report(
        head, text, st, rcpt, n, boundary=f"4AM9{n}.1732443302/mx.example.net", headers_only=False
    ), "bounce"


def sendmail_old(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = (
        f"The original message was received at {DATE}\nfrom mail.example.org [198.51.100.7]\n\n"
        f"   ----- The following addresses had permanent fatal errors -----\n{rcpt}\n\n"
        f"   ----- Transcript of session follows -----\n... while talking to mx.example.com.:\n>>> MAIL From:<{VERP}> SIZE=2048\n<<< 250 2.1.0 <{VERP}>... Sender ok\n"
        f">>> RCPT To:<{rcpt}>\n<<< {d}\n554 5.0.0 Service unavailable\n\n"
        f"   ----- Original message follows -----\n\n{original(rcpt, n)}\nHello\n"
    )
    head = headers(
        "Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>",
        "Returned mail: User unknown"
        if c.reason == "user_unknown"
        else "Returned mail: see transcript for details",
    )
    return head + "\n" + text, "bounce"


def qmail(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = (
        "Hi. This is the qmail-send program at mx.example.net.\nI'm afraid I wasn't able to deliver your message to the following addresses.\n"
        f"This is a permanent error; I've given up. Sorry it didn't work out.\n\n<{rcpt}>:\n192.0.2.10 does not like recipient.\nRemote host said: {d}\nGiving up on 192.0.2.10.\n\n"
        f"--- Below this line is a copy of the message.\n\n{original(rcpt, n)}\nHello\n"
    )
    return headers("MAILER-DAEMON@mx.example.net", "failure notice") + "\n" + text, "bounce"


def exchange2003(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = (
        "Your message did not reach some or all of the intended recipients.\n\n      Subject:\tYour November newsletter\n"
        f"      Sent:\t11/24/2026 10:15 AM\n\nThe following recipient(s) could not be reached:\n\n      {rcpt} on 11/24/2026 10:15 AM\n"
        f"            {d}\n            <mail.example.com #{c.status or '5.0.0'}>\n"
    )
    b = "----_=_NextPart_001_01C2"
    head = headers(
        "System Administrator <postmaster@example.com>",
        "Undeliverable: Your November newsletter",
        "X-MS-Embedded-Report: \n",
    )
    msg = f'{head}MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="{b}"\n\n--{b}\nContent-Type: text/plain; charset="iso-8859-1"\n\n{text}\n'
    msg += f"--{b}\nContent-Type: message/rfc822\n\n{original(rcpt, n)}\nHello\n\n--{b}--\n"
    return msg, "bounce"


def exchange2007(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = (
        f"Delivery has failed to these recipients or groups:\n\n{rcpt}\nThe e-mail system had a problem processing this message. "
        "Microsoft Exchange will not try to redeliver this message for you.\n\n\n\n\n\n"
        f"Diagnostic information for administrators:\n\nGenerating server: mail.example.com\n\n{rcpt}\n#{d} ##\n\n"
        "Original message headers:\n\n" + original(rcpt, n)
    )
    head = headers(
        "Microsoft Exchange <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@example.com>",
        "Undeliverable: Your November newsletter",
    )
    msg = f'{head}MIME-Version: 1.0\nContent-Type: text/plain; charset="us-ascii"\nContent-Transfer-Encoding: quoted-printable\n\n'
    return msg + qp(text), "bounce"


def qp(text: str) -> str:
    return quopri.encodestring(text.encode("utf-8")).decode("ascii")


def office365(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    domain = rcpt.split("@")[1]
    text = (
        f"Your message to {rcpt} couldn't be delivered.\n{rcpt.split('@')[0]} wasn't found at {domain}.\n"
        f"news           Office 365           {rcpt.split('@')[0]}\nAction Required                      Recipient\n\n"
        f"Diagnostic information for administrators:\n\nGenerating server: AM7PR03MB6500.eurprd03.prod.outlook.com\n\n{rcpt}\nRemote Server returned '{d}'\n"
    )
    html = (
        f'<html><body><p>Your message to <a href="mailto:{rcpt}">{rcpt}</a> couldn\'t be delivered.</p>'
        f"<p><b>Diagnostic information for administrators:</b></p><p>{rcpt}<br>Remote Server returned '{d}'</p></body></html>"
    )
    st = f"Reporting-MTA: dns;AM7PR03MB6500.eurprd03.prod.outlook.com\nReceived-From-MTA: dns;mail.example.org\nArrival-Date: {DATE}\n\n"
    st += dsn_fields(rcpt, "failed", c.status or "5.0.0", d, None)
    st += "X-Display-Name: Ada\n"
    head = headers(
        "postmaster@example.onmicrosoft.com",
        "Undeliverable: Your November newsletter",
        "X-MS-Exchange-Message-Is-Ndr: \nAuto-Submitted: auto-replied\n",
    )
    return report(head, text, st, rcpt, n, html=html, boundary=f"_{n}_x_ndr_boundary_"), "bounce"


def gmail_dsn(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    if c.reason in ("user_unknown", "suspended"):
        title = "** Address not found **"
        why = f"Your message wasn't delivered to {rcpt} because the address couldn't be found, or is unable to receive mail."
    else:
        title = "** Message not delivered **"
        why = f"There was a problem delivering your message to {rcpt}. See the technical details below."
    text = f"\n{title}\n\n{why}\n\nThe response from the remote server was:\n{d}\n"
    st = f"Reporting-MTA: dns; googlemail.com\nReceived-From-MTA: dns; news@example.org\nArrival-Date: {DATE}\nX-Original-Message-ID: <msg-{n}@mail.example.org>\n\n"
    st += dsn_fields(rcpt, "failed", c.status or "5.0.0", d, "mx.example.com. 192.0.2.10")
    head = headers(
        "Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
        "Delivery Status Notification (Failure)",
        "Auto-Submitted: auto-replied\n",
    )
    return report(
        head, text, st, rcpt, n, boundary=f"000000000000a1b2c3{n:04d}", headers_only=False
    ), "bounce"


def gmail_delay(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = (
        f"\n** Delivery incomplete **\n\nThere was a temporary problem delivering your message to {rcpt}. Gmail will retry for 46 more hours. "
        f"You'll be notified if the delivery fails permanently.\n\nThe response from the remote server was:\n{d}\n"
    )
    st = f"Reporting-MTA: dns; googlemail.com\nArrival-Date: {DATE}\n\n"
    st += dsn_fields(rcpt, "delayed", c.status or "4.0.0", d, "mx.example.com. 192.0.2.10")
    st += "Will-Retry-Until: Thu, 26 Nov 2026 10:15:02 -0800 (PST)\n"
    head = headers(
        "Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
        "Delivery Status Notification (Delay)",
    )
    return report(head, text, st, rcpt, n, boundary=f"000000000000d1e2f3{n:04d}"), "delay"


def gmail_old(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = (
        f"Delivery to the following recipient failed permanently:\n\n     {rcpt}\n\nTechnical details of permanent failure:\n"
        "Google tried to deliver your message, but it was rejected by the server for the recipient domain example.com by mx.example.com. [192.0.2.10].\n\n"
        f"The error that the other server returned was:\n{d}\n\n----- Original message -----\n\n{original(rcpt, n)}\nHello\n"
    )
    return headers(
        "Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
        "Delivery Status Notification (Failure)",
    ) + "\n" + text, "bounce"


def yahoo(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = (
        "Sorry, we were unable to deliver your message to the following address.\n\n"
        f"<{rcpt}>:\nRemote host said: {d} [RCPT_TO]\n\n--- Below this line is a copy of the message.\n\n{original(rcpt, n)}\nHello\n"
    )
    return headers("MAILER-DAEMON@yahoo.com", "Failure Notice") + "\n" + text, "bounce"


def amazon_ses(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = f"An error occurred while trying to deliver the mail to the following recipients:\r\n{rcpt}\n"
    st = "Reporting-MTA: dns; a27-30.smtp-out.us-west-2.amazonses.com\n\n"
    st += dsn_fields(rcpt, "failed", c.status or "5.0.0", d, "mx.example.com")
    st += f"Last-Attempt-Date: {DATE}\n"
    head = headers(
        "MAILER-DAEMON@amazonses.com",
        "Delivery Status Notification (Failure)",
        "X-SES-Outgoing: 2026.11.24-54.240.27.30\nFeedback-ID: 1.us-west-2.abc=:AmazonSES\n",
    )
    return report(head, text, st, rcpt, n, boundary=f"----=_Part_{n}_1234.1732443302"), "bounce"


def amazon_ses_text(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = f"An error occurred while trying to deliver the mail to the following recipients:\n{rcpt}\n\n{d}\n"
    return headers(
        "MAILER-DAEMON@email-smtp.us-east-1.amazonaws.com", "Undelivered Mail Returned to Sender"
    ) + "\n" + text, "bounce"


def hotmail(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = (
        "This is an automatically generated Delivery Status Notification.\n\nDelivery to the following recipients failed.\n\n"
        f"       {rcpt}\n\nReason: {d}\n"
    )
    b = f"9B095B5ADSN={n}"
    head = headers("postmaster@hotmail.com", "Delivery Status Notification (Failure)")
    msg = f'{head}MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="{b}"\n\n--{b}\nContent-Type: text/plain; charset=unicode-1-1-utf-7\n\n{text}\n'
    msg += f"--{b}\nContent-Type: message/rfc822\n\n{original(rcpt, n)}\nHello\n\n--{b}--\n"
    return msg, "bounce"


def mailru(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = (
        "This message was created automatically by mail delivery software.\n\nA message that you sent could not be delivered to one or more of its\n"
        f"recipients. This is a permanent error. The following address(es) failed:\n\n  {rcpt}\n    SMTP error from remote mail server after RCPT TO:<{rcpt}>:\n"
        f"    host mx.example.com [192.0.2.10]: {d}\n\nСообщение не было доставлено одному или нескольким адресатам.\n\n"
        f"------ This is a copy of the message, including all the headers. ------\n\n{original(rcpt, n)}\n"
    )
    head = headers(
        "Mail Delivery System <mailer-daemon@corp.mail.ru>",
        "=?UTF-8?B?0J3QtdC00L7RgdGC0LDQstC70LXQvdC90L7QtSDRgdC+0L7QsdGJ0LXQvdC40LU=?= Mail delivery failed",
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n",
    )
    return head + "\n" + base64.encodebytes(text.encode("utf-8")).decode("ascii"), "bounce"


def yandex(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = (
        "This is the mail system at host forward100.mail.yandex.net.\n\nI'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients. It's attached below.\n\n"
        "Я очень сожалею, но ваше письмо не может быть доставлено одному или нескольким получателям.\n\n"
        f"<{rcpt}>: host mx.example.com[192.0.2.10] said: {d} (in reply to end of DATA command)\n"
    )
    st = "Reporting-MTA: dns; forward100.mail.yandex.net\n\n" + dsn_fields(
        rcpt, "failed", c.status or "5.0.0", d, "mx.example.com"
    )
    head = headers("mailer-daemon@yandex.ru", "Недоставленное сообщение")
    msg = report(head, text, st, rcpt, n).replace("charset=us-ascii", "charset=utf-8")
    return msg, "bounce"


def domino(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    if c.reason == "user_unknown":
        d = f"User {rcpt.split('@')[0]} ({rcpt}) not listed in Domino Directory"
    text = f"Your message\n\n  Subject: Your November newsletter\n\nwas not delivered to:\n\n  {rcpt}\n\nbecause:\n\n  {d}\n"
    b = f"0__=4EBB{n}"
    head = headers(
        "Postmaster <postmaster@domino.example.com>",
        "DELIVERY FAILURE: User ada not listed in Domino Directory"
        if c.reason == "user_unknown"
        else "DELIVERY FAILURE: Error transferring to mx.example.com",
    )
    msg = f'{head}MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="{b}"\n\n--{b}\nContent-Type: text/plain; charset=ISO-2022-JP\n\n{text}\n--{b}\nContent-Type: message/rfc822\n\n{original(rcpt, n)}\nHi\n\n--{b}--\n'
    return msg, "bounce"


def mdaemon(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = (
        "The attached message had PERMANENT fatal delivery errors!\n\nAfter one or more unsuccessful delivery attempts the attached message has been removed from the mail queue on this server.  "
        "The number and frequency of delivery attempts are determined by local configuration parameters.\n\nYOU SHOULD NOT ATTEMPT TO RESEND THIS MESSAGE.\n\n"
        f"--- Session Transcript ---\n Tue 2026-11-24 10:15:02: Parsing message <mdaemon-{n}.msg>\n Tue 2026-11-24 10:15:02: *  From: {VERP}\n"
        f" Tue 2026-11-24 10:15:02: *  To: {rcpt}\n Tue 2026-11-24 10:15:03: --> RCPT TO:<{rcpt}>\n Tue 2026-11-24 10:15:03: <-- {d}\n--- End Transcript ---\n"
    )
    head = headers(
        "MDaemon@mail.example.com",
        "Permanent Delivery Failure",
        "X-MDDSN-Message: Yes\nX-MDaemon-Deliver-To: " + VERP + "\n",
    )
    return head + "\n" + text, "bounce"


def courier(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = (
        "This is a delivery status notification from mx.example.net,\nrunning the Courier mail server, version 1.1.8.\n\n"
        f"The original message was received on {DATE}\nfrom mail.example.org (mail.example.org [198.51.100.7])\n\n"
        "---------------------------------------------------------------------------\n\n                           UNDELIVERABLE MAIL\n\n"
        f"Your message to the following recipients cannot be delivered:\n\n<{rcpt}>:\n    mx.example.com [192.0.2.10]:\n>>> RCPT TO:<{rcpt}>\n<<< {d}\n\n"
        "---------------------------------------------------------------------------\n"
    )
    # Courier's own DSN carries no Diagnostic-Code: the text has it.
    st = (
        "Reporting-MTA: dns; mx.example.net\nArrival-Date: "
        + DATE
        + "\n\n"
        + dsn_fields(rcpt, "failed", c.status or "5.0.0", None, "mx.example.com")
    )
    head = headers("Courier mail server at mx.example.net <@>", "NOTICE: mail delivery status.")
    return report(head, text, st, rcpt, n, boundary=f"=_courier-{n}-1732443302"), "bounce"


def opensmtpd(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = (
        "Hi!\n\nThis is the MAILER-DAEMON, please DO NOT REPLY to this email.\n\nAn error has occurred while attempting to deliver a message for\n"
        f"the following list of recipients:\n\n{rcpt}: {d}\n\nBelow is a copy of the original message:\n\n{original(rcpt, n)}\nHello\n"
    )
    b = f"{n}.1732443302/mx.example.net"
    head = headers(
        "Mailer Daemon <MAILER-DAEMON@mx.example.net>", "Delivery status notification: error"
    )
    msg = f'{head}MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="{b}"\n\nThis is a MIME-encapsulated message.\n\n--{b}\nContent-Description: Delivery error report\nContent-Type: text/plain; charset=us-ascii\n\n{text}\n--{b}--\n'
    return msg, "bounce"


def messagingserver(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = (
        "This report relates to a message you sent with the following header fields:\n\n"
        f"  Message-id: <msg-{n}@mail.example.org>\n  Date: {DATE}\n  From: {FROM}\n  Subject: Your November newsletter\n\n"
        f"Your message cannot be delivered to the following recipients:\n\n  Recipient address: {rcpt}\n  Reason: Remote SMTP server has rejected address\n"
        f"  Diagnostic code: smtp;{d}\n  Remote system: dns;mx.example.com (TCP|198.51.100.7|47323|192.0.2.10|25) (mx.example.com ESMTP)\n"
    )
    b = f"Boundary_(ID_{n:022d})"
    head = headers(
        "Internet Mail Delivery <postmaster@ms.example.net>",
        "Delivery Notification: Delivery has failed",
    )
    msg = f'{head}MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="{b}"\n\n--{b}\nContent-type: text/plain; charset=us-ascii\nContent-language: en-US\n\n{text}\n'
    msg += f"--{b}\nContent-type: text/rfc822-headers\n\n{original(rcpt, n)}\n--{b}--\n"
    return msg, "bounce"


def groupwise(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = f"The message that you sent was undeliverable to the following:\n\t{rcpt} ({d})\n\nPossibly truncated original message follows:\n\n{original(rcpt, n)}\nHello\n"
    return headers(
        "Mail Delivery System <postmaster@gw.example.com>",
        "Undeliverable Message",
        "X-Mailer: Novell GroupWise Internet Agent 18.2.0\n",
    ) + "\n" + text, "bounce"


def mailmarshal(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = (
        f"Your message:\n\n   From:    {FROM}\n   Subject: Your November newsletter\n\nCould not be delivered because of\n\n{d}\n\n"
        f"The following recipients were affected: \n\n    {rcpt}\n\nAdditional Information\n======================\n\nOriginal Sender:    <{VERP}>\nSender-MTA:         <198.51.100.7>\nRemote-MTA:         <192.0.2.10>\n"
    )
    return headers(
        "MailMarshal@example.com", 'Undeliverable Mail: "Your November newsletter"'
    ) + "\n" + text, "bounce"


def ironport(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = f"The following message to <{rcpt}> was undeliverable.\nThe reason for the problem:\n{c.status or '5.0.0'} - {d}\n"
    return headers(
        "Mail Delivery System <MAILER-DAEMON@iron.example.com>",
        "Delivery Status Notification (Failure)",
    ) + "\n" + text, "bounce"


def imail(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = f"Body of message generated response:\n\n{rcpt}\n{d}\n\nOriginal message follows.\n\n{original(rcpt, n)}\nHello\n"
    return headers(
        "Mail Delivery Subsystem <MAILER-DAEMON@imail.example.com>",
        "Undeliverable Mail",
        "X-Mailer: <SMTP32 v8.22>\n",
    ) + "\n" + text, "bounce"


def notes(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = f"------- Failure Reasons  --------\n\n{d}\n{rcpt}\n\n\n------- Returned Message --------\n{original(rcpt, n)}\nHello\n"
    return headers(
        "Postmaster <postmaster@notes.example.com>", "Undeliverable message"
    ) + "\n" + text, "bounce"


def barracuda(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = f"Your message to: {rcpt}\nwas not delivered for the following reason:\n\n{d}\n\nFor more information, contact the recipient's mail administrator.\n"
    return headers(
        "Barracuda Email Security Service <mailer-daemon@ess.barracudanetworks.com>",
        "Message delivery failure",
    ) + "\n" + text, "bounce"


def mcafee(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = f"--- The following addresses had delivery problems ---\n\n<{rcpt}>   (Permanent error: {d})\n\n--- Transcript of session follows ---\n"
    return headers(
        "postmaster@mcafee.example.com", "Delivery Status Notification (Failure)"
    ) + "\n" + text, "bounce"


def apachejames(c: Case, rcpt: str, n: int) -> tuple[str, str]:
    d = fmt(c, rcpt)
    text = (
        "Hi. This is the James mail server at mail.example.com.\nI'm afraid I wasn't able to deliver your message to the following addresses.\n"
        f"This is a permanent error; I've given up. Sorry it didn't work out.  Below\nI include the list of recipients and the reason why I was unable to deliver\nyour message.\n\nFailed recipient(s):\n{rcpt}\n\nError message:\n{d}\n"
    )
    return headers("mailer-daemon@mail.example.com", "[BOUNCE]") + "\n" + text, "bounce"


FORMATS = {
    "postfix-dsn": (
        postfix_dsn,
        [
            "unknown-postfix",
            "full-dovecot",
            "host-postfix",
            "spam-spamhaus",
            "relay-postfix",
            "network-refused",
            "policy-sender",
            "unknown-reason-5",
        ],
    ),
    "postfix-delay": (
        postfix_delay,
        ["network-refused", "network-timeout", "policy-greylist", "rate-generic", "network-tls"],
    ),
    "postfix-old": (
        postfix_old,
        ["unknown-postfix", "full-521-trap", "spam-barracuda", "toolarge-postfix"],
    ),
    "exim": (
        exim,
        [
            "unknown-exim-local",
            "full-dovecot",
            "expired-exim",
            "spam-spamhaus",
            "toolarge-exchange",
            "auth-spf",
        ],
    ),
    "exim-delay": (exim_delay, ["rate-yahoo-tss04", "full-temp-gmail", "unknown-reason-4"]),
    "sendmail-dsn": (
        sendmail_dsn,
        ["unknown-sendmail", "unknown-571-trap", "full-o365", "spam-proofpoint", "policy-mimecast"],
    ),
    "sendmail-old": (
        sendmail_old,
        ["unknown-sendmail", "suspended-generic", "spam-content-placeholder"],
    ),
    "qmail": (
        qmail,
        ["unknown-sendmail", "relay-qmail", "full-dovecot", "unknown-yandex", "spam-tss09"],
    ),
    "exchange2003": (exchange2003, ["unknown-exchange", "full-o365", "toolarge-exchange"]),
    "exchange2007": (
        exchange2007,
        ["unknown-exchange", "unknown-o365", "spam-o365-banned", "auth-dmarc-o365"],
    ),
    "office365": (
        office365,
        [
            "unknown-o365",
            "unknown-dbeb",
            "full-o365",
            "spam-o365-708",
            "auth-dmarc-o365",
            "expired-547",
        ],
    ),
    "gmail-dsn": (
        gmail_dsn,
        [
            "unknown-gmail",
            "suspended-gmail",
            "full-gmail",
            "toolarge-gmail",
            "spam-gmail",
            "auth-dmarc-gmail",
            "auth-unauth-gmail",
            "auth-ptr-gmail",
            "policy-gmail",
            "spam-virus-gmail",
        ],
    ),
    "gmail-delay": (gmail_delay, ["rate-gmail-421-trap", "rate-gmail-428", "full-temp-gmail"]),
    "gmail-old": (gmail_old, ["unknown-postfix", "host-gmail", "unknown-icloud"]),
    "yahoo": (yahoo, ["unknown-yahoo", "suspended-yahoo", "spam-tss09", "policy-yahoo"]),
    "amazonses": (
        amazon_ses,
        ["unknown-gmail", "full-gmail", "unknown-o365", "spam-spamhaus", "host-nullmx"],
    ),
    "amazonses-text": (amazon_ses_text, ["unknown-postfix", "suspended-icloud"]),
    "hotmail": (hotmail, ["unknown-outlook", "spam-outlook", "rate-hotmail-rp-bounce"]),
    "mailru": (mailru, ["unknown-mailru", "full-dovecot", "suspended-generic"]),
    "yandex": (yandex, ["unknown-yandex", "spam-content-placeholder", "full-dovecot"]),
    "domino": (domino, ["unknown-sendmail", "full-dovecot", "toolarge-postfix"]),
    "mdaemon": (mdaemon, ["unknown-sendmail", "spam-spamhaus", "full-dovecot"]),
    "courier": (courier, ["unknown-sendmail", "full-dovecot", "spam-barracuda"]),
    "opensmtpd": (opensmtpd, ["unknown-postfix", "host-nullmx", "spam-mimecast"]),
    "messagingserver": (messagingserver, ["unknown-sendmail", "full-dovecot", "relay-postfix"]),
    "groupwise": (groupwise, ["unknown-exim-local", "full-521-trap"]),
    "mailmarshal": (mailmarshal, ["unknown-sendmail", "spam-spamhaus", "toolarge-postfix"]),
    "ironport": (ironport, ["unknown-sendmail", "spam-barracuda"]),
    "imail": (imail, ["unknown-exim-local", "full-dovecot"]),
    "notes": (notes, ["unknown-gmx", "full-dovecot"]),
    "barracuda": (barracuda, ["spam-barracuda", "unknown-icloud", "policy-mimecast"]),
    "mcafee": (mcafee, ["unknown-sendmail", "spam-proofpoint"]),
    "apachejames": (apachejames, ["unknown-sendmail", "suspended-icloud", "unknown-reason-5"]),
}
EXTRA_CASES = {
    "spam-content-placeholder": Case(
        "spam-content",
        "5.7.1",
        "550 5.7.1 Message rejected as spam by Content Filtering.",
        "spam_blocked",
        False,
    ),
    "rate-hotmail-rp-bounce": BY_NAME["rate-hotmail-rp"],
}

# Hand-written files: (file, recipient, kind, hard, reason, status).
HAND_LABELS = [
    ("rfc3464-simple.eml", "louisl@larry.example.edu", "bounce", "false", "network", "4.0.0"),
    ("rfc3464-multi.eml", "arathib@vnet.example.com", "bounce", "true", "user_unknown", "5.0.0"),
    ("rfc3464-multi.eml", "johnh@hpnjld.example.com", "delay", "", "host_unknown", "4.0.0"),
    ("rfc3464-multi.eml", "wsnell@sdcc13.example.edu", "bounce", "true", "user_unknown", "5.0.0"),
    ("rfc3464-multi.eml", "joe@example.net", "delivered", "", "delivered", "2.0.0"),
    ("rfc3464-gateway.eml", "rld@example.com", "bounce", "true", "user_unknown", "5.1.1"),
    ("rfc3464-delayed.eml", "ny@example.com", "delay", "", "network", "4.0.0"),
    ("dsn-relayed.eml", "ada@example.com", "delivered", "", "delivered", "2.0.0"),
    ("dsn-expanded.eml", "team@example.com", "delivered", "", "delivered", "2.0.0"),
    ("dsn-multi-postfix.eml", "ada@example.com", "bounce", "true", "user_unknown", "5.1.1"),
    ("dsn-multi-postfix.eml", "bob@example.net", "bounce", "false", "mailbox_full", "5.2.2"),
    ("dsn-multi-postfix.eml", "cy@example.org", "delay", "", "network", "4.4.1"),
    ("dsn-base64-status.eml", "ada@example.com", "bounce", "true", "user_unknown", "5.1.1"),
    ("dsn-no-blank-lines.eml", "ada@example.com", "bounce", "true", "host_unknown", "5.1.2"),
    ("dsn-generic-status.eml", "ada@example.com", "bounce", "true", "user_unknown", "5.1.1"),
    ("dsn-latin1.eml", "jose@example.com", "bounce", "false", "mailbox_full", "5.2.2"),
    ("dsn-truncated.eml", "ada@example.com", "bounce", "true", "user_unknown", "5.1.1"),
    ("exim-two-recipients.eml", "ada@example.com", "bounce", "true", "user_unknown", "5.1.1"),
    ("exim-two-recipients.eml", "bob@example.net", "bounce", "false", "mailbox_full", "5.2.2"),
    ("qmail-two-recipients.eml", "ada@example.com", "bounce", "true", "user_unknown", "5.1.1"),
    ("qmail-two-recipients.eml", "bob@example.net", "bounce", "true", "host_unknown", "5.1.2"),
    ("qmail-loop.eml", "ada@example.com", "bounce", "false", "network", "5.4.6"),
    ("dovecot-reject.eml", "ada@example.com", "bounce", "false", "mailbox_full", ""),
    ("sendmail-delay-old.eml", "ada@example.com", "delay", "", "network", ""),
    ("exchange-delay.eml", "ada@example.com", "delay", "", "network", "4.4.7"),
    ("rfc5965-abuse.eml", "user@example.com", "complaint", "", "complaint", ""),
    ("arf-yahoo.eml", "ada@example.com", "complaint", "", "complaint", ""),
    ("arf-aol-redacted.eml", "", "complaint", "", "complaint", ""),
    ("arf-to-header.eml", "bob@example.net", "complaint", "", "complaint", ""),
    ("arf-fraud.eml", "cy@example.org", "complaint", "", "complaint", ""),
    ("arf-virus.eml", "dee@example.com", "complaint", "", "complaint", ""),
    ("arf-optout.eml", "ada@example.com", "unsubscribe", "", "unsubscribe", ""),
    ("arf-not-spam.eml", "ada@example.com", "other", "", "unknown", ""),
    ("arf-auth-failure.eml", "", "other", "", "auth_failure", ""),
    ("rfc3834-vacation.eml", "ned@example.com", "auto_reply", "", "vacation", ""),
    ("auto-outlook.eml", "ada@example.com", "auto_reply", "", "vacation", ""),
    ("auto-gmail-vacation.eml", "bob@example.net", "auto_reply", "", "vacation", ""),
    ("auto-german.eml", "claudia@example.de", "auto_reply", "", "vacation", ""),
    ("auto-x-autoreply.eml", "dee@example.com", "auto_reply", "", "vacation", ""),
    ("auto-precedence.eml", "eve@example.com", "auto_reply", "", "vacation", ""),
    ("auto-body-only.eml", "finn@example.com", "auto_reply", "", "vacation", ""),
    ("auto-french.eml", "gil@example.fr", "auto_reply", "", "vacation", ""),
    ("challenge-boxtrapper.eml", "hal@example.com", "auto_reply", "", "challenge", ""),
    ("challenge-spamarrest.eml", "ivy@example.com", "auto_reply", "", "challenge", ""),
    ("unsubscribe-request.eml", "jan@example.com", "unsubscribe", "", "unsubscribe", ""),
    ("human-reply.eml", "kim@example.com", "other", "", "unknown", ""),
]


def main() -> None:
    labels: list[tuple[str, ...]] = []
    n = 0
    for fmt_name, (builder, case_names) in FORMATS.items():
        for i, case_name in enumerate(case_names):
            case = EXTRA_CASES.get(case_name) or BY_NAME[case_name]
            n += 1
            rcpt = [
                "ada@example.com",
                "bob@example.net",
                "cy.lee@example.org",
                "dee+news@example.com",
            ][i % 4]
            text, kind = builder(case, rcpt, n)
            status = case.expected_status()
            if builder is domino and case.reason == "user_unknown":
                status = ""  # Domino's own sentence, no code
            name = f"{fmt_name}--{case.name}.eml"
            data = text.replace("\r\n", "\n").replace("\n", "\r\n") if i % 2 else text
            (HERE / name).write_bytes(data.encode("utf-8"))
            hard = ("true" if case.hard else "false") if kind == "bounce" else ""
            labels.append((name, rcpt, kind, hard, case.reason, status))
    with (HERE / "labels.csv").open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("file", "recipient", "kind", "hard", "reason", "status"))
        writer.writerows(labels)
        writer.writerows(row for row in HAND_LABELS if row[2])
    print(f"{len(labels)} generated messages, {len(FORMATS)} generated formats")


if __name__ == "__main__":
    main()
