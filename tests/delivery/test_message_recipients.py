"""What a send knows about its recipients, end to end through the send API
and the delivery loop to an SMTP server on loopback (aiosmtpd): messages
linked to the contact their `to` address matches (templates render with
that contact), list-level unsubscribes refused at queue time and failed at
send time, copies (cc, bcc) a deferred attempt delivered left out of the
retry, and Reply-To with a display name."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text

from sendstream.core.db import Database
from sendstream.core.settings import Settings
from tests.delivery.messages_helpers import (
    SENDER,
    events_of,
    make_template,
    message_state,
    relay_settings,
    running,
    verified_domain,
)
from tests.fixtures.actors import Actor
from tests.fixtures.job_worker import eventually
from tests.fixtures.smtp import SmtpCapture
from tests.fixtures.smtp_servers import PeerFactory


@pytest.fixture
async def sender(db: Database, admin_actor: Actor) -> Actor:
    await verified_domain(db, admin_actor.workspace_id)
    return admin_actor


def inline(**fields: Any) -> dict[str, Any]:
    return {"from": SENDER, "to": "ada@example.com", "subject": "Hi", "text": "Hello", **fields}


async def send(client: httpx.AsyncClient, actor: Actor, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/v1/messages", headers=actor.headers, json=body)


async def queue(client: httpx.AsyncClient, actor: Actor, **fields: Any) -> list[str]:
    response = await send(client, actor, inline(**fields))
    assert response.status_code == 202, response.text
    return [m["id"] for m in response.json()["messages"]]


async def contact(client: httpx.AsyncClient, actor: Actor, **fields: Any) -> str:
    made = await client.post("/v1/contacts", headers=actor.headers, json=fields)
    assert made.status_code == 201, made.text
    found: str = made.json()["id"]
    return found


async def new_list(client: httpx.AsyncClient, actor: Actor, name: str = "News") -> str:
    made = await client.post("/v1/lists", headers=actor.headers, json={"name": name})
    assert made.status_code == 201, made.text
    found: str = made.json()["id"]
    return found


async def subscription(
    client: httpx.AsyncClient, actor: Actor, contact_id: str, list_id: str, status: str
) -> None:
    response = await client.put(
        f"/v1/contacts/{contact_id}/subscriptions/{list_id}",
        headers=actor.headers,
        json={"status": status},
    )
    assert response.status_code == 200, response.text


async def status_is(db: Database, message_id: str, *wanted: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        state = await message_state(db, message_id)
        return state if state["status"] in wanted else None

    found = await eventually(check, within=30)
    assert found is not None
    return found


async def make_due(db: Database, message_id: str) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE messages SET next_attempt_at = now() WHERE id = :id"), {"id": message_id}
        )
        await conn.execute(text("NOTIFY sendstream_messages"))


class TestContactLink:
    async def test_a_message_to_a_contact_is_linked_and_renders_the_contact(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_server: SmtpCapture,
    ) -> None:
        contact_id = await contact(
            client, sender, email="Ada@Example.com", first_name="Ada", last_name="Lovelace"
        )
        await make_template(
            db,
            sender.workspace_id,
            subject="Hello {{ contact.first_name }}",
            text="Dear {{ contact.first_name }} {{ contact.last_name }} ({{ contact.email }})",
            strict=True,
        )
        async with running(relay_settings(settings, smtp_server), db):
            [message_id] = await queue(
                client, sender, to="ada@example.com", subject=None, text=None, template="welcome"
            )
            await status_is(db, message_id, "sent")
            [mail] = await smtp_server.wait_for(1)

        assert mail.message["Subject"] == "Hello Ada"
        assert mail.text.strip() == "Dear Ada Lovelace (Ada@Example.com)"
        read = (await client.get(f"/v1/messages/{message_id}", headers=sender.headers)).json()
        assert read["contact_id"] == contact_id
        events = await events_of(db, message_id)
        assert [t for t, _ in events] == ["message.queued", "message.sent"]
        assert all(data["contact_id"] == contact_id for _, data in events)

    async def test_a_message_to_an_address_that_is_no_contact_has_none(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_server: SmtpCapture,
    ) -> None:
        await contact(client, sender, email="bob@example.com", first_name="Bob")
        await make_template(
            db, sender.workspace_id, subject="Hi {{ contact.first_name }}!", text="Hello"
        )
        async with running(relay_settings(settings, smtp_server), db):
            [message_id] = await queue(client, sender, subject=None, text=None, template="welcome")
            await status_is(db, message_id, "sent")
            [mail] = await smtp_server.wait_for(1)
        assert mail.message["Subject"] == "Hi !"
        read = (await client.get(f"/v1/messages/{message_id}", headers=sender.headers)).json()
        assert read["contact_id"] is None
        assert [d["contact_id"] for _, d in await events_of(db, message_id)] == [None, None]

    async def test_a_strict_template_using_the_contact_is_accepted_for_a_contact_only(
        self, client: httpx.AsyncClient, sender: Actor, db: Database
    ) -> None:
        await contact(client, sender, email="ada@example.com", first_name="Ada")
        await make_template(
            db, sender.workspace_id, subject="Hi {{ contact.first_name }}", text="x", strict=True
        )
        body = inline(subject=None, text=None, template="welcome")
        assert (await send(client, sender, body)).status_code == 202
        refused = await send(client, sender, {**body, "to": "nobody@example.com"})
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "template_undefined_variable"

    async def test_the_contact_as_it_is_at_send_time_is_rendered(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_server: SmtpCapture,
    ) -> None:
        contact_id = await contact(
            client, sender, email="ada@example.com", first_name="Ada", attributes={}
        )
        await make_template(
            db, sender.workspace_id, subject="Hi {{ contact.first_name }}", text="Hello"
        )
        [message_id] = await queue(client, sender, subject=None, text=None, template="welcome")
        changed = await client.patch(
            f"/v1/contacts/{contact_id}", headers=sender.headers, json={"first_name": "Augusta"}
        )
        assert changed.status_code == 200, changed.text
        async with running(relay_settings(settings, smtp_server), db):
            await status_is(db, message_id, "sent")
            [mail] = await smtp_server.wait_for(1)
        assert mail.message["Subject"] == "Hi Augusta"


class TestListUnsubscribe:
    async def test_marketing_to_a_contact_unsubscribed_from_the_list_is_refused(
        self, client: httpx.AsyncClient, sender: Actor, db: Database
    ) -> None:
        contact_id = await contact(client, sender, email="ada@example.com")
        news, offers = (
            await new_list(client, sender, "News"),
            await new_list(client, sender, "Offers"),
        )
        await subscription(client, sender, contact_id, news, "subscribed")
        await subscription(client, sender, contact_id, news, "unsubscribed")
        await subscription(client, sender, contact_id, offers, "subscribed")

        refused = await send(client, sender, inline(stream="marketing", list_id=news))
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "recipient_unsubscribed_from_list"
        assert "unsubscribed" in refused.json()["detail"]
        async with db.engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM messages")) == 0

        # Another list, a transactional message, and a batch's other items still go.
        assert (
            await send(client, sender, inline(stream="marketing", list_id=offers))
        ).status_code == 202
        assert (await send(client, sender, inline(list_id=news))).status_code == 202
        batch = await client.post(
            "/v1/messages/batch",
            headers=sender.headers,
            json={
                "messages": [
                    inline(stream="marketing", list_id=news),
                    inline(stream="marketing", list_id=news, to="bob@example.com"),
                ]
            },
        )
        assert batch.status_code == 202, batch.text
        results = batch.json()["results"]
        assert [r["status"] for r in results] == ["rejected", "queued"]
        assert results[0]["code"] == "recipient_unsubscribed_from_list"

    async def test_a_list_unsubscribe_after_queueing_fails_the_message_without_smtp(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_server: SmtpCapture,
    ) -> None:
        ada = await contact(client, sender, email="ada@example.com")
        news = await new_list(client, sender)
        await subscription(client, sender, ada, news, "subscribed")
        [message_id] = await queue(client, sender, stream="marketing", list_id=news)
        [other] = await queue(
            client, sender, stream="marketing", list_id=news, to="bob@example.com"
        )
        await subscription(client, sender, ada, news, "unsubscribed")

        async with running(relay_settings(settings, smtp_server), db):
            state = await status_is(db, message_id, "failed")
            await status_is(db, other, "sent")
        assert state["last_response"].startswith("recipient_unsubscribed_from_list: ")
        assert [m.recipients for m in smtp_server.messages] == [("bob@example.com",)]
        failed = dict(await events_of(db, message_id))["message.failed"]
        assert failed["code"] == "recipient_unsubscribed_from_list"
        assert failed["contact_id"] == ada


class TestCopiesOnRetry:
    async def test_copies_accepted_on_a_deferred_attempt_are_not_sent_again(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_peer: PeerFactory,
    ) -> None:
        peer = smtp_peer(
            rcpt_replies={
                "ada@example.com": "451 4.7.1 greylisted, come back",
                "eve@example.com": "452 4.2.2 mailbox full",
            }
        )
        async with running(settings.model_copy(update={"smtp_url": peer.url()}), db):
            [message_id] = await queue(
                client,
                sender,
                cc=["Boss <boss@example.com>"],
                bcc=["eve@example.com", "x@example.com"],
            )
            await status_is(db, message_id, "deferred")
            [first] = await peer.handler.wait_for(1)
            assert set(first.recipients) == {"boss@example.com", "x@example.com"}
            deferred = dict(await events_of(db, message_id))["message.deferred"]
            assert sorted(deferred["copies_accepted"]) == ["boss@example.com", "x@example.com"]

            # The relay takes everyone now: only `to` and the copy deferred last time get it.
            peer.handler.rcpt_replies = {}
            await make_due(db, message_id)
            state = await status_is(db, message_id, "sent")
            [_, second] = await peer.handler.wait_for(2)
        assert state["attempts"] == 2
        assert set(second.recipients) == {"ada@example.com", "eve@example.com"}
        # Still the same message: the Cc header names the copy it skipped.
        assert second.message["Cc"] == "Boss <boss@example.com>"
        assert second.message["Message-ID"] == first.message["Message-ID"]

    async def test_a_deferral_with_no_copy_accepted_retries_everyone(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_peer: PeerFactory,
    ) -> None:
        peer = smtp_peer(data_reply="451 4.3.0 try again later")
        async with running(settings.model_copy(update={"smtp_url": peer.url()}), db):
            [message_id] = await queue(client, sender, cc=["boss@example.com"])
            await status_is(db, message_id, "deferred")
            deferred = dict(await events_of(db, message_id))["message.deferred"]
            assert "copies_accepted" not in deferred
            peer.handler.data_reply = None
            await make_due(db, message_id)
            await status_is(db, message_id, "sent")
            mails = await peer.handler.wait_for(1)
        assert set(mails[-1].recipients) == {"ada@example.com", "boss@example.com"}


class TestReplyTo:
    @pytest.mark.parametrize(
        ("given", "stored"),
        [
            ("Ada Lovelace <help@acme.example>", "Ada Lovelace <help@acme.example>"),
            (
                {"email": "help@acme.example", "name": "Zoë, Support"},
                '"Zoë, Support" <help@acme.example>',
            ),
            ({"email": "help@acme.example"}, "help@acme.example"),
        ],
        ids=["text", "object with a name to quote", "object without a name"],
    )
    async def test_reply_to_keeps_its_display_name(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        given: str | dict[str, str],
        stored: str,
    ) -> None:
        [message_id] = await queue(client, sender, reply_to=given)
        read = (await client.get(f"/v1/messages/{message_id}", headers=sender.headers)).json()
        assert read["reply_to"] == stored

    async def test_a_reply_to_name_too_long_to_store_is_refused(
        self, client: httpx.AsyncClient, sender: Actor
    ) -> None:
        long_address = "a" * 60 + "@" + "b" * 60 + ".example"
        body = inline(reply_to={"email": long_address, "name": "N" * 200})
        refused = await send(client, sender, body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "invalid_address"

    async def test_the_reply_to_header_carries_the_encoded_display_name(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        settings: Settings,
        smtp_server: SmtpCapture,
    ) -> None:
        async with running(relay_settings(settings, smtp_server), db):
            [message_id] = await queue(
                client, sender, reply_to={"email": "help@acme.example", "name": "Zoë Support"}
            )
            await status_is(db, message_id, "sent")
            [mail] = await smtp_server.wait_for(1)
        assert b"reply-to: =?utf-8?" in mail.raw.lower()
        reply_to = mail.message["Reply-To"]
        assert reply_to.addresses[0].display_name == "Zoë Support"
        assert reply_to.addresses[0].addr_spec == "help@acme.example"
