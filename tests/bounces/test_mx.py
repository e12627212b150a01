"""The inbound MX against a real SMTP client (aiosmtplib) on loopback: it
refuses unknown and forged addresses at RCPT time, accepts DSNs for VERP
return paths durably (250 only after the commit), and the `bounces.process`
job turns them into suppressions, states and events, once, in the right
workspace only."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiosmtplib
import httpx
import pytest
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import URL

from sendstream.bounces.intake import inbound_service
from sendstream.core.db import Database, create_database
from sendstream.core.ids import uuid7
from sendstream.core.settings import Settings
from sendstream.delivery.verp import PREFIX, verp_address
from sendstream.models.message import Message
from sendstream.tracking.links import mailto_domain
from sendstream.tracking.tokens import mailto_local_part
from tests.bounces.action_support import (
    Mailed,
    dsn,
    event_types,
    execute,
    hard_dsn,
    mailed,
    rows,
    scalar,
    states,
    suppression,
    totals,
)
from tests.bounces.mx_support import StartMx, start_mx, wait_processed
from tests.fixtures.actors import Actor
from tests.fixtures.job_worker import WorkerHarness, workers
from tests.fixtures.processes import free_port
from tests.fixtures.smtp_servers import TlsFiles

__all__ = ["start_mx", "workers"]  # fixtures used below

BOUNCE_DOMAIN = "bounces.sendstream.localhost"


async def rcpt_reply(port: int, address: str) -> tuple[int, str]:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as smtp:
        await smtp.ehlo()
        await smtp.mail("")
        return await _rcpt(smtp, address)


async def _rcpt(smtp: aiosmtplib.SMTP, address: str) -> tuple[int, str]:
    try:
        response = await smtp.rcpt(address)
    except aiosmtplib.SMTPRecipientRefused as refused:
        return refused.code, refused.message
    return response.code, response.message


async def send(port: int, raw: bytes, rcpt: list[str], *, sender: str = "") -> str:
    """One message over SMTP; the final reply's text."""
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as smtp:
        errors, reply = await smtp.sendmail(sender, rcpt, raw)
        assert not errors, errors
        return reply


@pytest.fixture
async def ada(client: httpx.AsyncClient, db: Database, admin_actor: Actor) -> Mailed:
    return await mailed(client, db, admin_actor)


class TestRecipients:
    async def test_an_unknown_address_is_refused_at_rcpt(self, start_mx: StartMx) -> None:
        mx = await start_mx()
        assert mx.port is not None
        for address in (f"someone@{BOUNCE_DOMAIN}", "ada@example.com", "postmaster@example.com"):
            code, message = await rcpt_reply(mx.port, address)
            assert code == 550, address
            assert message.startswith("5.1.1"), message

    async def test_a_forged_verp_token_is_refused_at_rcpt(
        self, start_mx: StartMx, ada: Mailed
    ) -> None:
        mx = await start_mx()
        assert mx.port is not None
        real = ada.verp
        local, _, domain = real.partition("@")
        token = local[len(PREFIX) :]
        flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
        guessed = verp_address(ada.actor.workspace_id, uuid.uuid4()).split("@")[0][:-4] + "AAAA"
        for forged in (f"{PREFIX}{flipped}@{domain}", f"{guessed}@{domain}", real.upper()):
            assert (await rcpt_reply(mx.port, forged))[0] == 550, forged
        assert (await rcpt_reply(mx.port, real))[0] == 250

    async def test_role_addresses_and_mailto_unsubscribe_addresses_are_taken(
        self, start_mx: StartMx, settings: Settings, ada: Mailed
    ) -> None:
        mx = await start_mx()
        assert mx.port is not None
        unsubscribe = f"{mailto_local_part(ada.actor.workspace_id, ada.message.id)}@" + (
            mailto_domain(settings)
        )
        for address in (
            f"postmaster@{BOUNCE_DOMAIN}",
            f"Abuse@{BOUNCE_DOMAIN.upper()}",
            "postmaster",
            unsubscribe,
        ):
            assert (await rcpt_reply(mx.port, address))[0] == 250, address


class TestIntake:
    async def test_an_accepted_bounce_is_processed_into_suppression_and_events(
        self, start_mx: StartMx, workers: WorkerHarness, db: Database, ada: Mailed
    ) -> None:
        mx = await start_mx()
        assert mx.port is not None
        await workers.start()
        reply = await send(mx.port, hard_dsn(ada.verp, "ada@example.com"), [ada.verp])
        assert "queued as" in reply
        await wait_processed(db)
        [inbound] = await rows(
            db, "SELECT status, source, mail_from, rcpt_to, workspace_id FROM inbound_messages"
        )
        assert (inbound["status"], inbound["source"], inbound["mail_from"]) == (
            "processed",
            "mx",
            None,
        )
        assert inbound["rcpt_to"] == [ada.verp]
        assert inbound["workspace_id"] == ada.actor.workspace_id
        assert await states(db, ada) == ("bounced", "bounced", "bounced")
        assert await suppression(db, ada.actor.workspace_id, "ada@example.com") == {
            "reason": "bounced",
            "source": "bounce",
        }
        assert "message.bounced" in await event_types(db, ada.message.id)
        [record] = await rows(db, "SELECT source, status, reason, hard FROM bounce_records")
        assert record == {"source": "mx", "status": "5.1.1", "reason": "user_unknown", "hard": True}

    async def test_mail_to_the_mailto_address_unsubscribes(
        self,
        start_mx: StartMx,
        workers: WorkerHarness,
        db: Database,
        settings: Settings,
        ada: Mailed,
    ) -> None:
        mx = await start_mx()
        assert mx.port is not None
        await workers.start()
        local = mailto_local_part(ada.actor.workspace_id, ada.message.id)
        raw = (
            b"From: ada@example.com\r\nTo: " + local.encode() + b"@x\r\n"
            b"Subject: unsubscribe\r\n\r\nunsubscribe\r\n"
        )
        await send(mx.port, raw, [f"{local}@{mailto_domain(settings)}"], sender="ada@example.com")
        await wait_processed(db)
        assert (await states(db, ada))[2] == "unsubscribed"
        assert "message.unsubscribed" in await event_types(db, ada.message.id)

    async def test_oversize_mail_gets_552_and_nothing_is_stored(
        self, start_mx: StartMx, db: Database, ada: Mailed
    ) -> None:
        mx = await start_mx(mx_max_message_bytes=4096)
        assert mx.port is not None
        big = hard_dsn(ada.verp, "ada@example.com") + b"x" * 70 + (b"\r\n" + b"y" * 70) * 200
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=mx.port, start_tls=False) as smtp:
            # Declared too big: refused at MAIL, before any data.
            with pytest.raises(aiosmtplib.SMTPSenderRefused) as declared:
                await smtp.mail("", options=["SIZE=999999"])
            assert (declared.value.code, declared.value.message[:5]) == (552, "5.3.4")
            await smtp.rset()
            # Not declared: read to the end, thrown away, refused after the dot.
            await smtp.mail("")
            await smtp.rcpt(ada.verp)
            with pytest.raises(aiosmtplib.SMTPDataError) as sent:
                await smtp.data(big)
            assert (sent.value.code, sent.value.message[:5]) == (552, "5.3.4")
        assert await scalar(db, "SELECT count(*) FROM inbound_messages") == 0

    async def test_one_connection_too_many_gets_421(self, start_mx: StartMx) -> None:
        mx = await start_mx(mx_max_connections=1)
        assert mx.port is not None
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=mx.port, start_tls=False) as first:
            await first.ehlo()
            reader, writer = await asyncio.open_connection("127.0.0.1", mx.port)
            line = await asyncio.wait_for(reader.readline(), 10)
            assert line.startswith(b"421 4.7.0"), line
            assert await asyncio.wait_for(reader.read(), 10) == b""  # closed
            writer.close()
            await first.noop()  # the first connection is unaffected
        # Its slot is free again once it has gone.
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=mx.port, start_tls=False) as again:
            assert (await again.noop()).code == 250

    async def test_starttls_is_offered_with_a_certificate(
        self, start_mx: StartMx, db: Database, tls_files: TlsFiles, ada: Mailed
    ) -> None:
        mx = await start_mx(tls_cert_file=tls_files.cert, tls_key_file=tls_files.key)
        assert mx.port is not None
        async with aiosmtplib.SMTP(
            hostname="127.0.0.1", port=mx.port, start_tls=True, validate_certs=False
        ) as smtp:
            assert smtp.get_transport_info("sslcontext") is not None
            errors, _ = await smtp.sendmail("", [ada.verp], hard_dsn(ada.verp, "ada@example.com"))
            assert not errors
        assert await scalar(db, "SELECT count(*) FROM inbound_messages") == 1

    async def test_database_down_answers_451_and_the_sender_keeps_the_mail(
        self, start_mx: StartMx, settings: Settings, database_url: URL, ada: Mailed
    ) -> None:
        down = create_database(settings, url=database_url.set(port=free_port()))
        try:
            mx = await start_mx(database=down)
            assert mx.port is not None
            with pytest.raises(aiosmtplib.SMTPDataError) as refused:
                await send(mx.port, hard_dsn(ada.verp, "ada@example.com"), [ada.verp])
            assert (refused.value.code, refused.value.message[:5]) == (451, "4.3.0")
        finally:
            await down.dispose()


class TestWorkspaces:
    async def test_a_bounce_naming_another_workspaces_message_leaves_it_untouched(
        self,
        client: httpx.AsyncClient,
        start_mx: StartMx,
        workers: WorkerHarness,
        db: Database,
        ada: Mailed,
        other_workspace_actor: Actor,
    ) -> None:
        theirs = await mailed(client, db, other_workspace_actor, email="bob@example.com")
        their_header = await scalar(
            db, "SELECT message_id_header FROM messages WHERE id = :id", id=theirs.message.id
        )
        mx = await start_mx()
        assert mx.port is not None
        await workers.start()
        # To A's return path, quoting B's message and recipient.
        raw = hard_dsn(ada.verp, "bob@example.com", original_message_id=their_header)
        await send(mx.port, raw, [ada.verp])
        await wait_processed(db)
        assert await states(db, theirs) == ("sent", "active", "subscribed")
        assert await event_types(db, theirs.message.id) == []
        assert await suppression(db, other_workspace_actor.workspace_id, "bob@example.com") == {}
        assert (
            await scalar(
                db,
                "SELECT count(*) FROM bounce_records WHERE workspace_id = :w",
                w=other_workspace_actor.workspace_id,
            )
            == 0
        )

    async def test_a_workspace_mailbox_ignores_another_workspaces_return_path(
        self,
        client: httpx.AsyncClient,
        workers: WorkerHarness,
        db: Database,
        ada: Mailed,
        other_workspace_actor: Actor,
    ) -> None:
        theirs = await mailed(client, db, other_workspace_actor, email="bob@example.com")
        await workers.start()
        async with db.session() as session:
            await inbound_service.accept(
                session,
                hard_dsn(theirs.verp, "bob@example.com"),
                source="imap",
                mail_from=None,
                rcpt_to=["bounces@mailbox.example"],
                workspace_id=ada.actor.workspace_id,
            )
        await wait_processed(db)
        [inbound] = await rows(db, "SELECT status, error FROM inbound_messages")
        assert inbound["status"] == "ignored"
        assert "another workspace" in inbound["error"]
        assert await states(db, theirs) == ("sent", "active", "subscribed")
        assert await scalar(db, "SELECT count(*) FROM bounce_records") == 0


class TestDurability:
    async def test_mail_accepted_while_no_worker_runs_is_processed_later_once(
        self, start_mx: StartMx, workers: WorkerHarness, db: Database, ada: Mailed
    ) -> None:
        mx = await start_mx()
        assert mx.port is not None
        await send(mx.port, hard_dsn(ada.verp, "ada@example.com"), [ada.verp])
        # Stored and queued before the 250: a process dying now loses nothing.
        assert await scalar(db, "SELECT status FROM inbound_messages") == "received"
        assert await scalar(db, "SELECT count(*) FROM jobs WHERE kind = 'bounces.process'") == 1
        await workers.start()
        await wait_processed(db)
        after = await totals(db)
        assert after["bounce_records"] == 1
        # Run it all again, as a re-run of the job after a crash would.
        await execute(db, "UPDATE inbound_messages SET status = 'received'")
        [inbound_id] = [r["id"] for r in await rows(db, "SELECT id FROM inbound_messages")]
        async with db.session() as session:
            assert await inbound_service.process(session, inbound_id) == "processed"
        async with db.session() as session:
            assert await inbound_service.process(session, inbound_id) is None
        assert await totals(db) == after


class TestBadInput:
    async def test_bytes_that_are_no_report_are_kept_as_ignored(
        self, workers: WorkerHarness, db: Database, ada: Mailed
    ) -> None:
        await workers.start()
        async with db.session() as session:
            await inbound_service.accept(
                session, b"\x00\xff garbage" * 10, source="mx", mail_from=None, rcpt_to=[ada.verp]
            )
        await wait_processed(db)
        [inbound] = await rows(db, "SELECT status, error FROM inbound_messages")
        assert inbound["status"] == "ignored"
        assert "nothing to act on" in inbound["error"]
        assert await states(db, ada) == ("sent", "active", "subscribed")

    async def test_a_nul_in_the_remote_servers_words_is_dropped_not_fatal(
        self, start_mx: StartMx, workers: WorkerHarness, db: Database, ada: Mailed
    ) -> None:
        mx = await start_mx()
        assert mx.port is not None
        await workers.start()
        raw = dsn(ada.verp, [("ada@example.com", "failed", "5.1.1", "550 5.1.1 no\x00 such user")])
        await send(mx.port, raw, [ada.verp])
        await wait_processed(db)
        assert await scalar(db, "SELECT status FROM inbound_messages") == "processed"
        diagnostic = await scalar(db, "SELECT diagnostic FROM bounce_records")
        assert diagnostic is not None
        assert "\x00" not in diagnostic
        assert (await states(db, ada))[0] == "bounced"


class TestVolume:
    async def test_a_dsn_with_500_recipients_acts_on_each(
        self, start_mx: StartMx, workers: WorkerHarness, db: Database, ada: Mailed
    ) -> None:
        copies = [f"reader{i}@example.org" for i in range(499)]
        bcc = "[" + ", ".join(f'{{"email": "{c}"}}' for c in copies) + "]"
        await execute(
            db,
            "UPDATE messages SET bcc = CAST(:bcc AS jsonb) WHERE id = :id",
            bcc=bcc,
            id=ada.message.id,
        )
        recipients = [
            (address, "failed", "5.1.1", f"550 5.1.1 <{address}>: no such user")
            for address in ["ada@example.com", *copies]
        ]
        mx = await start_mx()
        assert mx.port is not None
        await workers.start()
        await send(mx.port, dsn(ada.verp, recipients), [ada.verp])
        await wait_processed(db, within=120)
        assert await scalar(db, "SELECT status FROM inbound_messages") == "processed"
        assert await scalar(db, "SELECT count(*) FROM bounce_records") == 500
        assert await scalar(db, "SELECT count(*) FROM suppressions WHERE reason = 'bounced'") == 500
        assert (await states(db, ada))[0] == "bounced"

    @pytest.mark.slow
    @pytest.mark.timeout(480)  # the 2-core machine may be shared; no timing is asserted
    async def test_a_storm_of_1000_bounces_is_recorded_whole(
        self, start_mx: StartMx, workers: WorkerHarness, db: Database, admin_actor: Actor
    ) -> None:
        ws = admin_actor.workspace_id
        ids = [uuid7() for _ in range(1000)]
        async with db.session() as session:
            await session.execute(
                insert(Message),
                [
                    {
                        "id": message_id,
                        "workspace_id": ws,
                        "stream": "marketing",
                        "status": "sent",
                        "from_email": "news@sender.example",
                        "to_email": f"reader{n}@example.net",
                        "to_email_key": f"reader{n}@example.net",
                        "message_id_header": f"<{message_id}@sender.example>",
                    }
                    for n, message_id in enumerate(ids)
                ],
            )
        mx = await start_mx()
        assert mx.port is not None
        port = mx.port

        async def sender(part: list[tuple[int, uuid.UUID]]) -> None:
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as smtp:
                for n, message_id in part:
                    verp = verp_address(ws, message_id)
                    raw = hard_dsn(verp, f"reader{n}@example.net")
                    errors, _ = await smtp.sendmail("", [verp], raw)
                    assert not errors

        numbered = list(enumerate(ids))
        started = time.monotonic()
        await asyncio.gather(*(sender(numbered[i::4]) for i in range(4)))
        print(f"accepted 1000 in {time.monotonic() - started:.1f}s")
        assert await scalar(db, "SELECT count(*) FROM inbound_messages") == 1000
        started = time.monotonic()
        # As many jobs at once as the test database pool serves.
        await workers.start(concurrency=8)
        await wait_processed(db, 1000, within=400)
        print(f"processed 1000 in {time.monotonic() - started:.1f}s")
        assert (
            await scalar(db, "SELECT count(*) FROM inbound_messages WHERE status = 'processed'")
            == 1000
        )
        assert await scalar(db, "SELECT count(*) FROM bounce_records") == 1000
        assert (
            await scalar(db, "SELECT count(*) FROM suppressions WHERE reason = 'bounced'") == 1000
        )
        assert await scalar(db, "SELECT count(*) FROM messages WHERE status = 'bounced'") == 1000
        assert (
            await scalar(db, "SELECT count(*) FROM events WHERE type = 'message.bounced'") == 1000
        )
