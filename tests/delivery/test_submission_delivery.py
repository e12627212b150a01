"""A message submitted over SMTP goes the whole way: queued by the relay,
then rendered, DKIM-signed and delivered by the delivery loop to a real SMTP
server on loopback, like an API send."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from sendstream.core.db import Database
from sendstream.core.settings import Settings
from sendstream.delivery.submission import SubmissionServer
from sendstream.delivery.verp import parse_verp
from tests.delivery.messages_helpers import relay_settings, running, verified_domain
from tests.delivery.submission_helpers import (
    connect,
    create_credential,
    message,
    queued_ids,
    relay_fixture,  # noqa: F401  (fixture `relay`)
    start_relay_fixture,  # noqa: F401  (fixture `start_relay`)
    submit,
)
from tests.delivery.test_delivery_worker import dkim_dns, status_is
from tests.delivery.test_dkim import dkimpy_results, perl_results
from tests.fixtures.actors import Actor
from tests.fixtures.smtp import SmtpCapture


@pytest.fixture
async def sender(db: Database, admin_actor: Actor) -> Actor:
    await verified_domain(db, admin_actor.workspace_id)
    return admin_actor


class TestSubmittedMessageIsDelivered:
    async def test_arrives_signed_with_verp_and_the_submitted_content(
        self,
        relay: SubmissionServer,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_server: SmtpCapture,
    ) -> None:
        login: dict[str, Any] = await create_credential(client, sender)
        mail = message(
            to="Ada <ada@example.com>",
            Cc="boss@example.com",
            subject="Your receipt ✓",
            text="Thanks for your order.",
            html="<p>Thanks for your <b>order</b>.</p>",
            headers={"X-Campaign": "receipts", "X-Sendstream-Tags": "receipt"},
        )
        smtp = await connect(relay, login=login)
        code, reply = await submit(smtp, mail, ["ada@example.com", "boss@example.com"])
        await smtp.quit()
        assert code == 250
        [message_id] = queued_ids(reply)

        async with running(relay_settings(settings, smtp_server), db):
            await status_is(db, str(message_id), "sent")
            [delivered] = await smtp_server.wait_for(1)

        assert parse_verp(delivered.sender) == (sender.workspace_id, uuid.UUID(str(message_id)))
        assert set(delivered.recipients) == {"ada@example.com", "boss@example.com"}
        assert delivered.message["Subject"] == "Your receipt ✓"
        assert delivered.message["Cc"] == "boss@example.com"
        assert delivered.message["X-Campaign"] == "receipts"
        assert delivered.message["X-Sendstream-Tags"] is None
        assert delivered.text.strip() == "Thanks for your order."
        html = delivered.message.get_body(preferencelist=("html",))
        assert html is not None
        assert "<b>order</b>" in html.get_content()
        dns = await dkim_dns(db, sender)
        assert dkimpy_results(delivered.raw, dns) == [True]
        assert [r[0] for r in perl_results(delivered.raw, dns)] == ["pass"]

    async def test_marketing_mail_gets_one_click_unsubscribe(
        self,
        relay: SubmissionServer,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_server: SmtpCapture,
    ) -> None:
        login: dict[str, Any] = await create_credential(client, sender)
        mail = message(
            html='<p>See <a href="https://shop.example.com/sale">the sale</a></p>',
            headers={"X-Sendstream-Stream": "marketing"},
        )
        smtp = await connect(relay, login=login)
        code, reply = await submit(smtp, mail)
        await smtp.quit()
        assert code == 250
        async with running(relay_settings(settings, smtp_server), db):
            await status_is(db, str(queued_ids(reply)[0]), "sent")
            [delivered] = await smtp_server.wait_for(1)
        assert delivered.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        html = delivered.message.get_body(preferencelist=("html",))
        assert html is not None
        assert "https://shop.example.com/sale" not in html.get_content()
        assert dkimpy_results(delivered.raw, await dkim_dns(db, sender)) == [True]
