"""Signed tracking tokens: what goes in comes out, and any change, another
kind, or another installation's key is refused; old master keys keep
working after a rotation."""

from __future__ import annotations

import base64
import uuid

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import SecretStr

from sendstream.core.settings import SecuritySettings, Settings
from sendstream.tracking.errors import TrackingLinkInvalid
from sendstream.tracking.tokens import (
    MAC_BYTES,
    Kind,
    check_mailto,
    mailto_local_part,
    make_token,
    read_mailto_local_part,
    read_token,
)

OTHER_KEY = SecretStr(base64.b64encode(b"other-master-key-32-bytes-long-!").decode())


def with_keys(settings: Settings, master: SecretStr, previous: list[SecretStr]) -> Settings:
    security = SecuritySettings(master_key=master, previous_keys=previous)
    return settings.model_copy(update={"security": security})


def _unb64(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class TestRoundTrip:
    @pytest.mark.parametrize("kind", [Kind.OPEN, Kind.UNSUBSCRIBE, Kind.TRAP])
    @pytest.mark.parametrize("with_ids", [True, False])
    def test_a_token_reads_back_what_it_names(
        self, settings: Settings, kind: Kind, with_ids: bool
    ) -> None:
        ws, message = uuid.uuid4(), uuid.uuid4()
        contact = uuid.uuid4() if with_ids else None
        list_id = uuid.uuid4() if with_ids else None
        claim = read_token(make_token(kind, ws, message, contact, list_id), kind)
        assert (claim.kind, claim.workspace_id, claim.message_id) == (kind, ws, message)
        assert (claim.contact_id, claim.list_id, claim.url) == (contact, list_id, None)

    def test_a_click_token_carries_its_url_exactly(self, settings: Settings) -> None:
        url = "https://shop.example.com/p/ünï?q=a b&x=1#frag"
        token = make_token(Kind.CLICK, uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), None, url)
        assert read_token(token, Kind.CLICK).url == url

    def test_tokens_are_url_safe_and_compact(self, settings: Settings) -> None:
        ids = [uuid.uuid4() for _ in range(4)]
        token = make_token(Kind.UNSUBSCRIBE, *ids)
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        # 2 header bytes, four ids, a 128-bit MAC.
        assert len(_unb64(token)) == 2 + 64 + MAC_BYTES

    def test_a_click_token_needs_a_url_and_others_refuse_one(self, settings: Settings) -> None:
        with pytest.raises(ValueError, match="URL"):
            make_token(Kind.CLICK, uuid.uuid4(), uuid.uuid4())
        with pytest.raises(ValueError, match="URL"):
            make_token(Kind.OPEN, uuid.uuid4(), uuid.uuid4(), url="https://x.example")


class TestTampering:
    def test_every_changed_byte_is_refused(self, settings: Settings) -> None:
        token = make_token(
            Kind.CLICK, uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), "https://a.example/"
        )
        raw = _unb64(token)
        for position in range(len(raw)):
            changed = bytearray(raw)
            changed[position] ^= 0x01
            with pytest.raises(TrackingLinkInvalid):
                read_token(_b64(bytes(changed)), Kind.CLICK)

    def test_another_url_under_the_same_signature_is_refused(self, settings: Settings) -> None:
        token = make_token(Kind.CLICK, uuid.uuid4(), uuid.uuid4(), url="https://good.example/")
        raw = _unb64(token)
        forged = raw[:-MAC_BYTES].replace(b"good", b"evil") + raw[-MAC_BYTES:]
        with pytest.raises(TrackingLinkInvalid):
            read_token(_b64(forged), Kind.CLICK)

    def test_a_pixel_token_is_no_click_or_unsubscribe_token(self, settings: Settings) -> None:
        token = make_token(Kind.OPEN, uuid.uuid4(), uuid.uuid4())
        for other in (Kind.CLICK, Kind.UNSUBSCRIBE, Kind.TRAP):
            with pytest.raises(TrackingLinkInvalid):
                read_token(token, other)

    def test_a_token_of_another_installation_is_refused(self, settings: Settings) -> None:
        foreign = with_keys(settings, OTHER_KEY, [])
        token = make_token(Kind.UNSUBSCRIBE, uuid.uuid4(), uuid.uuid4(), settings=foreign)
        with pytest.raises(TrackingLinkInvalid):
            read_token(token, Kind.UNSUBSCRIBE)

    @hypothesis_settings(max_examples=300, deadline=None)
    @given(garbage=st.text(max_size=300))
    def test_any_other_text_is_refused_cleanly(self, settings: Settings, garbage: str) -> None:
        with pytest.raises(TrackingLinkInvalid):
            read_token(garbage, Kind.OPEN, Kind.CLICK, Kind.UNSUBSCRIBE, Kind.TRAP)


class TestKeyRotation:
    def test_links_signed_before_a_rotation_keep_working(self, settings: Settings) -> None:
        assert settings.security.master_key is not None
        old = settings.security.master_key
        before = make_token(Kind.UNSUBSCRIBE, uuid.uuid4(), uuid.uuid4())
        rotated = with_keys(settings, OTHER_KEY, [old])
        assert read_token(before, Kind.UNSUBSCRIBE, settings=rotated).kind is Kind.UNSUBSCRIBE
        # New links are signed with the new key, which the old setup never held.
        after = make_token(Kind.UNSUBSCRIBE, uuid.uuid4(), uuid.uuid4(), settings=rotated)
        with pytest.raises(TrackingLinkInvalid):
            read_token(after, Kind.UNSUBSCRIBE, settings=settings)

    def test_once_the_old_key_is_dropped_its_links_stop(self, settings: Settings) -> None:
        before = make_token(Kind.OPEN, uuid.uuid4(), uuid.uuid4())
        dropped = with_keys(settings, OTHER_KEY, [])
        with pytest.raises(TrackingLinkInvalid):
            read_token(before, Kind.OPEN, settings=dropped)

    def test_a_malformed_previous_key_is_skipped(self, settings: Settings) -> None:
        assert settings.security.master_key is not None
        token = make_token(Kind.OPEN, uuid.uuid4(), uuid.uuid4())
        odd = with_keys(settings, settings.security.master_key, [SecretStr("not base64!")])
        assert read_token(token, Kind.OPEN, settings=odd).kind is Kind.OPEN


class TestMailtoLocalPart:
    def test_it_fits_a_local_part_and_survives_case_folding(self, settings: Settings) -> None:
        ws, message = uuid.uuid4(), uuid.uuid4()
        local = mailto_local_part(ws, message)
        assert len(local) <= 64
        assert local == local.lower()
        parsed = read_mailto_local_part(local.upper())
        assert parsed is not None
        assert parsed[0] == message
        assert check_mailto(ws, message, parsed[1])
        assert not check_mailto(uuid.uuid4(), message, parsed[1])

    @pytest.mark.parametrize("text", ["", "bounces", "unsub-", "unsub-!!!!", "unsub-aaaa"])
    def test_other_addresses_are_not_read(self, settings: Settings, text: str) -> None:
        assert read_mailto_local_part(text) is None
