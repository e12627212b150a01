"""VERP return paths: one per message, naming workspace and message, and a
token nobody can forge or alter."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from sendstream.core.ids import uuid7
from sendstream.core.settings import Settings
from sendstream.delivery.verp import PREFIX, parse_verp, verp_address


class TestVerpAddress:
    def test_round_trips_workspace_and_message(self, settings: Settings) -> None:
        workspace, message = uuid.uuid4(), uuid7()
        address = verp_address(workspace, message, settings)
        local, _, domain = address.rpartition("@")
        assert domain == settings.delivery.bounce_domain
        assert parse_verp(local, settings) == (workspace, message)
        assert parse_verp(address, settings) == (workspace, message)

    def test_local_part_fits_rfc_5321_and_is_plain_atext(self, settings: Settings) -> None:
        local = verp_address(uuid.uuid4(), uuid7(), settings).rpartition("@")[0]
        assert local.startswith(PREFIX)
        assert len(local) == 64
        assert all(c.isalnum() or c in "+-_" for c in local)

    def test_each_message_gets_its_own_address(self, settings: Settings) -> None:
        workspace = uuid.uuid4()
        assert verp_address(workspace, uuid7(), settings) != verp_address(
            workspace, uuid7(), settings
        )

    def test_another_master_key_does_not_parse(self, settings: Settings) -> None:
        local = verp_address(uuid.uuid4(), uuid7(), settings).rpartition("@")[0]
        other = settings.model_copy(
            update={
                "security": settings.security.model_copy(
                    update={"master_key": SecretStr("b3RoZXItbWFzdGVyLWtleS0zMi1ieXRlcy1sb25nISE=")}
                )
            }
        )
        assert parse_verp(local, other) is None


class TestForgedTokens:
    def test_swapped_message_id_is_refused(self, settings: Settings) -> None:
        workspace = uuid.uuid4()
        real = verp_address(workspace, uuid7(), settings).rpartition("@")[0]
        other = verp_address(workspace, uuid7(), settings).rpartition("@")[0]
        # Workspace and first half of the message id of one, rest of the other.
        forged = real[:40] + other[40:]
        assert parse_verp(forged, settings) is None

    @given(position=st.integers(min_value=len(PREFIX), max_value=63), char=st.sampled_from("aZ0-_"))
    def test_any_changed_character_is_refused(
        self, settings: Settings, position: int, char: str
    ) -> None:
        local = verp_address(uuid.UUID(int=1), uuid.UUID(int=2), settings).rpartition("@")[0]
        if local[position] == char:
            return
        changed = local[:position] + char + local[position + 1 :]
        assert parse_verp(changed, settings) is None

    def test_lower_cased_token_is_refused_not_misread(self, settings: Settings) -> None:
        local = verp_address(uuid.uuid4(), uuid7(), settings).rpartition("@")[0]
        if local != local.lower():
            assert parse_verp(local.lower(), settings) is None

    def test_other_local_parts_are_not_ours(self, settings: Settings) -> None:
        for text in ("postmaster", "bounces+", "bounces+abc", "bounce+" + "a" * 56, ""):
            assert parse_verp(text, settings) is None
