"""The classifier on real formats: per-format scenarios, the traps the
issue names, and the whole labelled corpus (tests/bounces/corpus, built
by corpus/make_corpus.py plus hand-written RFC and provider samples)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from sendstream.bounces.classify import classify
from sendstream.bounces.parse import classify_message
from sendstream.bounces.verdict import Reason, RecipientVerdict, Report

CORPUS = Path(__file__).resolve().parent / "corpus"
VERP = "bounces+Q2hhcmxlcy1CYWJiYWdlLTE4MzMtYW5hbHl0aWNhbC1lbmdpbmUtbm90ZXMtYWRh@bounce.example.org"


def load(name: str, **kwargs: object) -> Report:
    return classify_message((CORPUS / name).read_bytes(), **kwargs)  # type: ignore[arg-type]


def only(report: Report) -> RecipientVerdict:
    assert len(report.verdicts) == 1, report.verdicts
    return report.verdicts[0]


def by_recipient(report: Report) -> dict[str | None, RecipientVerdict]:
    return {(v.recipient or "").lower() or None: v for v in report.verdicts}


class TestDeliveryStatusNotifications:
    def test_postfix_user_unknown_is_hard_with_status_and_diagnostic(self) -> None:
        verdict = only(load("postfix-dsn--unknown-postfix.eml"))
        assert verdict.recipient == "ada@example.com"
        assert (verdict.kind, verdict.reason, verdict.hard) == ("bounce", Reason.user_unknown, True)
        assert verdict.status == "5.1.1"
        assert verdict.diagnostic is not None
        assert "User unknown in local recipient table" in verdict.diagnostic
        assert verdict.remote_mta == "mx.example.com"

    def test_multi_recipient_dsn_gives_one_verdict_each(self) -> None:
        verdicts = by_recipient(load("dsn-multi-postfix.eml"))
        assert set(verdicts) == {"ada@example.com", "bob@example.net", "cy@example.org"}
        assert verdicts["ada@example.com"].hard is True
        assert verdicts["bob@example.net"].reason is Reason.mailbox_full
        assert verdicts["bob@example.net"].hard is False
        assert verdicts["cy@example.org"].kind == "delay"
        assert verdicts["cy@example.org"].hard is None

    def test_rfc3464_multi_recipient_example(self) -> None:
        verdicts = by_recipient(load("rfc3464-multi.eml"))
        assert verdicts["johnh@hpnjld.example.com"].kind == "delay"
        assert verdicts["joe@example.net"].kind == "delivered"
        assert verdicts["wsnell@sdcc13.example.edu"].reason is Reason.user_unknown

    def test_gateway_dsn_uses_the_internet_original_recipient(self) -> None:
        verdict = only(load("rfc3464-gateway.eml"))
        assert verdict.recipient == "rld@example.com"
        assert verdict.reason is Reason.user_unknown

    @pytest.mark.parametrize(
        "name", ["postfix-delay--network-refused.eml", "gmail-delay--rate-gmail-428.eml"]
    )
    def test_delayed_dsn_is_a_delay_never_a_bounce(self, name: str) -> None:
        verdict = only(load(name))
        assert verdict.kind == "delay"
        assert verdict.hard is None

    @pytest.mark.parametrize("name", ["dsn-relayed.eml", "dsn-expanded.eml"])
    def test_relayed_and_expanded_are_delivered(self, name: str) -> None:
        verdict = only(load(name))
        assert (verdict.kind, verdict.reason) == ("delivered", Reason.delivered)

    def test_generic_dsn_status_takes_the_diagnostics_precise_code(self) -> None:
        verdict = only(load("dsn-generic-status.eml"))
        assert verdict.status == "5.1.1"

    def test_base64_status_part_is_decoded(self) -> None:
        assert only(load("dsn-base64-status.eml")).reason is Reason.user_unknown

    def test_courier_dsn_without_diagnostic_takes_it_from_the_text(self) -> None:
        verdict = only(load("courier--unknown-sendmail.eml"))
        assert verdict.diagnostic is not None
        assert "User unknown" in verdict.diagnostic

    def test_return_paths_put_the_envelope_first_then_the_returned_headers(self) -> None:
        report = load("postfix-dsn--unknown-postfix.eml", envelope_to=["rcpt@bounce.example.org"])
        assert report.return_paths[0] == "rcpt@bounce.example.org"
        assert VERP in report.return_paths
        assert report.original_message_id is not None
        assert report.original_message_id.startswith("<msg-")

    def test_dsn_with_500_recipients(self) -> None:
        blocks = "".join(
            f"Final-Recipient: rfc822; user{i}@example.com\nAction: failed\nStatus: 5.1.1\n\n"
            for i in range(500)
        )
        raw = (
            "From: MAILER-DAEMON@mx.example.net\nSubject: Undelivered Mail\nMIME-Version: 1.0\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
            "--b\nContent-Type: text/plain\n\nfailed\n"
            "--b\nContent-Type: message/delivery-status\n\n"
            f"Reporting-MTA: dns; mx.example.net\n\n{blocks}--b--\n"
        ).encode()
        report = classify_message(raw)
        assert len(report.verdicts) == 500
        assert all(v.reason is Reason.user_unknown and v.hard for v in report.verdicts)


class TestTextBounces:
    @pytest.mark.parametrize(
        ("name", "reporter"),
        [
            ("qmail--unknown-sendmail.eml", "qmail"),
            ("exim--unknown-exim-local.eml", "exim"),
            ("postfix-old--unknown-postfix.eml", "postfix"),
            ("sendmail-old--unknown-sendmail.eml", "sendmail"),
            ("exchange2007--unknown-exchange.eml", "exchange"),
            ("exchange2003--unknown-exchange.eml", "exchange"),
            ("gmail-old--unknown-postfix.eml", "gmail"),
            ("yahoo--unknown-yahoo.eml", "yahoo"),
            ("amazonses-text--unknown-postfix.eml", "amazonses"),
            ("hotmail--unknown-outlook.eml", "hotmail"),
            ("domino--unknown-sendmail.eml", "domino"),
            ("mdaemon--unknown-sendmail.eml", "mdaemon"),
            ("opensmtpd--unknown-postfix.eml", "opensmtpd"),
            ("groupwise--unknown-exim-local.eml", "groupwise"),
            ("mailmarshal--unknown-sendmail.eml", "mailmarshal"),
            ("imail--unknown-exim-local.eml", "imail"),
        ],
    )
    def test_user_unknown_in_each_format(self, name: str, reporter: str) -> None:
        report = load(name)
        verdict = only(report)
        assert report.reporter == reporter
        assert verdict.recipient is not None
        assert verdict.recipient.lower() in {
            "ada@example.com",
            "bob@example.net",
            "cy.lee@example.org",
            "dee+news@example.com",
        }
        assert (verdict.kind, verdict.reason, verdict.hard) == ("bounce", Reason.user_unknown, True)

    def test_sender_in_a_transcript_is_not_a_recipient(self) -> None:
        verdict = only(load("sendmail-old--unknown-sendmail.eml"))
        assert verdict.status == "5.1.1"  # not the transcript's "250 2.1.0 Sender ok"

    def test_two_recipients_in_one_exim_notice(self) -> None:
        verdicts = by_recipient(load("exim-two-recipients.eml"))
        assert verdicts["ada@example.com"].reason is Reason.user_unknown
        assert verdicts["bob@example.net"].reason is Reason.mailbox_full

    def test_exim_delay_warning_is_a_delay(self) -> None:
        assert only(load("exim-delay--rate-yahoo-tss04.eml")).kind == "delay"

    def test_text_bounce_keeps_the_returned_message_id_and_return_path(self) -> None:
        report = load("qmail-two-recipients.eml")
        assert report.original_message_id == "<qmail-two@mail.example.org>"
        assert report.return_paths == (VERP,)

    def test_base64_body_in_russian_is_read(self) -> None:
        assert only(load("mailru--unknown-mailru.eml")).reason is Reason.user_unknown


class TestComplaintsAndAutoReplies:
    def test_rfc5965_example_is_a_complaint_for_the_original_recipient(self) -> None:
        report = load("rfc5965-abuse.eml")
        verdict = only(report)
        assert (verdict.kind, verdict.recipient) == ("complaint", "user@example.com")
        assert report.feedback_type == "abuse"

    def test_redacted_feedback_report_names_no_recipient_but_keeps_the_return_path(self) -> None:
        report = load("arf-aol-redacted.eml")
        assert only(report).recipient is None
        assert report.return_paths[0] == VERP

    def test_complained_recipient_from_the_embedded_to(self) -> None:
        assert only(load("arf-to-header.eml")).recipient == "bob@example.net"

    def test_opt_out_report_is_an_unsubscribe(self) -> None:
        assert only(load("arf-optout.eml")).kind == "unsubscribe"

    @pytest.mark.parametrize(
        "name",
        ["rfc3834-vacation.eml", "auto-outlook.eml", "auto-german.eml", "auto-body-only.eml"],
    )
    def test_out_of_office_is_an_auto_reply_never_a_bounce(self, name: str) -> None:
        verdict = only(load(name))
        assert (verdict.kind, verdict.reason, verdict.hard) == ("auto_reply", Reason.vacation, None)

    def test_challenge_response(self) -> None:
        assert only(load("challenge-boxtrapper.eml")).reason is Reason.challenge

    def test_bounce_marked_auto_replied_is_still_a_bounce(self) -> None:
        assert only(load("exim--unknown-exim-local.eml")).kind == "bounce"

    def test_a_person_answering_is_other(self) -> None:
        assert only(load("human-reply.eml")).kind == "other"


class TestClassificationTraps:
    @pytest.mark.parametrize(
        ("status", "diagnostic", "reason", "hard"),
        [
            ("5.2.2", "552 5.2.2 mailbox full", Reason.mailbox_full, False),
            ("5.7.1", "550 5.7.1 <ada@example.com>... User unknown", Reason.user_unknown, True),
            (
                "4.2.1",
                "450-4.2.1 The user you are trying to contact is receiving mail too quickly.",
                Reason.rate_limited,
                False,
            ),
            (
                "4.1.1",
                "450 4.1.1 <ada@example.com>: Recipient address rejected: User unknown",
                Reason.user_unknown,
                False,
            ),
            ("5.0.0", "550 5.0.0 Unknown error", Reason.unknown, True),
            ("4.3.0", "451 4.3.0 Temporary system failure", Reason.unknown, False),
            (
                "5.4.7",
                "550 5.4.7 delivery time expired <421 4.4.0 Unable to lookup DNS>",
                Reason.expired,
                False,
            ),
            ("5.7.26", "550 5.7.26 blocked: unauthenticated", Reason.auth_failure, False),
            (
                "5.1.8",
                "553 5.1.8 <news@example.org>: Sender address rejected: Domain not found",
                Reason.policy,
                False,
            ),
            (
                "4.4.1",
                "delivery temporarily suspended: connect to mx: Connection refused",
                Reason.network,
                False,
            ),
            (
                "5.7.1",
                "554 5.7.1 <ada@example.com>: Relay access denied",
                Reason.relay_denied,
                False,
            ),
            (
                "5.2.1",
                "550 5.2.1 The email account that you tried to reach is disabled.",
                Reason.suspended,
                True,
            ),
        ],
    )
    def test_reason_and_hardness(
        self, status: str, diagnostic: str, reason: Reason, hard: bool
    ) -> None:
        assert classify(status, diagnostic) == (reason, hard)


def test_corpus_accuracy() -> None:
    """Every labelled answer of the corpus; prints the accuracy per format."""
    with (CORPUS / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len({r["file"] for r in rows}) >= 150
    reports: dict[str, Report] = {}
    total: Counter[str] = Counter()
    right: Counter[str] = Counter()
    wrong: list[str] = []
    for row in rows:
        name = row["file"]
        if name not in reports:
            reports[name] = classify_message((CORPUS / name).read_bytes())
        verdicts = by_recipient(reports[name])
        verdict = verdicts.get(row["recipient"].lower() or None)
        got = None
        if verdict is not None:
            got = (
                verdict.kind,
                "" if verdict.hard is None else str(verdict.hard).lower(),
                verdict.reason.value,
                verdict.status or "",
            )
        family = name.split("--")[0].removesuffix(".eml").split("-")[0]
        total[family] += 1
        if got == (row["kind"], row["hard"], row["reason"], row["status"]):
            right[family] += 1
        else:
            wrong.append(f"{name} {row['recipient']}: want {row} got {got}")
    print(f"\n{'format':<18}{'right':>6}{'of':>5}")
    for family in sorted(total):
        print(f"{family:<18}{right[family]:>6}{total[family]:>5}")
    print(f"{'all':<18}{sum(right.values()):>6}{sum(total.values()):>5}")
    assert not wrong, "\n".join(wrong)
