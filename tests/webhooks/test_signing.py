"""Standard Webhooks signatures, checked by independent verifiers: the
`standardwebhooks` library from PyPI for `v1` (HMAC-SHA256), and the
spec's recipe done by hand with `cryptography` for `v1a` (Ed25519), which
that library does not implement (it skips `v1a` entries)."""

from __future__ import annotations

import base64
import json
import time

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks import Webhook, WebhookVerificationError

from sendstream.webhooks import signing

BODY = json.dumps(
    {"type": "contact.created", "timestamp": "2026-11-26T10:15:00Z", "data": {"id": "c1"}}
).encode()


def headers(msg_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def verify_v1a(public_key: str, body: bytes, sent: dict[str, str]) -> None:
    """The spec's asymmetric recipe, as a receiver without a v1a library
    writes it: raises InvalidSignature unless one `v1a` entry verifies."""
    assert public_key.startswith("whpk_")
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key[len("whpk_") :]))
    content = f"{sent['webhook-id']}.{sent['webhook-timestamp']}.".encode() + body
    for entry in sent["webhook-signature"].split(" "):
        version, _, value = entry.partition(",")
        if version != "v1a":
            continue
        try:
            key.verify(base64.b64decode(value), content)
        except InvalidSignature:
            continue
        return
    raise InvalidSignature("no v1a signature verifies")


class TestSecrets:
    def test_the_spec_example_signs_to_the_spec_value(self) -> None:
        secret = signing.parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")

        signature = signing.sign(
            [secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
        )

        assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

    def test_a_generated_secret_round_trips_and_the_library_reads_it(self) -> None:
        secret = signing.generate_secret()
        shown = signing.format_secret(secret)

        assert shown.startswith("whsec_")
        assert signing.parse_secret(shown) == secret
        now = int(time.time())
        signature = signing.sign([secret], "msg_1", now, BODY)
        assert Webhook(shown).verify(BODY, headers("msg_1", now, signature))

    @pytest.mark.parametrize(
        "value", ["whsk_AAAA", "whsec_not*base64", "whsec_" + base64.b64encode(b"x" * 8).decode()]
    )
    def test_values_that_are_not_secrets_are_refused(self, value: str) -> None:
        with pytest.raises(ValueError, match=r"."):
            signing.parse_secret(value)


class TestHmacSignatures:
    def test_standardwebhooks_verifies_a_v1_signature(self) -> None:
        secret = signing.generate_secret()
        now = int(time.time())

        signature = signing.sign([secret], "msg_42_abc", now, BODY)

        assert signature.startswith("v1,")
        payload = Webhook(signing.format_secret(secret)).verify(
            BODY, headers("msg_42_abc", now, signature)
        )
        assert payload["type"] == "contact.created"

    def test_during_a_rotation_either_secret_verifies(self) -> None:
        old, new = signing.generate_secret(), signing.generate_secret()
        now = int(time.time())

        signature = signing.sign([new, old], "msg_7", now, BODY)

        assert len(signature.split(" ")) == 2
        for secret in (old, new):
            Webhook(signing.format_secret(secret)).verify(BODY, headers("msg_7", now, signature))

    def test_a_changed_body_id_or_timestamp_fails_verification(self) -> None:
        secret = signing.generate_secret()
        verifier = Webhook(signing.format_secret(secret))
        now = int(time.time())
        signature = signing.sign([secret], "msg_7", now, BODY)

        with pytest.raises(WebhookVerificationError):
            verifier.verify(BODY + b" ", headers("msg_7", now, signature))
        with pytest.raises(WebhookVerificationError):
            verifier.verify(BODY, headers("msg_8", now, signature))
        with pytest.raises(WebhookVerificationError):
            verifier.verify(BODY, headers("msg_7", now + 1, signature))

    def test_another_secret_does_not_verify(self) -> None:
        now = int(time.time())
        signature = signing.sign([signing.generate_secret()], "msg_7", now, BODY)

        with pytest.raises(WebhookVerificationError):
            Webhook(signing.format_secret(signing.generate_secret())).verify(
                BODY, headers("msg_7", now, signature)
            )

    def test_non_ascii_bodies_are_signed_as_their_utf8_bytes(self) -> None:
        secret = signing.generate_secret()
        body = json.dumps({"data": {"first_name": "Zoë 東京"}}, ensure_ascii=False).encode()
        now = int(time.time())

        signature = signing.sign([secret], "msg_u", now, body)

        Webhook(signing.format_secret(secret)).verify(body, headers("msg_u", now, signature))


class TestEd25519Signatures:
    def test_a_v1a_signature_verifies_with_the_public_key(self) -> None:
        key = signing.load_ed25519_key(signing.generate_ed25519_key())
        now = int(time.time())

        signature = signing.sign([], "msg_9", now, BODY, [key])

        assert signature.startswith("v1a,")
        verify_v1a(signing.public_key(key), BODY, headers("msg_9", now, signature))

    def test_a_v1a_signature_over_another_body_fails(self) -> None:
        key = signing.load_ed25519_key(signing.generate_ed25519_key())
        now = int(time.time())
        signature = signing.sign([], "msg_9", now, BODY, [key])

        with pytest.raises(InvalidSignature):
            verify_v1a(signing.public_key(key), BODY + b"x", headers("msg_9", now, signature))

    def test_both_schemes_in_one_header_verify_each_with_its_own_verifier(self) -> None:
        secret = signing.generate_secret()
        key = signing.load_ed25519_key(signing.generate_ed25519_key())
        now = int(time.time())

        signature = signing.sign([secret], "msg_b", now, BODY, [key])

        assert [entry.split(",")[0] for entry in signature.split(" ")] == ["v1", "v1a"]
        sent = headers("msg_b", now, signature)
        Webhook(signing.format_secret(secret)).verify(BODY, sent)
        verify_v1a(signing.public_key(key), BODY, sent)

    def test_the_library_finds_no_v1_signature_in_a_v1a_only_header(self) -> None:
        # Why docs/webhooks.md tells v1a receivers to verify by hand (or with a
        # library that knows v1a): the PyPI library skips every v1a entry.
        key = signing.load_ed25519_key(signing.generate_ed25519_key())
        now = int(time.time())
        signature = signing.sign([], "msg_c", now, BODY, [key])

        with pytest.raises(WebhookVerificationError):
            Webhook(signing.format_secret(signing.generate_secret())).verify(
                BODY, headers("msg_c", now, signature)
            )


class TestSignArguments:
    def test_nothing_to_sign_with_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="nothing to sign with"):
            signing.sign([], "msg_1", 1, BODY)

    @pytest.mark.parametrize("msg_id", ["", "msg 1", "msg\r\n1"])
    def test_an_id_that_cannot_be_a_header_is_an_error(self, msg_id: str) -> None:
        with pytest.raises(ValueError, match="msg_id"):
            signing.sign([signing.generate_secret()], msg_id, 1, BODY)
