"""DKIM signing, checked by two verifiers that share no code with ours:
dkimpy (Python) and Mail::DKIM (Perl, Debian's libmail-dkim-perl), each given
the test keys through its DNS hook instead of a DNS server.

Mail::DKIM 1.20230212 (Debian 12) has no Ed25519; for Ed25519 the Perl checks
only assert that it never reports a failure, and dkimpy does the verifying.
dkimpy needs PyNaCl for the raw Ed25519 check, which Sendstream does not
depend on; `_NaclOnCryptography` gives dkimpy that one primitive through
`cryptography` (dkimpy still parses, canonicalises and hashes on its own), and
RFC 8463's published example shows that the adapter verifies what it should.
"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import types
from datetime import UTC, datetime
from pathlib import Path

import dkim as dkimpy  # type: ignore[import-untyped]
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from sendstream.delivery import dkim
from sendstream.delivery.dkim import (
    DkimError,
    DkimKey,
    canonical_body,
    canonical_header,
    generate_ed25519_key,
    generate_rsa_key,
    sign,
)
from sendstream.delivery.mime import Address, Attachment, MessageParts, build

PERL_VERIFIER = Path(__file__).resolve().parent.parent / "fixtures" / "dkim_verify.pl"
DOMAIN = "mail.example.com"


# --- the verifiers


class _NaclValueError(ValueError):
    """Stands for nacl.exceptions.ValueError."""


class _NaclOnCryptography:
    """The slice of PyNaCl that dkimpy calls for Ed25519, on `cryptography`."""

    class BadSignatureError(Exception):
        pass

    class Base64Encoder:
        pass

    class VerifyKey:
        def __init__(self, key: bytes, encoder: object = None) -> None:
            try:
                raw = base64.b64decode(key)
                self._key = ed25519.Ed25519PublicKey.from_public_bytes(raw)
            except Exception as exc:
                raise _NaclValueError(str(exc)) from exc

        def verify(self, message: bytes, signature: bytes) -> bytes:
            try:
                self._key.verify(signature, message)
            except InvalidSignature:
                raise _NaclOnCryptography.BadSignatureError from None
            return message

    @classmethod
    def module(cls) -> types.SimpleNamespace:
        return types.SimpleNamespace(
            signing=types.SimpleNamespace(VerifyKey=cls.VerifyKey),
            encoding=types.SimpleNamespace(Base64Encoder=cls.Base64Encoder),
            exceptions=types.SimpleNamespace(
                BadSignatureError=cls.BadSignatureError, ValueError=_NaclValueError
            ),
        )


@pytest.fixture(autouse=True)
def _dkimpy_ed25519(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dkimpy, "nacl", _NaclOnCryptography.module(), raising=False)


def records(*keys: DkimKey) -> dict[str, str]:
    return {f"{k.selector}._domainkey.{k.domain}": k.dns_record() for k in keys}


def dkimpy_results(message: bytes, dns: dict[str, str]) -> list[bool]:
    """dkimpy's verdict on each DKIM-Signature, top first."""

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        txt = dns.get(name.decode().rstrip("."))
        return txt.encode() if txt is not None else None

    def verify(index: int) -> bool:
        try:
            return bool(dkimpy.DKIM(message).verify(idx=index, dnsfunc=lookup))
        except dkimpy.ValidationError:  # a body hash mismatch is raised, not returned
            return False

    count = len(re.findall(rb"^DKIM-Signature:", message, re.M | re.I))
    assert count > 0
    return [verify(i) for i in range(count)]


def perl_results(message: bytes, dns: dict[str, str]) -> list[tuple[str, str, str]]:
    """Mail::DKIM's (result, algorithm, detail) for each signature, top first."""
    args = [f"{name}={txt}" for name, txt in dns.items()]
    done = subprocess.run(
        ["perl", str(PERL_VERIFIER), *args], input=message, capture_output=True, check=True
    )
    lines = [line.split("\t") for line in done.stdout.decode().splitlines()]
    assert lines
    assert lines[-1][0] == "overall"
    return [(result, algorithm, detail) for result, algorithm, _domain, detail in lines[:-1]]


def assert_verifies(message: bytes, *keys: DkimKey) -> None:
    dns = records(*keys)
    assert dkimpy_results(message, dns) == [True] * len(keys)
    for (result, algorithm, detail), key in zip(perl_results(message, dns), keys, strict=True):
        assert algorithm == key.algorithm
        if algorithm == "ed25519-sha256" and result != "pass":
            # This Mail::DKIM cannot check Ed25519; it must say so, not "fail".
            assert detail.startswith("invalid (unsupported algorithm"), detail
        else:
            assert result == "pass", detail


def assert_fails(message: bytes, *keys: DkimKey) -> None:
    dns = records(*keys)
    assert dkimpy_results(message, dns) == [False] * len(keys)
    rsa_results = [r for r in perl_results(message, dns) if r[1] == "rsa-sha256"]
    assert rsa_results
    for result, _algorithm, detail in rsa_results:
        assert result == "fail", detail


# --- keys and messages


@pytest.fixture(scope="module")
def rsa_key() -> DkimKey:
    pem, _ = generate_rsa_key()
    return DkimKey.from_pem(DOMAIN, "s2026", pem)


@pytest.fixture(scope="module")
def ed_key() -> DkimKey:
    pem, _ = generate_ed25519_key()
    return DkimKey.from_pem(DOMAIN, "e2026", pem)


@pytest.fixture(scope="module")
def keys(rsa_key: DkimKey, ed_key: DkimKey) -> tuple[DkimKey, DkimKey]:
    return rsa_key, ed_key


def marketing_message(**overrides: object) -> bytes:
    values: dict[str, object] = {
        "sender": Address(f"news@{DOMAIN}", "Bücher & Co — Newsletter"),
        "to": [Address("jose@example.org", "José Ñúñez")],
        "subject": "Grüße! Unsere Angebote für den Winter — bis zu 30 % Rabatt auf viele Titel",
        "text": "Hallo José,\n\nhier sind unsere Angebote.  Viel Spaß!\n",
        "html": "<p>Hallo José,</p>\n<p>hier sind unsere <b>Angebote</b>.</p>\n" * 20,
        "headers": [
            ("List-Unsubscribe", "<https://t.example.com/u/abc123>, <mailto:u+abc123@example.com>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("Feedback-ID", "c42:newsletter:sendstream"),
        ],
        "date": datetime(2026, 11, 26, 10, 0, tzinfo=UTC),
    }
    values.update(overrides)
    return build(MessageParts(**values))  # type: ignore[arg-type]


def signature_tags(message: bytes, index: int = 0) -> dict[str, str]:
    fields = re.findall(rb"^DKIM-Signature:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", message, re.M)
    value = re.sub(r"\s+", "", fields[index].decode())
    return dict(tag.split("=", 1) for tag in value.split(";") if tag)


def insert_header(message: bytes, field: bytes) -> bytes:
    """`field` added as the last header, as a later hop would append it."""
    split = message.index(b"\r\n\r\n") + 2
    return message[:split] + field + b"\r\n" + message[split:]


# --- tests


class TestVerifiers:
    """The checks below mean something only if the verifiers can say no."""

    RFC8463 = (
        b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
        b" d=football.example.com; i=@football.example.com;\r\n"
        b" q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
        b" subject : date : message-id : from : subject : date;\r\n"
        b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
        b" b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
        b" Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
        b"From: Joe SixPack <joe@football.example.com>\r\n"
        b"To: Suzie Q <suzie@shopping.example.net>\r\n"
        b"Subject: Is dinner ready?\r\n"
        b"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
        b"Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
        b"\r\n"
        b"Hi.\r\n"
        b"\r\n"
        b"We lost the game.  Are you hungry yet?\r\n"
        b"\r\n"
        b"Joe.\r\n"
    )
    RFC8463_DNS = {
        "brisbane._domainkey.football.example.com": (
            "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
        )
    }

    def test_dkimpy_ed25519_adapter_accepts_the_rfc_8463_example(self) -> None:
        assert dkimpy_results(self.RFC8463, self.RFC8463_DNS) == [True]

    def test_dkimpy_ed25519_adapter_rejects_a_changed_rfc_8463_example(self) -> None:
        changed = self.RFC8463.replace(b"hungry", b"thirsty")
        assert dkimpy_results(changed, self.RFC8463_DNS) == [False]
        changed = self.RFC8463.replace(b"dinner", b"lunch")
        assert dkimpy_results(changed, self.RFC8463_DNS) == [False]

    def test_our_canonicalisation_reproduces_the_rfc_8463_signed_data(self) -> None:
        """RFC 8463's signature checks against data our functions compute."""
        head, body = self.RFC8463.split(b"\r\n\r\n", 1)
        assert base64.b64encode(hashlib.sha256(canonical_body(body)).digest()) == (
            b"2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
        )
        fields = re.findall(rb"^([^:\r\n]+):([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.M)
        by_name = {name.lower(): value for name, value in fields}
        signature_value = by_name[b"dkim-signature"]
        signed = b"".join(
            canonical_header(name, by_name[name]) + b"\r\n"
            for name in [b"from", b"to", b"subject", b"date", b"message-id"]
        )
        unsigned = re.sub(rb"b=[^;]*$", b"b=", signature_value)
        data = signed + canonical_header(b"DKIM-Signature", unsigned)
        signature = base64.b64decode(re.sub(rb"\s", b"", signature_value.split(b" b=")[1]))
        public = ed25519.Ed25519PublicKey.from_public_bytes(
            base64.b64decode("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
        )
        public.verify(signature, hashlib.sha256(data).digest())

    def test_perl_verifier_fails_a_signature_by_another_key(self, rsa_key: DkimKey) -> None:
        other = DkimKey.from_pem(DOMAIN, rsa_key.selector, generate_rsa_key()[0])
        signed = sign(marketing_message(), [other])
        [(result, _, detail)] = perl_results(signed, records(rsa_key))
        # The detail varies with the numbers ("data too large for modulus"
        # when the other key's signature is larger than this modulus).
        assert result == "fail", detail
        assert dkimpy_results(signed, records(rsa_key)) == [False]


class TestSignaturesVerify:
    def test_rsa(self, rsa_key: DkimKey) -> None:
        assert_verifies(sign(marketing_message(), [rsa_key]), rsa_key)

    def test_ed25519(self, ed_key: DkimKey) -> None:
        assert_verifies(sign(marketing_message(), [ed_key]), ed_key)

    def test_dual_rsa_and_ed25519(self, keys: tuple[DkimKey, DkimKey]) -> None:
        signed = sign(marketing_message(), keys)
        assert_verifies(signed, *keys)
        assert [signature_tags(signed, i)["a"] for i in (0, 1)] == [
            "rsa-sha256",
            "ed25519-sha256",
        ]

    def test_attachments_inline_images_and_long_folded_headers(
        self, keys: tuple[DkimKey, DkimKey]
    ) -> None:
        message = marketing_message(
            to=[Address(f"kunde{i}@example.org", "株式会社サンプル 営業部 御中") for i in range(8)],
            cc=[Address("x@bücher.example", '"Quoted", (Name)')],
            subject="Ihre Rechnung " + "sehr lange Betreffzeile " * 12,
            html='<img src="cid:logo">' + "<p>Ünïcödé</p>" * 500,
            attachments=[
                Attachment("logo.png", "image/png", bytes(range(256)) * 20, content_id="logo"),
                Attachment("Rechnung März.pdf", "application/pdf", b"%PDF" * 3000),
            ],
        )
        assert max(len(line) for line in message.split(b"\r\n")) <= 78
        assert_verifies(sign(message, keys), *keys)

    def test_a_message_with_an_empty_body(self, rsa_key: DkimKey) -> None:
        message = b"From: a@example.com\r\nSubject: empty\r\n\r\n"
        assert_verifies(sign(message, [rsa_key]), rsa_key)

    def test_a_last_line_without_crlf_is_signed_as_smtp_will_send_it(
        self, rsa_key: DkimKey
    ) -> None:
        """dkimpy and Mail::DKIM disagree on the blanks of an unterminated last
        line; SMTP ends the data with CRLF anyway, so that is what is signed."""
        message = b"From: a@example.com\r\nSubject: edge\r\n\r\nline\r\nlast \t"
        signed = sign(message, [rsa_key])
        assert signed.endswith(b"\r\nline\r\nlast \t\r\n")
        assert_verifies(signed, rsa_key)

    def test_a_message_without_a_body_separator(self, rsa_key: DkimKey) -> None:
        message = b"From: a@example.com\r\nSubject: none\r\n"
        assert_verifies(sign(message, [rsa_key]), rsa_key)

    def test_whitespace_a_relay_rewrites_still_verifies(self, rsa_key: DkimKey) -> None:
        """relaxed/relaxed: refolded headers and re-spaced lines keep the signature."""
        signed = sign(marketing_message(text="a  b \t\nc\n\n\n"), [rsa_key])
        rewritten = signed.replace(b"Feedback-ID: c42", b"Feedback-ID:   c42")
        rewritten = rewritten.replace(b"\r\n\r\na  b \t\r\nc\r\n", b"\r\n\r\na b\r\nc\r\n")
        assert rewritten.count(b"\r\n\r\na b\r\nc") == 1
        assert_verifies(rewritten + b"\r\n\r\n", rsa_key)

    @hypothesis_settings(
        max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        subject=st.text(max_size=200).filter(lambda s: not set(s) & set("\r\n\x00")),
        text=st.text(alphabet=st.sampled_from("ab \t\r\n.é日"), max_size=500),
        name=st.text(max_size=80).filter(lambda s: not set(s) & set("\r\n\x00")),
    )
    def test_any_built_message(
        self, rsa_key: DkimKey, ed_key: DkimKey, subject: str, text: str, name: str
    ) -> None:
        message = marketing_message(
            subject=subject, text=text, to=[Address("a@example.org", name or None)]
        )
        assert dkimpy_results(sign(message, [rsa_key, ed_key]), records(rsa_key, ed_key)) == [
            True,
            True,
        ]


class TestTampering:
    def test_a_changed_body_fails(self, keys: tuple[DkimKey, DkimKey]) -> None:
        signed = sign(marketing_message(), keys)
        assert_fails(signed.replace(b"Angebote", b"Angebots", 1), *keys)

    def test_a_changed_from_fails(self, keys: tuple[DkimKey, DkimKey]) -> None:
        signed = sign(marketing_message(), keys)
        tampered = signed.replace(b"<news@mail.example.com>", b"<ceo@mail.example.com>")
        assert tampered != signed
        assert_fails(tampered, *keys)

    def test_a_changed_subject_fails(self, keys: tuple[DkimKey, DkimKey]) -> None:
        signed = sign(marketing_message(subject="Your invoice"), keys)
        assert_fails(signed.replace(b"Your invoice", b"Your refund"), *keys)

    @pytest.mark.parametrize(
        "field",
        [
            b"From: attacker@evil.example",
            b"Subject: Urgent: reset your password",
            b"List-Unsubscribe: <https://evil.example/u>",
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        ],
    )
    def test_an_added_copy_of_an_oversigned_field_fails(
        self, keys: tuple[DkimKey, DkimKey], field: bytes
    ) -> None:
        signed = sign(marketing_message(), keys)
        assert_fails(insert_header(signed, field), *keys)
        assert_fails(field + b"\r\n" + signed, *keys)

    def test_an_added_unsigned_field_is_harmless(self, keys: tuple[DkimKey, DkimKey]) -> None:
        """So the failures above come from oversigning, not from any change."""
        signed = sign(marketing_message(), keys)
        assert_verifies(insert_header(signed, b"X-Spam-Score: 0.1"), *keys)
        assert_verifies(b"Received: from relay\r\n" + signed, *keys)


class TestSignatureField:
    def test_tags(self, rsa_key: DkimKey) -> None:
        signed = sign(marketing_message(), [rsa_key], timestamp=1_800_000_000)
        tags = signature_tags(signed)
        assert tags["v"] == "1"
        assert tags["c"] == "relaxed/relaxed"
        assert tags["d"] == DOMAIN
        assert tags["s"] == "s2026"
        assert tags["t"] == "1800000000"
        assert "l" not in tags
        assert "x" not in tags

    def test_h_lists_present_fields_and_oversigns(self, rsa_key: DkimKey) -> None:
        signed = sign(marketing_message(), [rsa_key])
        assert signature_tags(signed)["h"].split(":") == [
            "from", "from", "to", "subject", "subject", "date", "message-id",
            "mime-version", "content-type", "list-unsubscribe", "list-unsubscribe",
            "list-unsubscribe-post", "list-unsubscribe-post", "feedback-id",
        ]  # fmt: skip

    def test_h_leaves_out_absent_fields(self, rsa_key: DkimKey) -> None:
        message = b"From: a@example.com\r\nTo: b@example.org\r\nX-Other: 1\r\n\r\nhi\r\n"
        signed = sign(message, [rsa_key])
        assert signature_tags(signed)["h"] == "from:from:to"

    def test_a_repeated_field_is_listed_once_per_copy(self, rsa_key: DkimKey) -> None:
        message = b"From: a@example.com\r\nTo: b@example.org\r\nTo: c@example.org\r\n\r\nhi\r\n"
        signed = sign(message, [rsa_key])
        assert signature_tags(signed)["h"] == "from:from:to:to"
        assert_verifies(signed, rsa_key)

    def test_signature_field_is_folded(self, keys: tuple[DkimKey, DkimKey]) -> None:
        signed = sign(marketing_message(), keys)
        head = signed[: signed.index(b"\r\nDate:")]
        assert head.count(b"DKIM-Signature:") == 2
        assert max(len(line) for line in head.split(b"\r\n")) <= 78

    def test_body_is_hashed_once_for_all_keys(
        self, keys: tuple[DkimKey, DkimKey], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls: list[bytes] = []
        original = dkim.canonical_body

        def counting(body: bytes) -> bytes:
            calls.append(body)
            return original(body)

        monkeypatch.setattr(dkim, "canonical_body", counting)
        signed = sign(marketing_message(), keys)
        assert len(calls) == 1
        assert signature_tags(signed, 0)["bh"] == signature_tags(signed, 1)["bh"]

    def test_no_keys_leaves_the_message_alone(self) -> None:
        message = marketing_message()
        assert sign(message, []) == message

    def test_a_message_without_from_is_refused(self, rsa_key: DkimKey) -> None:
        with pytest.raises(DkimError, match="From"):
            sign(b"To: a@example.com\r\n\r\nhi\r\n", [rsa_key])

    def test_malformed_header_section_is_refused(self, rsa_key: DkimKey) -> None:
        with pytest.raises(DkimError, match="malformed"):
            sign(b"From: a@example.com\r\nno colon here\r\n\r\nhi\r\n", [rsa_key])


class TestCanonicalBody:
    @pytest.mark.parametrize(
        ("body", "canonical"),
        [
            (b"", b""),
            (b"\r\n\r\n", b""),
            (b"a", b"a\r\n"),
            (b"a  \t b \r\n", b"a b\r\n"),
            (b"a\r\n\r\n\r\n", b"a\r\n"),
            (b" \r\n", b""),
            (b"a\r\n \r\nb\t\r\n\r\n", b"a\r\n\r\nb\r\n"),
            # The blanks of a last line without CRLF are not "at the end of a
            # line" to dkimpy or Mail::DKIM; one space stays.
            (b"a \t", b"a \r\n"),
        ],
    )
    def test_relaxed_rules(self, body: bytes, canonical: bytes) -> None:
        assert canonical_body(body) == canonical

    @hypothesis_settings(max_examples=300)
    @given(body=st.lists(st.sampled_from([b"a", b" ", b"\t", b"\r\n", b"."]), max_size=40))
    def test_agrees_with_dkimpy(self, body: list[bytes]) -> None:
        data = b"".join(body)
        reference = dkimpy.canonicalization.Relaxed.canonicalize_body(data)
        assert canonical_body(data) == reference


class TestKeys:
    def test_generated_rsa_key_and_dns_value_match(self) -> None:
        pem, p = generate_rsa_key()
        key = DkimKey.from_pem("example.com", "s1", pem)
        assert key.algorithm == "rsa-sha256"
        assert key.dns_record() == f"v=DKIM1; k=rsa; p={p}"
        public = serialization.load_der_public_key(base64.b64decode(p))
        assert public.public_numbers() == key.private_key.public_key().public_numbers()  # type: ignore[union-attr]
        assert key.private_key.key_size == 2048  # type: ignore[union-attr]

    def test_generated_ed25519_key_and_dns_value_match(self) -> None:
        pem, p = generate_ed25519_key()
        key = DkimKey.from_pem("example.com", "e1", pem)
        assert key.algorithm == "ed25519-sha256"
        assert len(base64.b64decode(p)) == 32
        assert key.dns_record() == f"v=DKIM1; k=ed25519; p={p}"

    def test_small_rsa_keys_are_refused(self) -> None:
        with pytest.raises(DkimError, match="1024"):
            generate_rsa_key(512)

    def test_other_key_types_are_refused(self) -> None:
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with pytest.raises(DkimError, match="RSA or Ed25519"):
            DkimKey.from_pem("example.com", "s1", pem)

    def test_garbage_is_refused(self) -> None:
        with pytest.raises(DkimError, match="PEM"):
            DkimKey.from_pem("example.com", "s1", b"not a key")

    @pytest.mark.parametrize(
        ("domain", "selector"),
        [("bücher.example", "s1"), ("example.com", "bad selector"), ("example.com", "")],
    )
    def test_bad_domain_or_selector_is_refused(self, domain: str, selector: str) -> None:
        with pytest.raises(DkimError):
            DkimKey(domain, selector, ed25519.Ed25519PrivateKey.generate())
