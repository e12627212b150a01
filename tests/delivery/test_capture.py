"""Local development without an SMTP relay: the capture transport keeps the
exact bytes, `GET /v1/messages/{id}/raw` returns them, and the small
mailbox page lists and shows them (no JavaScript)."""

from __future__ import annotations

import re
from email import message_from_bytes, policy

import httpx
import pytest
from sqlalchemy import text

from sendstream.core.db import Database
from sendstream.core.settings import Settings, override_settings
from sendstream.delivery.domain_service import domain_service
from sendstream.delivery.verp import parse_verp
from tests.delivery.messages_helpers import SENDER, message_state, running, verified_domain
from tests.delivery.test_dkim import dkimpy_results, records
from tests.fixtures.actors import Actor, MakeActor
from tests.fixtures.job_worker import eventually

HTML = '<p>Hello <b>Ada</b></p><script>alert("x")</script><img src="https://t.example/p.gif">'


@pytest.fixture
async def captured(
    client: httpx.AsyncClient, db: Database, admin_actor: Actor, settings: Settings
) -> str:
    """One message sent through the capture transport (no `smtp_url`)."""
    assert settings.smtp_url is None
    await verified_domain(db, admin_actor.workspace_id)
    body = {
        "from": SENDER,
        "to": "ada@example.com",
        "subject": "Hi <Ada> & co",
        "text": "Hello Ada",
        "html": HTML,
    }
    async with running(settings, db):
        response = await client.post("/v1/messages", headers=admin_actor.headers, json=body)
        assert response.status_code == 202, response.text
        [message] = response.json()["messages"]

        async def sent() -> bool:
            return bool((await message_state(db, message["id"]))["status"] == "sent")

        await eventually(sent)
    message_id: str = message["id"]
    return message_id


class TestRaw:
    async def test_raw_returns_the_signed_bytes_that_would_have_gone_to_smtp(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor, captured: str
    ) -> None:
        response = await client.get(f"/v1/messages/{captured}/raw", headers=admin_actor.headers)
        assert response.status_code == 200
        assert response.headers["content-type"] == "message/rfc822"
        raw = response.content
        assert raw.startswith(b"DKIM-Signature:")
        parsed = message_from_bytes(raw, policy=policy.default)
        assert parsed["Subject"] == "Hi <Ada> & co"
        async with db.session() as session:
            keys = await domain_service.signing_keys(
                session, admin_actor.workspace_id, "acme.example"
            )
        assert dkimpy_results(raw, records(*keys)) == [True]

        read = (await client.get(f"/v1/messages/{captured}", headers=admin_actor.headers)).json()
        assert read["relay"] == "capture"
        assert read["last_status_code"] == 250

    async def test_the_envelope_is_kept_too(
        self, db: Database, admin_actor: Actor, captured: str
    ) -> None:
        async with db.engine.connect() as conn:
            row = (
                await conn.execute(text("SELECT mail_from, recipients FROM captured_messages"))
            ).one()
        assert parse_verp(row.mail_from) is not None
        assert row.recipients == ["ada@example.com"]


class TestMailboxPage:
    async def test_without_a_key_it_asks_for_one(
        self, client: httpx.AsyncClient, captured: str
    ) -> None:
        response = await client.get("/dev/mailbox")
        assert response.status_code == 200
        assert "<input name=key type=password" in response.text
        assert "Hi &lt;Ada&gt;" not in response.text

    async def test_a_wrong_key_is_refused(self, client: httpx.AsyncClient, captured: str) -> None:
        response = await client.get("/dev/mailbox", params={"key": "ss_nope_nope"})
        assert response.status_code == 401
        assert "Hi &lt;Ada&gt;" not in response.text

    async def test_a_key_without_messages_read_is_refused(
        self, client: httpx.AsyncClient, make_actor: MakeActor, admin_actor: Actor, captured: str
    ) -> None:
        other = await make_actor(scopes=["contacts:read"], workspace_id=admin_actor.workspace_id)
        response = await client.get("/dev/mailbox", params={"key": other.api_key})
        assert response.status_code == 401

    async def test_lists_and_shows_a_message_escaped_and_sandboxed(
        self, client: httpx.AsyncClient, admin_actor: Actor, captured: str
    ) -> None:
        listing = await client.get("/dev/mailbox", params={"key": admin_actor.api_key})
        assert listing.status_code == 200
        assert listing.headers["referrer-policy"] == "no-referrer"
        assert "Hi &lt;Ada&gt; &amp; co" in listing.text
        assert "<script" not in listing.text.lower()
        link = re.search(r'href="(/dev/mailbox/[^"]+)"', listing.text)
        assert link is not None
        assert captured in link.group(1)

        page = await client.get(link.group(1).replace("&amp;", "&"))
        assert page.status_code == 200
        assert "Hello Ada" in page.text
        assert '<iframe sandbox="" srcdoc="' in page.text
        # The HTML is only inside the (escaped) srcdoc attribute.
        assert "<script>" not in page.text
        assert "&lt;script&gt;" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]

    async def test_the_header_works_as_well_as_the_query(
        self, client: httpx.AsyncClient, admin_actor: Actor, captured: str
    ) -> None:
        response = await client.get(f"/dev/mailbox/{captured}", headers=admin_actor.headers)
        assert response.status_code == 200
        assert "Hello Ada" in response.text

    async def test_another_workspace_sees_neither_list_nor_message(
        self, client: httpx.AsyncClient, other_workspace_actor: Actor, captured: str
    ) -> None:
        key = {"key": other_workspace_actor.api_key}
        listing = await client.get("/dev/mailbox", params=key)
        assert listing.status_code == 200
        assert "Hi &lt;Ada&gt;" not in listing.text
        page = await client.get(f"/dev/mailbox/{captured}", params=key)
        assert page.status_code == 404
        assert "Hello Ada" not in page.text

    async def test_not_served_when_a_relay_is_configured_outside_development(
        self, client: httpx.AsyncClient, admin_actor: Actor, settings: Settings, captured: str
    ) -> None:
        override_settings(settings.model_copy(update={"smtp_url": "smtp://127.0.0.1:2525"}))
        try:
            response = await client.get("/dev/mailbox", params={"key": admin_actor.api_key})
        finally:
            override_settings(settings)
        assert response.status_code == 404
