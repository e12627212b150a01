"""The delivery loop against real SMTP servers on loopback (aiosmtpd),
through the real SMTP transport: what arrives (VERP return path, DKIM that
two verifiers accept, List-Unsubscribe, tracking), every state transition
with its event, retries, scheduling and the send-time checks."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import text

from sendstream.contacts.suppression import suppress
from sendstream.core.db import Database
from sendstream.core.settings import Settings
from sendstream.delivery.domain_service import domain_service
from sendstream.delivery.verp import parse_verp
from sendstream.delivery.worker_sql import Outcome, write_outcomes
from tests.delivery.messages_helpers import (
    DOMAIN,
    SENDER,
    events_of,
    make_template,
    message_state,
    relay_settings,
    running,
    verified_domain,
)
from tests.delivery.test_dkim import dkimpy_results, perl_results, records
from tests.fixtures.actors import Actor
from tests.fixtures.job_worker import eventually
from tests.fixtures.smtp import SmtpCapture
from tests.fixtures.smtp_servers import PeerFactory


@pytest.fixture
async def sender(db: Database, admin_actor: Actor) -> Actor:
    await verified_domain(db, admin_actor.workspace_id)
    return admin_actor


async def queue(client: httpx.AsyncClient, actor: Actor, **fields: Any) -> list[str]:
    body = {"from": SENDER, "to": "ada@example.com", "subject": "Hi", "text": "Hello", **fields}
    response = await client.post("/v1/messages", headers=actor.headers, json=body)
    assert response.status_code == 202, response.text
    return [m["id"] for m in response.json()["messages"]]


async def status_is(db: Database, message_id: str, *wanted: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        state = await message_state(db, message_id)
        return state if state["status"] in wanted else None

    found = await eventually(check, within=30)
    assert found is not None
    return found


async def dkim_dns(db: Database, actor: Actor) -> dict[str, str]:
    async with db.session() as session:
        keys = await domain_service.signing_keys(session, actor.workspace_id, DOMAIN)
    return records(*keys)


class TestSent:
    async def test_message_arrives_signed_with_a_verp_return_path_and_is_recorded_sent(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_server: SmtpCapture,
    ) -> None:
        async with running(relay_settings(settings, smtp_server), db):
            [message_id] = await queue(client, sender, cc=["boss@example.com"])
            state = await status_is(db, message_id, "sent")
            [mail] = await smtp_server.wait_for(1)

        assert parse_verp(mail.sender) == (sender.workspace_id, _uuid(message_id))
        assert set(mail.recipients) == {"ada@example.com", "boss@example.com"}
        assert mail.message["Subject"] == "Hi"
        assert mail.message["Cc"] == "boss@example.com"
        assert mail.text.strip() == "Hello"
        dns = await dkim_dns(db, sender)
        assert dkimpy_results(mail.raw, dns) == [True]
        assert [r[0] for r in perl_results(mail.raw, dns)] == ["pass"]

        assert state["attempts"] == 1
        assert state["last_status_code"] == 250
        assert state["relay"] == f"{smtp_server.host}:{smtp_server.port}"
        assert state["sent_at"] is not None
        assert state["lease_until"] is None
        events = await events_of(db, message_id)
        assert [t for t, _ in events] == ["message.queued", "message.sent"]
        assert events[1][1]["smtp_code"] == 250
        assert events[1][1]["size_bytes"] == len(mail.raw)

        read = (await client.get(f"/v1/messages/{message_id}", headers=sender.headers)).json()
        assert read["status"] == "sent"
        assert [e["type"] for e in read["events"]] == ["message.queued", "message.sent"]

    async def test_template_is_rendered_for_each_recipient(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_server: SmtpCapture,
    ) -> None:
        await make_template(
            db,
            sender.workspace_id,
            subject="Hi {{ name }}",
            html="<p>Hello <b>{{ name }}</b>, order {{ order }}</p>",
            strict=True,
        )
        async with running(relay_settings(settings, smtp_server), db):
            await queue(
                client,
                sender,
                subject=None,
                text=None,
                template="welcome",
                data={"order": 7},
                to=[
                    {"email": "ada@example.com", "data": {"name": "Ada"}},
                    {"email": "bob@example.com", "data": {"name": "Bob", "order": 8}},
                ],
            )
            mails = await smtp_server.wait_for(2)
        by_to = {m.recipients[0]: m for m in mails}
        assert by_to["ada@example.com"].message["Subject"] == "Hi Ada"
        assert "order 7" in by_to["ada@example.com"].text
        assert by_to["bob@example.com"].message["Subject"] == "Hi Bob"
        assert "order 8" in by_to["bob@example.com"].text
        html = by_to["bob@example.com"].message.get_body(preferencelist=("html",))
        assert html is not None
        assert "<b>Bob</b>" in html.get_content()

    async def test_marketing_mail_carries_signed_one_click_unsubscribe_and_tracking(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_server: SmtpCapture,
    ) -> None:
        html = '<p>See <a href="https://shop.example.com/sale">the sale</a></p>'
        async with running(relay_settings(settings, smtp_server), db):
            await queue(client, sender, stream="marketing", text=None, html=html)
            [mail] = await smtp_server.wait_for(1)
        unsubscribe = mail.message["List-Unsubscribe"]
        assert unsubscribe.startswith("<http")
        assert "/u/" in unsubscribe
        assert "mailto:" in unsubscribe
        assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        signature = mail.message["DKIM-Signature"].replace(" ", "").replace("\n", "")
        signed = signature.split("h=")[1].split(";")[0].split(":")
        assert {"list-unsubscribe", "list-unsubscribe-post"} <= set(signed)
        body = mail.message.get_body(preferencelist=("html",))
        assert body is not None
        content = body.get_content()
        assert "https://shop.example.com/sale" not in content
        assert "/t/c/" in content
        assert "/t/o/" in content
        dns = await dkim_dns(db, sender)
        assert dkimpy_results(mail.raw, dns) == [True]
        assert [r[0] for r in perl_results(mail.raw, dns)] == ["pass"]

    async def test_attachments_are_sent(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_server: SmtpCapture,
    ) -> None:
        pdf = b"%PDF-1.4 " + bytes(range(256)) * 20
        # Queued before the loop runs, so one claim takes all three: only the
        # message with an attachment gets one.
        await queue(client, sender, to="bob@example.com")
        await queue(
            client,
            sender,
            attachments=[
                {
                    "content": base64.b64encode(pdf).decode(),
                    "filename": "Rechnung März.pdf",
                    "content_type": "application/pdf",
                }
            ],
        )
        await queue(client, sender, to="carol@example.com")
        async with running(relay_settings(settings, smtp_server), db):
            mails = await smtp_server.wait_for(3)
        by_rcpt = {mail.recipients[0]: mail for mail in mails}
        [part] = list(by_rcpt["ada@example.com"].message.iter_attachments())
        assert part.get_filename() == "Rechnung März.pdf"
        assert part.get_content() == pdf
        assert dkimpy_results(by_rcpt["ada@example.com"].raw, await dkim_dns(db, sender)) == [True]
        for plain in ("bob@example.com", "carol@example.com"):
            assert list(by_rcpt[plain].message.iter_attachments()) == []

    async def test_a_new_message_wakes_an_idle_loop_without_waiting_for_the_poll(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_server: SmtpCapture,
    ) -> None:
        # With a poll of 10 minutes, only the NOTIFY can bring this message out.
        async with running(relay_settings(settings, smtp_server, poll_interval=600.0), db):
            await asyncio.sleep(0.3)  # the loop is idle now
            [message_id] = await queue(client, sender)
            await status_is(db, message_id, "sent")


class TestSchedule:
    async def test_a_message_is_not_sent_before_send_at_and_is_sent_after(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_server: SmtpCapture,
    ) -> None:
        send_at = datetime.now(UTC) + timedelta(seconds=2)
        async with running(relay_settings(settings, smtp_server), db):
            [later] = await queue(client, sender, send_at=send_at.isoformat())
            [now] = await queue(client, sender, to="bob@example.com")
            await status_is(db, now, "sent")
            assert (await message_state(db, later))["status"] == "queued"
            state = await status_is(db, later, "sent")
        assert state["sent_at"] >= send_at
        assert len(smtp_server.messages) == 2


class TestDeferAndFail:
    async def test_4xx_defers_with_backoff_then_a_retry_sends(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_peer: PeerFactory,
    ) -> None:
        peer = smtp_peer(rcpt_replies={"ada@example.com": "451 4.7.1 greylisted, come back"})
        relay = settings.model_copy(update={"smtp_url": peer.url()})
        async with running(relay, db):
            [message_id] = await queue(client, sender)
            state = await status_is(db, message_id, "deferred")
            before = datetime.now(UTC)
            assert state["attempts"] == 1
            assert state["last_status_code"] == 451
            assert "greylisted" in state["last_response"]
            # First retry about a minute later (+-20% jitter).
            delay = (state["next_attempt_at"] - before).total_seconds()
            assert 40 < delay < 75, delay
            [(_, deferred)] = [
                e for e in await events_of(db, message_id) if e[0] == "message.deferred"
            ]
            assert deferred["smtp_code"] == 451
            assert deferred["enhanced"] == "4.7.1"

            # The receiver takes it now; the retry is due.
            peer.handler.rcpt_replies = {}
            await _make_due(db, message_id)
            state = await status_is(db, message_id, "sent")
        assert state["attempts"] == 2
        assert [t for t, _ in await events_of(db, message_id)] == [
            "message.queued",
            "message.deferred",
            "message.sent",
        ]

    async def test_5xx_fails_at_once(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_peer: PeerFactory,
    ) -> None:
        peer = smtp_peer(rcpt_replies={"ada@example.com": "550 5.1.1 no such user"})
        async with running(settings.model_copy(update={"smtp_url": peer.url()}), db):
            [message_id] = await queue(client, sender)
            state = await status_is(db, message_id, "failed")
        assert state["attempts"] == 1
        assert state["last_status_code"] == 550
        events = await events_of(db, message_id)
        assert [t for t, _ in events] == ["message.queued", "message.failed"]
        assert events[1][1]["reason"] == "smtp"
        assert events[1][1]["enhanced"] == "5.1.1"

    async def test_a_refused_connection_defers(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        closed_port: int,
    ) -> None:
        relay = settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{closed_port}"})
        async with running(relay, db):
            [message_id] = await queue(client, sender)
            state = await status_is(db, message_id, "deferred")
        assert state["last_status_code"] is None

    async def test_deferral_past_the_retry_window_fails(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_peer: PeerFactory,
    ) -> None:
        peer = smtp_peer(rcpt_replies={"ada@example.com": "452 4.2.2 mailbox full"})
        async with running(settings.model_copy(update={"smtp_url": peer.url()}), db):
            [message_id] = await queue(client, sender, send_at=_hours_ago(71.99))
            state = await status_is(db, message_id, "failed")
        assert "gave up after 1 attempts in 72 h" in state["last_response"]
        events = await events_of(db, message_id)
        assert events[-1][0] == "message.failed"
        assert events[-1][1]["reason"] == "retries_exhausted"

    async def test_a_message_that_cannot_be_built_fails_alone(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_server: SmtpCapture,
    ) -> None:
        await make_template(db, sender.workspace_id, text="Hello {{ name }}", strict=True)
        [broken, fine] = await queue(
            client,
            sender,
            subject=None,
            text=None,
            template="welcome",
            to=[
                {"email": "ada@example.com", "data": {"name": "Ada"}},
                {"email": "bob@example.com", "data": {"name": "Bob"}},
            ],
        )
        # The data the strict template needs is gone by send time.
        async with db.engine.begin() as conn:
            await conn.execute(
                text("UPDATE messages SET data = '{}' WHERE id = :id"), {"id": broken}
            )
        async with running(relay_settings(settings, smtp_server), db):
            failed = await status_is(db, broken, "failed")
            await status_is(db, fine, "sent")
        assert failed["last_response"].startswith("template_undefined_variable: ")
        assert failed["last_status_code"] is None
        [mail] = smtp_server.messages
        assert mail.recipients == ("bob@example.com",)
        [(_, event)] = [e for e in await events_of(db, broken) if e[0] == "message.failed"]
        assert (event["reason"], event["code"]) == ("compose", "template_undefined_variable")

    async def test_a_sending_domain_deleted_after_queueing_fails_its_messages(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_server: SmtpCapture,
    ) -> None:
        [message_id] = await queue(client, sender)
        async with db.engine.begin() as conn:
            await conn.execute(text("DELETE FROM sending_domains"))
        async with running(relay_settings(settings, smtp_server), db):
            state = await status_is(db, message_id, "failed")
        assert state["last_response"].startswith("unknown_sending_domain: ")
        assert smtp_server.messages == []


class TestSendTimeSuppression:
    async def test_a_recipient_suppressed_after_queueing_is_not_mailed(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_server: SmtpCapture,
    ) -> None:
        [message_id] = await queue(client, sender, to="ada@example.com")
        [other] = await queue(client, sender, to="bob@example.com", bcc=["eve@example.com"])
        async with db.session() as session:
            await suppress(session, sender.workspace_id, "ada@example.com", "complained")
            await suppress(session, sender.workspace_id, "eve@example.com", "bounced")
        async with running(relay_settings(settings, smtp_server), db):
            state = await status_is(db, message_id, "failed")
            await status_is(db, other, "sent")
        assert state["last_response"].startswith("recipient_suppressed: ")
        [mail] = smtp_server.messages
        # The suppressed bcc is dropped; the message itself goes out.
        assert mail.recipients == ("bob@example.com",)


class TestLeases:
    async def test_a_dead_workers_message_is_taken_over_when_its_lease_runs_out(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_server: SmtpCapture,
    ) -> None:
        [message_id] = await queue(client, sender)
        async with db.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE messages SET status = 'sending', attempts = 1, "
                    "lease_until = now() - interval '1 second' WHERE id = :id"
                ),
                {"id": message_id},
            )
        async with running(relay_settings(settings, smtp_server), db):
            state = await status_is(db, message_id, "sent")
        assert state["attempts"] == 2

    async def test_a_stale_outcome_never_overwrites_a_newer_attempt(
        self, client: httpx.AsyncClient, sender: Actor, db: Database
    ) -> None:
        [message_id] = await queue(client, sender)
        async with db.engine.begin() as conn:
            await conn.execute(
                text("UPDATE messages SET status = 'sending', attempts = 2 WHERE id = :id"),
                {"id": message_id},
            )
        stale = Outcome(
            workspace_id=sender.workspace_id,
            message_id=_uuid(message_id),
            attempt=1,
            status="sent",
            code=250,
            response="250 ok",
            event={"message_id": message_id},
        )
        async with await psycopg.AsyncConnection.connect(db.libpq_url, autocommit=True) as conn:
            async with conn.transaction():
                written = await write_outcomes(conn, sender.workspace_id, [stale])
        assert written == {}
        assert (await message_state(db, message_id))["status"] == "sending"
        assert [t for t, _ in await events_of(db, message_id)] == ["message.queued"]


class TestShutdown:
    async def test_stop_lets_smtp_transactions_in_flight_finish(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_peer: PeerFactory,
    ) -> None:
        peer = smtp_peer(data_delay=1.0)
        async with running(settings.model_copy(update={"smtp_url": peer.url()}), db):
            [message_id] = await queue(client, sender)

            async def in_data() -> bool:
                return peer.handler.in_flight > 0

            await eventually(in_data)
        # `running` stopped the loop while the relay held the DATA reply.
        state = await message_state(db, message_id)
        assert state["status"] == "sent"
        assert len(peer.handler.messages) == 1


async def _make_due(db: Database, message_id: str) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE messages SET next_attempt_at = now() WHERE id = :id"), {"id": message_id}
        )
        await conn.execute(text("NOTIFY sendstream_messages"))


def _hours_ago(hours: float) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).isoformat()


def _uuid(value: str) -> uuid.UUID:
    return uuid.UUID(value)
