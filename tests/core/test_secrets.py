"""Secrets at rest: AES-256-GCM tokens bound to their place, and master key
rotation."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from sendstream.core import secrets
from sendstream.core.keys import MasterKeyMissing
from sendstream.core.settings import Settings

CONTEXT = "sending_domains.dkim_private_key:0192b0c4-0000-7000-8000-000000000001"
PEM = b"-----BEGIN PRIVATE KEY-----\nMIIE...\n-----END PRIVATE KEY-----\n"


def _new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _settings(master: str, previous: list[str] | None = None) -> Settings:
    return Settings(
        environment="test",
        security={"master_key": master, "previous_keys": previous or []},
    )


@pytest.fixture
def keyed() -> Settings:
    return _settings(_new_key())


class TestRoundTrip:
    def test_decrypts_to_the_plaintext(self, keyed: Settings) -> None:
        token = secrets.encrypt(PEM, CONTEXT, settings=keyed)
        assert secrets.decrypt(token, CONTEXT, settings=keyed) == PEM

    def test_token_holds_no_plaintext_and_has_the_documented_layout(self, keyed: Settings) -> None:
        token = secrets.encrypt(PEM, CONTEXT, settings=keyed)
        assert b"PRIVATE KEY" not in token
        assert token[0] == secrets.VERSION
        assert len(token) == secrets.HEADER_BYTES + secrets.NONCE_BYTES + len(PEM) + 16

    def test_same_plaintext_encrypts_differently_each_time(self, keyed: Settings) -> None:
        first = secrets.encrypt(PEM, CONTEXT, settings=keyed)
        second = secrets.encrypt(PEM, CONTEXT, settings=keyed)
        assert first != second
        assert first[: secrets.HEADER_BYTES] == second[: secrets.HEADER_BYTES]

    def test_empty_context_is_refused(self, keyed: Settings) -> None:
        with pytest.raises(ValueError, match="context"):
            secrets.encrypt(PEM, "", settings=keyed)

    @hypothesis_settings(deadline=None, max_examples=50)
    @given(st.binary(max_size=2000), st.text(min_size=1, max_size=80))
    def test_any_plaintext_and_context_round_trip(self, plaintext: bytes, context: str) -> None:
        keyed = _settings("dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmctISE=")
        token = secrets.encrypt(plaintext, context, settings=keyed)
        assert secrets.decrypt(token, context, settings=keyed) == plaintext


class TestBinding:
    def test_another_context_does_not_decrypt(self, keyed: Settings) -> None:
        token = secrets.encrypt(PEM, CONTEXT, settings=keyed)
        other_row = CONTEXT[:-1] + "2"
        with pytest.raises(secrets.SecretDecryptionFailed, match=other_row):
            secrets.decrypt(token, other_row, settings=keyed)

    @pytest.mark.parametrize("position", [5, 12, 20, -1])
    def test_a_changed_byte_does_not_decrypt(self, keyed: Settings, position: int) -> None:
        token = bytearray(secrets.encrypt(PEM, CONTEXT, settings=keyed))
        token[position] ^= 0x01
        with pytest.raises(secrets.SecretDecryptionFailed, match=CONTEXT):
            secrets.decrypt(bytes(token), CONTEXT, settings=keyed)

    def test_a_changed_key_id_names_the_missing_key(self, keyed: Settings) -> None:
        token = bytearray(secrets.encrypt(PEM, CONTEXT, settings=keyed))
        token[1] ^= 0xFF
        with pytest.raises(secrets.SecretKeyNotFound, match=r"no configured master key fits"):
            secrets.decrypt(bytes(token), CONTEXT, settings=keyed)

    @pytest.mark.parametrize("token", [b"", b"\x01short", b"\x09" + bytes(40)])
    def test_garbage_is_refused_as_malformed(self, keyed: Settings, token: bytes) -> None:
        with pytest.raises(secrets.MalformedSecret, match=CONTEXT):
            secrets.decrypt(token, CONTEXT, settings=keyed)

    def test_another_master_key_cannot_read_it(self, keyed: Settings) -> None:
        token = secrets.encrypt(PEM, CONTEXT, settings=keyed)
        stranger = _settings(_new_key())
        with pytest.raises(secrets.SecretKeyNotFound, match=CONTEXT):
            secrets.decrypt(token, CONTEXT, settings=stranger)


class TestRotation:
    def test_old_tokens_decrypt_after_rotation_and_are_reencrypted_under_the_new_key(
        self,
    ) -> None:
        old_master, new_master = _new_key(), _new_key()
        before = _settings(old_master)
        token = secrets.encrypt(PEM, CONTEXT, settings=before)
        assert not secrets.needs_rotation(token, settings=before)

        after = _settings(new_master, previous=[old_master])
        assert secrets.decrypt(token, CONTEXT, settings=after) == PEM
        assert secrets.needs_rotation(token, settings=after)

        rotated = secrets.reencrypt(token, CONTEXT, settings=after)
        assert not secrets.needs_rotation(rotated, settings=after)
        assert secrets.key_id(rotated) != secrets.key_id(token)
        fresh = secrets.encrypt(PEM, CONTEXT, settings=after)
        assert secrets.key_id(fresh) == secrets.key_id(rotated)

        # Once everything is rotated, the old key can go.
        only_new = _settings(new_master)
        assert secrets.decrypt(rotated, CONTEXT, settings=only_new) == PEM
        with pytest.raises(secrets.SecretKeyNotFound):
            secrets.decrypt(token, CONTEXT, settings=only_new)

    def test_a_malformed_previous_key_names_its_position(self) -> None:
        broken = _settings(_new_key(), previous=[_new_key(), "not base64!"])
        token = secrets.encrypt(PEM, CONTEXT, settings=_settings(_new_key()))
        with pytest.raises(MasterKeyMissing, match=r"PREVIOUS_KEYS\[1\]"):
            secrets.decrypt(token, CONTEXT, settings=broken)

    def test_garbage_always_needs_rotation(self, keyed: Settings) -> None:
        assert secrets.needs_rotation(b"", settings=keyed)
