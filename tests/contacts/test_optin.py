"""Double opt-in end to end: subscribing to a double opt-in list queues the
confirmation job, a worker mails the link through a real SMTP server on
loopback, the link's page changes nothing, and its button subscribes. Tokens
are signed, expiring and stateless."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy import text

from sendstream.contacts.errors import ConfirmationLinkExpired, ConfirmationLinkInvalid
from sendstream.contacts.optin import make_token, read_token
from sendstream.core.db import Database
from sendstream.core.settings import SecuritySettings, Settings
from tests.contacts.helpers import count, create_contact, events_of
from tests.contacts.test_lists import create_list, put_subscription
from tests.fixtures.actors import Actor
from tests.fixtures.job_worker import WorkerHarness, eventually
from tests.fixtures.smtp import SmtpCapture

LINK = re.compile(r"http://testserver(/v1/confirm/[A-Za-z0-9_\-.]+)")
HTML = {"Accept": "text/html,application/xhtml+xml"}


@pytest.fixture
async def worker_harness(settings: Settings, db: Database) -> AsyncIterator[WorkerHarness]:
    harness = WorkerHarness(settings, db)
    yield harness
    await harness.stop_all()


async def subscription_status(db: Database, contact_id: str, list_id: str) -> str | None:
    async with db.engine.connect() as conn:
        value = await conn.scalar(
            text("SELECT status FROM subscriptions WHERE contact_id = :c AND list_id = :l"),
            {"c": contact_id, "l": list_id},
        )
    return str(value) if value is not None else None


async def pending(
    client: httpx.AsyncClient, actor: Actor, email: str = "ada@example.com"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A contact with an unconfirmed subscription to a double opt-in list."""
    made = await create_list(client, actor, name="Monthly digest", opt_in="double")
    contact = await create_contact(client, actor, email=email)
    response = await put_subscription(client, actor, contact["id"], made["id"], status="subscribed")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "unconfirmed"
    return contact, made


def token_for(actor: Actor, contact: dict[str, Any], made: dict[str, Any], **delta: float) -> str:
    expires = datetime.now(UTC) + (timedelta(**delta) if delta else timedelta(hours=1))
    return make_token(actor.workspace_id, uuid.UUID(contact["id"]), uuid.UUID(made["id"]), expires)


class TestConfirmationToken:
    def test_a_token_reads_back_what_it_carries(self, settings: Settings) -> None:
        ws, contact, list_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        expires = datetime(2099, 1, 1, tzinfo=UTC)
        claim = read_token(make_token(ws, contact, list_id, expires))
        assert (claim.workspace_id, claim.contact_id, claim.list_id) == (ws, contact, list_id)
        assert claim.expires_at == expires

    def test_a_changed_character_breaks_the_signature(self, settings: Settings) -> None:
        token = make_token(
            uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), datetime(2099, 1, 1, tzinfo=UTC)
        )
        body, _, signature = token.partition(".")
        flipped = body[:5] + ("A" if body[5] != "A" else "B") + body[6:]
        with pytest.raises(ConfirmationLinkInvalid, match="signature"):
            read_token(f"{flipped}.{signature}")

    def test_a_token_signed_under_another_master_key_is_refused(self, settings: Settings) -> None:
        other_key = SecretStr(base64.b64encode(b"other-master-key-32-bytes-long-!").decode())
        other = settings.model_copy(update={"security": SecuritySettings(master_key=other_key)})
        token = make_token(
            uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), datetime(2099, 1, 1, tzinfo=UTC), other
        )
        with pytest.raises(ConfirmationLinkInvalid):
            read_token(token)

    def test_an_expired_token_says_when_it_expired(self, settings: Settings) -> None:
        expired = datetime(2020, 1, 1, tzinfo=UTC)
        token = make_token(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), expired)
        with pytest.raises(ConfirmationLinkExpired, match="2020-01-01"):
            read_token(token)

    @hypothesis_settings(max_examples=300, deadline=None)
    @given(garbage=st.text(max_size=200))
    def test_any_other_text_is_refused_cleanly(self, settings: Settings, garbage: str) -> None:
        with pytest.raises(ConfirmationLinkInvalid):
            read_token(garbage)


class TestDoubleOptIn:
    async def test_mail_link_page_and_button_subscribe_end_to_end(
        self,
        client: httpx.AsyncClient,
        db: Database,
        admin_actor: Actor,
        smtp_relay: SmtpCapture,
        worker_harness: WorkerHarness,
    ) -> None:
        contact, made = await pending(client, admin_actor, email="Ada.Lovelace@example.com")
        await worker_harness.start()

        (mail,) = await smtp_relay.wait_for(1)
        assert mail.recipients == ("Ada.Lovelace@example.com",)
        assert mail.message["To"] == "Ada.Lovelace@example.com"
        assert mail.message["Subject"] == "Confirm your subscription to Monthly digest"
        assert mail.message["From"] == "Sendstream <no-reply@sendstream.test>"
        found = LINK.search(mail.text)
        assert found, mail.text
        path = found.group(1)

        # Opening the link (what a mail scanner does too) changes nothing.
        records = await count(db, "consent_records")
        page = await client.get(path, headers=HTML)
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-store"
        assert '<form method="post"' in page.text
        assert "Monthly digest" in page.text
        assert await subscription_status(db, contact["id"], made["id"]) == "unconfirmed"
        assert await count(db, "consent_records") == records

        confirmed = await client.post(path, headers={**HTML, "User-Agent": "MailReader/2.0"})
        assert confirmed.status_code == 200, confirmed.text
        assert "Subscription confirmed" in confirmed.text
        assert await subscription_status(db, contact["id"], made["id"]) == "subscribed"
        async with db.engine.connect() as conn:
            record = (
                await conn.execute(
                    text(
                        "SELECT previous_status, status, source, host(ip), user_agent, "
                        "consent_text FROM consent_records ORDER BY id DESC LIMIT 1"
                    )
                )
            ).one()
        assert tuple(record) == (
            "unconfirmed",
            "subscribed",
            "confirmation",
            "127.0.0.1",
            "MailReader/2.0",
            "Yes, subscribe me to Monthly digest.",
        )
        statuses = [
            (e["data"]["status"], e["data"]["source"])
            for e in await events_of(db, "contact.subscribed")
        ]
        assert statuses == [("unconfirmed", "api"), ("subscribed", "confirmation")]

    async def test_following_the_link_again_is_harmless(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        contact, made = await pending(client, admin_actor)
        path = f"/v1/confirm/{token_for(admin_actor, contact, made)}"
        first = await client.post(path)
        assert first.status_code == 200, first.text
        assert first.json() == {
            "list_id": made["id"],
            "list_name": "Monthly digest",
            "status": "subscribed",
            "changed": True,
        }
        records = await count(db, "consent_records")
        second = await client.post(path)
        assert second.json()["changed"] is False
        assert await count(db, "consent_records") == records
        page = await client.get(path, headers=HTML)
        assert "Already confirmed" in page.text

    async def test_an_old_link_cannot_undo_an_unsubscribe(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        contact, made = await pending(client, admin_actor)
        path = f"/v1/confirm/{token_for(admin_actor, contact, made)}"
        await put_subscription(
            client, admin_actor, contact["id"], made["id"], status="unsubscribed"
        )
        response = await client.post(path)
        assert response.status_code == 409
        assert response.json()["code"] == "confirmation_not_pending"
        page = await client.get(path, headers=HTML)
        assert "cannot be used" in page.text
        assert "<form" not in page.text
        assert await subscription_status(db, contact["id"], made["id"]) == "unsubscribed"

    async def test_expired_link_is_gone_with_a_clear_problem_and_page(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        contact, made = await pending(client, admin_actor)
        path = f"/v1/confirm/{token_for(admin_actor, contact, made, seconds=-5)}"
        problem = await client.post(path)
        assert problem.status_code == 410
        assert problem.headers["content-type"] == "application/problem+json"
        assert problem.json()["code"] == "confirmation_link_expired"
        page = await client.get(path, headers=HTML)
        assert page.status_code == 410
        assert "expired" in page.text
        assert await subscription_status(db, contact["id"], made["id"]) == "unconfirmed"

    async def test_tampered_link_is_refused(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        contact, made = await pending(client, admin_actor)
        token = token_for(admin_actor, contact, made)
        other_list = await create_list(client, admin_actor, name="Other", opt_in="double")
        forged = token_for(admin_actor, contact, other_list).partition(".")[0]
        path = f"/v1/confirm/{forged}.{token.partition('.')[2]}"
        response = await client.post(path)
        assert response.status_code == 404
        assert response.json()["code"] == "confirmation_link_invalid"
        page = await client.get("/v1/confirm/not-a-token", headers=HTML)
        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/html")
        assert "not valid" in page.text
        assert await subscription_status(db, contact["id"], made["id"]) == "unconfirmed"


class TestConfirmationJob:
    async def test_job_sends_nothing_when_no_longer_pending(
        self,
        client: httpx.AsyncClient,
        db: Database,
        admin_actor: Actor,
        smtp_relay: SmtpCapture,
        worker_harness: WorkerHarness,
    ) -> None:
        contact, made = await pending(client, admin_actor)
        await put_subscription(
            client, admin_actor, contact["id"], made["id"], status="unsubscribed"
        )
        await worker_harness.start()

        async def finished() -> str | None:
            async with db.engine.connect() as conn:
                state = await conn.scalar(
                    text("SELECT state FROM jobs WHERE kind = 'contacts.send_confirmation'")
                )
            return str(state) if state in ("succeeded", "dead", "cancelled") else None

        assert await eventually(finished) == "succeeded"
        assert smtp_relay.messages == []

    async def test_asking_again_while_pending_queues_one_mail_not_two(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        contact, made = await pending(client, admin_actor)
        again = await put_subscription(
            client, admin_actor, contact["id"], made["id"], status="subscribed"
        )
        assert again.json()["status"] == "unconfirmed"
        async with db.engine.connect() as conn:
            jobs = await conn.scalar(
                text("SELECT count(*) FROM jobs WHERE kind = 'contacts.send_confirmation'")
            )
        assert jobs == 1
