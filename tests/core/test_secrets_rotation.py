"""`sendstream secrets rotate`: every secret at rest re-encrypted under a new
master key, so the old one can be dropped; run against a scratch database
(rotating the suite's shared one would change other tests' secrets)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from sendstream.core import migrate, secrets, secrets_rotation
from sendstream.core.db import Database, create_database
from sendstream.core.settings import Settings, get_settings, override_settings
from sendstream.delivery.domain_service import domain_service
from sendstream.models.sending_domain import SendingDomain
from sendstream.workspaces.service import workspace_service
from tests.fixtures.databases import create_fresh_database, drop_database
from tests.fixtures.processes import clean_env


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


OLD, NEW = _key(), _key()


def _keyed(url: URL, master: str, previous: list[str]) -> Settings:
    return Settings(
        environment="test",
        database_url=url.render_as_string(hide_password=False),
        security={"master_key": master, "previous_keys": previous},
    )


@pytest.fixture
def scratch_url(database_admin_url: str) -> Iterator[URL]:
    name = f"sendstream_rotation_{os.getpid()}"
    url = create_fresh_database(database_admin_url, name)
    migrate.upgrade(url)
    yield url
    drop_database(database_admin_url, name)


@pytest.fixture
async def old_domains(scratch_url: URL) -> AsyncIterator[Database]:
    """A scratch database with three sending domains (one dual-signing)
    whose keys were encrypted under OLD."""
    suite = get_settings()
    settings = _keyed(scratch_url, OLD, [])
    override_settings(settings)
    database = create_database(settings, url=scratch_url)
    try:
        async with database.session() as session:
            workspace = await workspace_service.create_workspace(
                session, name="Rotation", slug=f"rotation-{uuid.uuid4().hex[:8]}"
            )
            for i, dual in enumerate([False, True, False]):
                await domain_service.create_domain(
                    session, workspace.id, name=f"mail{i}.example.com", dual_sign_ed25519=dual
                )
        yield database
    finally:
        override_settings(suite)
        await database.dispose()


async def _tokens(database: Database) -> list[tuple[uuid.UUID, bytes, bytes | None]]:
    async with database.session() as session:
        rows = await session.execute(
            select(
                SendingDomain.id, SendingDomain.dkim_private_key, SendingDomain.ed25519_private_key
            ).order_by(SendingDomain.id)
        )
        return [(r[0], r[1], r[2]) for r in rows]


class TestRotate:
    async def test_every_secret_moves_to_the_new_key_and_reads_back_the_same(
        self, old_domains: Database, scratch_url: URL
    ) -> None:
        both = _keyed(scratch_url, NEW, [OLD])
        before = await _tokens(old_domains)
        plain_before = [
            secrets.decrypt(dkim, f"sending_domains.dkim_private_key:{i}", settings=both)
            for i, dkim, _ in before
        ]

        status = {(r.table, r.column): r for r in await secrets_rotation.status(old_domains, both)}
        assert status["sending_domains", "dkim_private_key"].outdated == 3
        assert status["sending_domains", "ed25519_private_key"].outdated == 1

        rotated = await secrets_rotation.rotate(old_domains, both, batch_size=2)
        assert sum(r.rotated for r in rotated) == 4

        new_only = _keyed(scratch_url, NEW, [])
        after = await _tokens(old_domains)
        for (row_id, dkim, ed25519), plain in zip(after, plain_before, strict=True):
            assert not secrets.needs_rotation(dkim, settings=new_only)
            context = f"sending_domains.dkim_private_key:{row_id}"
            assert secrets.decrypt(dkim, context, settings=new_only) == plain
            if ed25519 is not None:
                secrets.decrypt(
                    ed25519, f"sending_domains.ed25519_private_key:{row_id}", settings=new_only
                )
        assert all(r.outdated == 0 for r in await secrets_rotation.status(old_domains, new_only))

    async def test_running_it_again_changes_nothing(
        self, old_domains: Database, scratch_url: URL
    ) -> None:
        both = _keyed(scratch_url, NEW, [OLD])
        await secrets_rotation.rotate(old_domains, both)
        once = await _tokens(old_domains)
        again = await secrets_rotation.rotate(old_domains, both)
        assert sum(r.rotated for r in again) == 0
        assert await _tokens(old_domains) == once

    async def test_a_secret_no_configured_key_reads_stops_it_and_names_the_row(
        self, old_domains: Database, scratch_url: URL
    ) -> None:
        stranger = _keyed(scratch_url, NEW, [])
        with pytest.raises(secrets.SecretKeyNotFound) as caught:
            await secrets_rotation.rotate(old_domains, stranger)
        assert caught.value.context.startswith("sending_domains.dkim_private_key:")
        before = await _tokens(old_domains)
        assert all(secrets.needs_rotation(dkim, settings=stranger) for _, dkim, _ in before), (
            "nothing was half-rotated"
        )

    def test_the_columns_are_declared_on_the_models(self) -> None:
        found = {(t.name, c.name) for t, c in secrets_rotation.encrypted_columns()}
        assert {
            ("sending_domains", "dkim_private_key"),
            ("sending_domains", "ed25519_private_key"),
            ("webhook_endpoints", "secret_encrypted"),
            ("webhook_endpoints", "previous_secret_encrypted"),
            ("webhook_endpoints", "headers_encrypted"),
            ("webhook_endpoints", "ed25519_private_encrypted"),
        } <= found


class TestCommand:
    async def test_status_then_rotate_from_the_command_line(
        self, old_domains: Database, scratch_url: URL, tmp_path: Path
    ) -> None:
        env = clean_env(
            SENDSTREAM_DATABASE_URL=scratch_url.render_as_string(hide_password=False),
            SENDSTREAM_ENVIRONMENT="test",
            SENDSTREAM_SECURITY__MASTER_KEY=NEW,
            SENDSTREAM_SECURITY__PREVIOUS_KEYS=json.dumps([OLD]),
        )

        def run(*args: str) -> list[dict[str, object]]:
            done = subprocess.run(
                [sys.executable, "-m", "sendstream.cli", "secrets", *args, "--json"],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)  # type: ignore[no-any-return]

        def by_column(reports: list[dict[str, object]], key: str) -> dict[str, object]:
            return {f"{r['table']}.{r['column']}": r[key] for r in reports}

        assert by_column(run("status"), "outdated")["sending_domains.dkim_private_key"] == 3
        assert by_column(run("rotate"), "rotated")["sending_domains.dkim_private_key"] == 3
        assert by_column(run("status"), "outdated")["sending_domains.dkim_private_key"] == 0
