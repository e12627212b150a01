"""Password hashing and API key primitives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sendstream.core import security


class TestPasswordHashing:
    def test_hash_is_argon2id_and_verifies(self) -> None:
        hashed = security.hash_password("correct horse battery staple")
        assert hashed.startswith("$argon2id$")
        assert security.verify_password(hashed, "correct horse battery staple")

    def test_wrong_password_does_not_verify(self) -> None:
        hashed = security.hash_password("correct horse battery staple")
        assert not security.verify_password(hashed, "Correct horse battery staple")

    def test_garbage_hash_does_not_verify(self) -> None:
        assert not security.verify_password("not-a-hash", "anything")

    def test_same_password_hashes_differently(self) -> None:
        assert security.hash_password("pw-pw-pw-pw") != security.hash_password("pw-pw-pw-pw")


class TestApiKeyFormat:
    def test_generated_key_parses_back_to_its_prefix(self) -> None:
        generated = security.generate_api_key()
        parsed = security.parse_api_key(generated.key)
        assert parsed is not None
        assert parsed.prefix == generated.prefix
        assert generated.key.startswith(generated.prefix + "_")

    def test_hash_is_not_the_secret(self) -> None:
        generated = security.generate_api_key()
        secret = generated.key.removeprefix(generated.prefix + "_")
        assert secret not in generated.secret_hash
        assert security.api_key_matches(generated.key, generated.secret_hash)

    def test_keys_are_unique(self) -> None:
        keys = {security.generate_api_key().key for _ in range(200)}
        assert len(keys) == 200

    def test_one_changed_character_does_not_match(self) -> None:
        generated = security.generate_api_key()
        last = generated.key[-1]
        tampered = generated.key[:-1] + ("A" if last != "A" else "B")
        assert not security.api_key_matches(tampered, generated.secret_hash)

    @settings(deadline=None)  # a loaded CI machine must not make this flaky
    @given(st.text(max_size=120))
    def test_arbitrary_text_never_crashes_the_parser(self, value: str) -> None:
        parsed = security.parse_api_key(value)
        assert parsed is None or parsed.key == value
