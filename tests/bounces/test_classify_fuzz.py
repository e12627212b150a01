"""Hypothesis against the classifier: whatever the bytes, it returns a
well-formed Report and never raises."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sendstream.bounces.parse import classify_message
from sendstream.bounces.verdict import Reason, Report

CORPUS = Path(__file__).resolve().parent / "corpus"
SAMPLES = sorted(CORPUS.glob("*.eml"))
SAMPLE_BYTES = [path.read_bytes() for path in SAMPLES]
KINDS = {"bounce", "delay", "complaint", "auto_reply", "unsubscribe", "delivered", "other"}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def well_formed(report: Report) -> None:
    assert isinstance(report, Report)
    assert report.verdicts
    for verdict in report.verdicts:
        assert verdict.kind in KINDS
        assert isinstance(verdict.reason, Reason)
        assert (verdict.hard is not None) == (verdict.kind == "bounce")
        if verdict.status is not None:
            assert verdict.status[0] in "245"
    assert all(isinstance(path, str) for path in report.return_paths)


@FUZZ
@given(st.binary(max_size=4000))
def test_random_bytes(raw: bytes) -> None:
    well_formed(classify_message(raw))


@FUZZ
@given(
    st.sampled_from(SAMPLE_BYTES),
    st.lists(st.tuples(st.integers(0, 20_000), st.binary(min_size=0, max_size=40)), max_size=8),
)
def test_mutated_corpus_messages(sample: bytes, edits: list[tuple[int, bytes]]) -> None:
    raw = bytearray(sample)
    for position, chunk in edits:
        at = position % (len(raw) + 1)
        raw[at : at + len(chunk)] = chunk
    well_formed(classify_message(bytes(raw)))


@FUZZ
@given(st.sampled_from(SAMPLE_BYTES), st.floats(0, 1))
def test_truncated_corpus_messages(sample: bytes, fraction: float) -> None:
    well_formed(classify_message(sample[: int(len(sample) * fraction)]))


@FUZZ
@given(
    st.sampled_from(SAMPLE_BYTES),
    st.sampled_from(
        ["utf-7", "x-unknown", "utf-16", "rot13", "base64", "hex", "iso-2022-jp", '"', ""]
    ),
    st.sampled_from(["base64", "quoted-printable", "8bit", "x-uuencode"]),
)
def test_wrong_charsets_and_transfer_encodings(sample: bytes, charset: str, cte: str) -> None:
    raw = sample.replace(b"charset=us-ascii", f"charset={charset}".encode()).replace(
        b"Content-Type: message/delivery-status",
        f"Content-Type: message/delivery-status\nContent-Transfer-Encoding: {cte}".encode(),
    )
    well_formed(classify_message(raw))


@FUZZ
@given(st.text(max_size=2000))
def test_arbitrary_text_messages(text: str) -> None:
    raw = f"From: MAILER-DAEMON@example.net\nSubject: Undeliverable\n\n{text}".encode(
        "utf-8", "surrogatepass"
    )
    well_formed(classify_message(raw))


def test_huge_message_reads_only_its_head() -> None:
    raw = SAMPLE_BYTES[0] + b"x" * (20 * 1024 * 1024)
    report = classify_message(raw)
    well_formed(report)
    assert any("read the first" in note for note in report.notes)


def test_deep_nesting_and_many_parts() -> None:
    head = b"MIME-Version: 1.0\n"
    body = b""
    for depth in range(50):
        body = (
            f"Content-Type: multipart/mixed; boundary=b{depth}\n\n--b{depth}\n".encode()
            + body
            + f"\n--b{depth}--\n".encode()
        )
    many = b"Content-Type: multipart/mixed; boundary=x\n\n" + b"--x\n\nhi\n" * 5000 + b"--x--\n"
    well_formed(classify_message(head + body))
    report = classify_message(head + many)
    well_formed(report)
    assert any("MIME parts" in note for note in report.notes)


def test_not_bytes_is_an_unreadable_report() -> None:
    report = classify_message("a str, not bytes")  # type: ignore[arg-type]
    assert report.verdicts[0].kind == "other"
    assert report.notes
