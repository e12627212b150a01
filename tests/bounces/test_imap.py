"""The IMAP bounce mailbox against a real Dovecot: each message handed to the
intake once, then moved or flagged; restarts, UIDVALIDITY changes, dropped
connections, refused logins, IDLE and XOAUTH2."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import update

from sendstream.bounces.imap_runner import ImapRunner
from sendstream.bounces.imap_schemas import BounceMailboxUpdate
from sendstream.bounces.imap_service import imap_mailbox_service
from sendstream.core.db import Database
from sendstream.core.settings import Settings
from sendstream.models.imap_mailbox import ImapMailbox
from tests.bounces.imap_support import (
    PASSWORD,
    USER,
    dsn,
    imap_settings,
    inbound,
    mailbox_row,
    make_mailbox,
    outcomes,
    running,
    wait_for,
)
from tests.fixtures.actors import Actor
from tests.fixtures.dovecot import Dovecot, OAuthServer

VERP = "b+abc123@bounces.example.net"


@pytest.fixture
def user(dovecot: Dovecot) -> str:
    dovecot.add_user(USER, PASSWORD)
    return USER


class TestPasswordMailbox:
    async def test_dsn_is_handed_to_the_intake_once_then_moved(
        self, db: Database, settings: Settings, dovecot: Dovecot, user: str, admin_actor: Actor
    ) -> None:
        await dovecot.append(user, dsn(1, verp=VERP))
        mailbox_id = await make_mailbox(
            db, dovecot, admin_actor.workspace_id, processed_folder="Done"
        )
        async with running(db, imap_settings(settings), mailbox_id):
            await wait_for(lambda: dovecot.folder(user, "Done"), "the DSN moved to Done")
        rows = await inbound(db)
        assert len(rows) == 1
        row = rows[0]
        assert row.source == "imap"
        assert row.workspace_id == admin_actor.workspace_id
        assert row.mail_from is None  # Return-Path: <>
        assert row.rcpt_to == [VERP]
        assert b"Final-Recipient: rfc822; gone1@example.com" in row.raw
        assert await dovecot.folder(user, "INBOX") == []
        moved = await dovecot.folder(user, "Done")
        assert [m[2] for m in moved] == ["<dsn-1@mx.example.com>"]
        state = await mailbox_row(db, mailbox_id)
        assert state.last_uid == 1
        assert state.uidvalidity == await dovecot.uidvalidity(user, "INBOX")
        assert state.last_error is None

    async def test_starttls_and_flag_action(
        self, db: Database, settings: Settings, dovecot: Dovecot, user: str, admin_actor: Actor
    ) -> None:
        await dovecot.append(user, dsn(2))
        mailbox_id = await make_mailbox(
            db,
            dovecot,
            admin_actor.workspace_id,
            port=dovecot.port,
            tls="starttls",
            processed_action="flag",
            processed_flag="$SendstreamDone",
        )
        async with running(db, imap_settings(settings), mailbox_id):

            async def flagged() -> bool:
                return any("$SendstreamDone" in m[1] for m in await dovecot.folder(user))

            await wait_for(flagged, "the keyword on the DSN")
        assert len(await inbound(db)) == 1

    async def test_restart_does_not_hand_over_again(
        self, db: Database, settings: Settings, dovecot: Dovecot, user: str, admin_actor: Actor
    ) -> None:
        await dovecot.append(user, dsn(1))
        mailbox_id = await make_mailbox(
            db, dovecot, admin_actor.workspace_id, processed_action="flag"
        )
        config = imap_settings(settings)
        async with running(db, config, mailbox_id):
            await wait_for(lambda: _last_uid(db, mailbox_id, 1), "the first DSN")
        # A crash after the intake committed but before the position was
        # saved: the next session fetches the message again.
        async with db.session() as session:
            await session.execute(
                update(ImapMailbox).where(ImapMailbox.id == mailbox_id).values(last_uid=0)
            )
        await dovecot.append(user, dsn(2))
        async with running(db, config, mailbox_id):
            await wait_for(lambda: _last_uid(db, mailbox_id, 2), "the second DSN")
        rows = await inbound(db)
        assert [b"dsn-1@" in r.raw for r in rows] == [True, False]
        assert await outcomes(db, mailbox_id) == {"accepted": 2}

    async def test_uidvalidity_change_starts_over_without_handing_over_twice(
        self, db: Database, settings: Settings, dovecot: Dovecot, user: str, admin_actor: Actor
    ) -> None:
        await dovecot.append(user, dsn(1), folder="Bounces")
        mailbox_id = await make_mailbox(
            db, dovecot, admin_actor.workspace_id, folder="Bounces", processed_action="flag"
        )
        config = imap_settings(settings)
        async with running(db, config, mailbox_id):
            await wait_for(lambda: _last_uid(db, mailbox_id, 1), "the first DSN")
        first = (await mailbox_row(db, mailbox_id)).uidvalidity
        # The folder is rebuilt (a migration, a restore): new UIDVALIDITY,
        # the old message under a new UID, plus a new one.
        await dovecot.recreate_folder(user, "Bounces")
        await dovecot.append(user, dsn(1), folder="Bounces")
        await dovecot.append(user, dsn(2), folder="Bounces")
        async with running(db, config, mailbox_id):
            await wait_for(lambda: _last_uid(db, mailbox_id, 2), "both messages seen")
        state = await mailbox_row(db, mailbox_id)
        assert state.uidvalidity != first
        assert state.uidvalidity == await dovecot.uidvalidity(user, "Bounces")
        rows = await inbound(db)
        assert len(rows) == 2
        assert b"dsn-2@" in rows[1].raw
        assert await outcomes(db, mailbox_id) == {"accepted": 2, "duplicate": 1}

    async def test_a_dropped_connection_is_made_again(
        self, db: Database, settings: Settings, dovecot: Dovecot, user: str, admin_actor: Actor
    ) -> None:
        mailbox_id = await make_mailbox(
            db, dovecot, admin_actor.workspace_id, mode="idle", processed_action="flag"
        )
        await dovecot.append(user, dsn(1))
        async with running(db, imap_settings(settings), mailbox_id) as (loop, task):
            await wait_for(lambda: _last_uid(db, mailbox_id, 1), "the first DSN")
            assert dovecot.kill_sessions() >= 1  # the session dies mid-IDLE
            await dovecot.append(user, dsn(2))
            await wait_for(lambda: _last_uid(db, mailbox_id, 2), "the DSN after the drop")
            assert loop.sessions >= 2
            await asyncio.to_thread(dovecot.restart)  # the whole server goes away and back
            await dovecot.append(user, dsn(3))
            await wait_for(lambda: _last_uid(db, mailbox_id, 3), "the DSN after the restart")
            assert loop.sessions >= 3
            assert not task.done()
        assert len(await inbound(db)) == 3

    async def test_a_wrong_password_is_recorded_and_retried(
        self, db: Database, settings: Settings, dovecot: Dovecot, user: str, admin_actor: Actor
    ) -> None:
        mailbox_id = await make_mailbox(db, dovecot, admin_actor.workspace_id, password="wrong")
        async with running(db, imap_settings(settings), mailbox_id) as (loop, task):

            async def error() -> str | None:
                return (await mailbox_row(db, mailbox_id)).last_error

            message = await wait_for(error, "last_error")
            assert "AUTHENTICATIONFAILED" in message
            assert not task.done()
            assert loop.sessions == 0

    async def test_an_untrusted_certificate_is_refused(
        self, db: Database, settings: Settings, dovecot: Dovecot, user: str, admin_actor: Actor
    ) -> None:
        mailbox_id = await make_mailbox(db, dovecot, admin_actor.workspace_id, ca_certificates=None)
        async with running(db, imap_settings(settings), mailbox_id):

            async def error() -> str | None:
                return (await mailbox_row(db, mailbox_id)).last_error

            assert "certificate verify failed" in await wait_for(error, "last_error")
        assert await inbound(db) == []

    async def test_idle_picks_up_mail_as_it_arrives(
        self, db: Database, settings: Settings, dovecot: Dovecot, user: str, admin_actor: Actor
    ) -> None:
        # Polling once a day: only IDLE can bring the message in.
        mailbox_id = await make_mailbox(
            db, dovecot, admin_actor.workspace_id, mode="idle", poll_interval=86400
        )
        async with running(db, imap_settings(settings), mailbox_id) as (loop, _):

            async def synced() -> bool:
                return loop.syncs >= 1

            await wait_for(synced, "the first (empty) sync")
            await asyncio.sleep(0.3)  # into IDLE
            await dovecot.append(user, dsn(7))
            await wait_for(lambda: _inbound_count(db, 1), "the DSN through IDLE")
            assert loop.sessions == 1

    async def test_oversized_mail_is_left_unread_and_recorded(
        self, db: Database, settings: Settings, dovecot: Dovecot, user: str, admin_actor: Actor
    ) -> None:
        await dovecot.append(user, dsn(1, size_pad=8000))
        await dovecot.append(user, dsn(2))
        mailbox_id = await make_mailbox(db, dovecot, admin_actor.workspace_id)
        config = imap_settings(settings, imap_max_message_bytes=4096)
        async with running(db, config, mailbox_id):
            await wait_for(lambda: _last_uid(db, mailbox_id, 2), "both messages seen")
        rows = await inbound(db)
        assert len(rows) == 1
        assert b"dsn-2@" in rows[0].raw
        left = await dovecot.folder(user)
        assert [m[2] for m in left] == ["<dsn-1@mx.example.com>"]
        assert await outcomes(db, mailbox_id) == {"accepted": 1, "oversized": 1}

    async def test_two_workers_hand_each_message_over_once(
        self, db: Database, settings: Settings, dovecot: Dovecot, user: str, admin_actor: Actor
    ) -> None:
        for n in range(5):
            await dovecot.append(user, dsn(n))
        mailbox_id = await make_mailbox(db, dovecot, admin_actor.workspace_id)
        config = imap_settings(settings)
        async with running(db, config, mailbox_id), running(db, config, mailbox_id):
            await wait_for(lambda: _last_uid(db, mailbox_id, 5), "all five")
        assert len(await inbound(db)) == 5
        assert len(await dovecot.folder(user, "Processed")) == 5


class TestXoauth2Mailbox:
    async def test_access_token_obtained_with_the_refresh_token(
        self,
        db: Database,
        settings: Settings,
        dovecot: Dovecot,
        oauth_server: OAuthServer,
        admin_actor: Actor,
    ) -> None:
        oauth_server.refresh_tokens["refresh-1"] = USER
        dovecot.add_user(USER, PASSWORD)  # for the test's own client only
        await dovecot.append(USER, dsn(1))
        mailbox_id = await make_mailbox(
            db,
            dovecot,
            admin_actor.workspace_id,
            auth="xoauth2",
            password=None,
            oauth_token_url=oauth_server.token_url,
            oauth_client_id=oauth_server.client_id,
            oauth_client_secret=oauth_server.client_secret,
            oauth_refresh_token="refresh-1",
        )
        async with running(db, imap_settings(settings), mailbox_id):
            await wait_for(lambda: _inbound_count(db, 1), "the DSN over XOAUTH2")
        assert oauth_server.token_requests == 1
        state = await mailbox_row(db, mailbox_id)
        assert state.access_token_encrypted is not None
        assert state.access_token_expires_at is not None
        assert state.last_error is None

    async def test_a_refused_access_token_is_refreshed(
        self,
        db: Database,
        settings: Settings,
        dovecot: Dovecot,
        oauth_server: OAuthServer,
        admin_actor: Actor,
    ) -> None:
        oauth_server.refresh_tokens["refresh-2"] = USER
        dovecot.add_user(USER, PASSWORD)
        await dovecot.append(USER, dsn(1))
        mailbox_id = await make_mailbox(
            db,
            dovecot,
            admin_actor.workspace_id,
            auth="xoauth2",
            password=None,
            access_token="revoked-token",
            oauth_token_url=oauth_server.token_url,
            oauth_client_id=oauth_server.client_id,
            oauth_client_secret=oauth_server.client_secret,
            oauth_refresh_token="refresh-2",
        )
        async with running(db, imap_settings(settings), mailbox_id):
            await wait_for(lambda: _inbound_count(db, 1), "the DSN after the refresh")
        assert oauth_server.token_requests == 1
        assert oauth_server.introspections >= 2  # the revoked token, then the new one

    async def test_a_static_token_that_is_refused_is_recorded(
        self,
        db: Database,
        settings: Settings,
        dovecot: Dovecot,
        oauth_server: OAuthServer,
        admin_actor: Actor,
    ) -> None:
        mailbox_id = await make_mailbox(
            db,
            dovecot,
            admin_actor.workspace_id,
            auth="xoauth2",
            password=None,
            access_token="never-issued",
        )
        async with running(db, imap_settings(settings), mailbox_id):

            async def error() -> str | None:
                return (await mailbox_row(db, mailbox_id)).last_error

            assert "AUTHENTICATIONFAILED" in await wait_for(error, "last_error")
        assert oauth_server.token_requests == 0


async def _last_uid(db: Database, mailbox_id: object, uid: int) -> bool:
    row = await mailbox_row(db, mailbox_id)  # type: ignore[arg-type]
    return row.last_uid >= uid


async def _inbound_count(db: Database, n: int) -> bool:
    return len(await inbound(db)) >= n


class TestRunner:
    async def test_the_worker_loop_serves_enabled_mailboxes_and_lets_go_of_disabled_ones(
        self, db: Database, settings: Settings, dovecot: Dovecot, user: str, admin_actor: Actor
    ) -> None:
        await dovecot.append(user, dsn(1))
        mailbox_id = await make_mailbox(db, dovecot, admin_actor.workspace_id, mode="idle")
        runner = ImapRunner(settings=imap_settings(settings), database=db)
        task = asyncio.create_task(runner.run())
        try:
            await wait_for(lambda: _inbound_count(db, 1), "the DSN through the runner")
            assert set(runner.loops) == {mailbox_id}
            async with db.session() as session:
                await imap_mailbox_service.update_mailbox(
                    session,
                    admin_actor.workspace_id,
                    mailbox_id,
                    BounceMailboxUpdate(enabled=False),
                )

            async def let_go() -> bool:
                return not runner.loops

            await wait_for(let_go, "the disabled mailbox's loop to end")
            await dovecot.append(user, dsn(2))
            await asyncio.sleep(1.0)  # several reloads: nothing may pick the DSN up
            assert len(await inbound(db)) == 1
        finally:
            runner.stop()
            await asyncio.wait_for(task, 20)
