"""Unsubscribing over HTTP on the real app: RFC 8058 one-click POSTs
unsubscribe without a page or redirect and record consent, suppression and
events; the preference page works as a plain HTML form and its POST applies
the person's choices; a forged token changes nothing."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from sendstream.contacts.suppression import address_hash
from sendstream.core.db import Database
from sendstream.tracking.service import hit_context
from sendstream.tracking.tokens import Kind, mailto_local_part
from sendstream.tracking.unsubscribe import unsubscribe_service
from tests.contacts.helpers import count, create_contact, events_of
from tests.contacts.test_lists import consent_rows, create_list, put_subscription
from tests.fixtures.actors import Actor
from tests.tracking.helpers import BROWSER, SentMessage, message_events, sent_message

ONE_CLICK = "List-Unsubscribe=One-Click"
FORM = {"Content-Type": "application/x-www-form-urlencoded", **BROWSER}


async def contact_status(db: Database, contact_id: str) -> str:
    async with db.engine.connect() as conn:
        return str(
            await conn.scalar(
                text("SELECT status FROM contacts WHERE id = :id"), {"id": contact_id}
            )
        )


async def subscription(db: Database, contact_id: str, list_id: str) -> str | None:
    async with db.engine.connect() as conn:
        value = await conn.scalar(
            text("SELECT status FROM subscriptions WHERE contact_id = :c AND list_id = :l"),
            {"c": contact_id, "l": list_id},
        )
    return str(value) if value is not None else None


async def suppression_reason(db: Database, workspace_id: uuid.UUID, email_key: str) -> str | None:
    async with db.engine.connect() as conn:
        value = await conn.scalar(
            text("SELECT reason FROM suppressions WHERE workspace_id = :w AND address_hash = :h"),
            {"w": workspace_id, "h": address_hash(email_key)},
        )
    return str(value) if value is not None else None


async def subscribed_contact(
    client: httpx.AsyncClient, db: Database, actor: Actor, **list_fields: Any
) -> tuple[dict[str, Any], dict[str, Any], SentMessage]:
    """Ada, subscribed to a list, and a marketing message she got for it."""
    made = await create_list(client, actor, **{"name": "Weekly news", **list_fields})
    contact = await create_contact(client, actor, email="ada@example.com", lists=[made["id"]])
    message = await sent_message(
        db, actor.workspace_id, contact_id=contact["id"], list_id=made["id"]
    )
    return contact, made, message


class TestOneClick:
    @pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
    async def test_one_click_unsubscribes_from_the_list_without_page_or_redirect(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor, encoding: str
    ) -> None:
        contact, made, message = await subscribed_contact(client, db, admin_actor)
        url = f"/u/{message.token(Kind.UNSUBSCRIBE)}"
        if encoding == "urlencoded":
            response = await client.post(
                url,
                content=ONE_CLICK,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        else:
            response = await client.post(url, files={"List-Unsubscribe": (None, "One-Click")})
        assert response.status_code == 200
        assert response.content == b""
        assert "location" not in response.headers
        assert await subscription(db, contact["id"], made["id"]) == "unsubscribed"
        assert await contact_status(db, contact["id"]) == "active"  # other lists keep mailing
        latest = (await consent_rows(db))[-1]
        assert (latest["list_id"], latest["status"], latest["source"]) == (
            made["id"],
            "unsubscribed",
            "unsubscribe_link",
        )
        [unsubscribed] = await events_of(db, "contact.unsubscribed")
        assert unsubscribed["data"]["list_id"] == made["id"]
        [event] = await message_events(db, message.id, "message.unsubscribed")
        assert (event["scope"], event["method"], event["list_id"]) == (
            "list",
            "one_click",
            made["id"],
        )

    async def test_repeating_the_post_changes_and_emits_nothing_more(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        _, _, message = await subscribed_contact(client, db, admin_actor)
        url = f"/u/{message.token(Kind.UNSUBSCRIBE)}"
        await client.post(url, content=ONE_CLICK, headers=FORM)
        events, records = await count(db, "events"), await count(db, "consent_records")
        response = await client.post(url, content=ONE_CLICK, headers=FORM)
        assert response.status_code == 200
        assert (await count(db, "events"), await count(db, "consent_records")) == (events, records)

    async def test_a_message_without_a_list_unsubscribes_from_everything(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        contact = await create_contact(client, admin_actor, email="Ada@Example.com")
        message = await sent_message(
            db, admin_actor.workspace_id, to="Ada@Example.com", contact_id=contact["id"]
        )
        response = await client.post(
            f"/u/{message.token(Kind.UNSUBSCRIBE)}", content=ONE_CLICK, headers=FORM
        )
        assert response.status_code == 200
        assert response.content == b""
        assert await contact_status(db, contact["id"]) == "unsubscribed"
        assert await suppression_reason(db, admin_actor.workspace_id, "ada@example.com") == (
            "unsubscribed"
        )
        latest = (await consent_rows(db))[-1]
        assert (latest["list_id"], latest["status"], latest["source"]) == (
            None,
            "unsubscribed",
            "unsubscribe_link",
        )
        [unsubscribed] = await events_of(db, "contact.unsubscribed")
        assert unsubscribed["data"]["list_id"] is None
        [event] = await message_events(db, message.id, "message.unsubscribed")
        assert (event["scope"], event["method"]) == ("all", "one_click")

    async def test_a_recipient_who_is_no_contact_is_suppressed(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        message = await sent_message(db, admin_actor.workspace_id, to="bob@example.com")
        response = await client.post(
            f"/u/{message.token(Kind.UNSUBSCRIBE)}", content=ONE_CLICK, headers=FORM
        )
        assert response.status_code == 200
        assert await suppression_reason(db, admin_actor.workspace_id, "bob@example.com") == (
            "unsubscribed"
        )
        assert len(await message_events(db, message.id, "message.unsubscribed")) == 1

    async def test_a_forged_token_changes_nothing(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        contact, made, message = await subscribed_contact(client, db, admin_actor)
        token = message.token(Kind.UNSUBSCRIBE)
        events = await count(db, "events")
        for forged in (
            token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),
            message.token(Kind.OPEN),
        ):
            response = await client.post(f"/u/{forged}", content=ONE_CLICK, headers=FORM)
            assert response.status_code == 404
            assert "location" not in response.headers
        assert await subscription(db, contact["id"], made["id"]) == "subscribed"
        assert await count(db, "events") == events

    async def test_the_mailto_address_unsubscribes_like_one_click(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        contact, made, message = await subscribed_contact(client, db, admin_actor)
        hit = hit_context("MAIL", None, None)
        async with db.session() as session:
            assert not await unsubscribe_service.by_mailto(session, "unsub-" + "a" * 52, hit)
            local = mailto_local_part(message.workspace_id, message.id).upper()
            assert await unsubscribe_service.by_mailto(session, local, hit)
        assert await subscription(db, contact["id"], made["id"]) == "unsubscribed"
        [event] = await message_events(db, message.id, "message.unsubscribed")
        assert event["method"] == "mailto"


class TestPreferencePage:
    async def test_the_page_is_a_plain_form_and_changes_nothing(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        contact, made, message = await subscribed_contact(client, db, admin_actor)
        public = await create_list(client, admin_actor, name="Offers <b>&</b>", visibility="public")
        await create_list(client, admin_actor, name="Internal staff list")
        events = await count(db, "events")
        url = f"/u/{message.token(Kind.UNSUBSCRIBE)}"
        response = await client.get(url, headers=BROWSER)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "script-src" not in response.headers["content-security-policy"]
        assert response.headers["cache-control"] == "no-store"
        page = response.text
        assert "<script" not in page.lower()
        forms = re.findall(r'<form method="post" action="([^"]+)">', page)
        assert forms == [url, url, url]
        assert 'name="action" value="unsubscribe_list"' in page
        assert 'name="action" value="unsubscribe_all"' in page
        assert f'name="lists" value="{made["id"]}" checked' in page
        assert f'name="lists" value="{public["id"]}">' in page
        assert "Offers &lt;b&gt;&amp;&lt;/b&gt;" in page
        assert "Internal staff list" not in page  # private lists stay private
        assert "a***@example.com" in page
        assert "ada@example.com" not in page
        assert await count(db, "events") == events
        assert await subscription(db, contact["id"], made["id"]) == "subscribed"

    async def test_the_form_updates_subscriptions(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        contact, made, message = await subscribed_contact(
            client, db, admin_actor, visibility="public"
        )
        offers = await create_list(client, admin_actor, name="Offers", visibility="public")
        url = f"/u/{message.token(Kind.UNSUBSCRIBE)}"
        response = await client.post(
            url, data={"action": "update", "lists": [offers["id"]]}, headers=BROWSER
        )
        assert response.status_code == 200
        assert "Your choices are saved." in response.text
        assert f'name="lists" value="{offers["id"]}" checked' in response.text
        assert await subscription(db, contact["id"], made["id"]) == "unsubscribed"
        assert await subscription(db, contact["id"], offers["id"]) == "subscribed"
        sources = {(r["list_id"], r["status"]): r["source"] for r in await consent_rows(db)}
        assert sources[(made["id"], "unsubscribed")] == "unsubscribe_link"
        assert sources[(offers["id"], "subscribed")] == "form"

    async def test_unsubscribe_from_this_list(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        contact, made, message = await subscribed_contact(client, db, admin_actor)
        response = await client.post(
            f"/u/{message.token(Kind.UNSUBSCRIBE)}",
            data={"action": "unsubscribe_list"},
            headers=BROWSER,
        )
        assert response.status_code == 200
        assert "You are unsubscribed from Weekly news." in response.text
        assert await subscription(db, contact["id"], made["id"]) == "unsubscribed"
        [event] = await message_events(db, message.id, "message.unsubscribed")
        assert (event["scope"], event["method"]) == ("list", "preference_page")
        latest = (await consent_rows(db))[-1]
        assert latest["consent_text"] == "Unsubscribe me from Weekly news."

    async def test_unsubscribe_from_everything(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        contact, _made, message = await subscribed_contact(client, db, admin_actor)
        response = await client.post(
            f"/u/{message.token(Kind.UNSUBSCRIBE)}",
            data={"action": "unsubscribe_all"},
            headers=BROWSER,
        )
        assert response.status_code == 200
        assert "You will get no more email" in response.text
        assert await contact_status(db, contact["id"]) == "unsubscribed"
        assert await suppression_reason(db, admin_actor.workspace_id, "ada@example.com") == (
            "unsubscribed"
        )
        [event] = await message_events(db, message.id, "message.unsubscribed")
        assert event["scope"] == "all"

    async def test_an_unknown_action_or_list_changes_nothing(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        contact, made, message = await subscribed_contact(client, db, admin_actor)
        private = await create_list(client, admin_actor, name="Private")
        url = f"/u/{message.token(Kind.UNSUBSCRIBE)}"
        events = await count(db, "events")
        await client.post(url, data={"action": "delete_everything"}, headers=BROWSER)
        await client.post(
            url, data={"action": "update", "lists": [made["id"], private["id"]]}, headers=BROWSER
        )
        assert await subscription(db, contact["id"], private["id"]) is None
        assert await count(db, "events") == events

    async def test_a_forged_page_link_is_a_404_page(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        response = await client.get("/u/not-a-token", headers=BROWSER)
        assert response.status_code == 404
        assert "This link does not work" in response.text
        response = await client.post(
            "/u/not-a-token", data={"action": "unsubscribe_all"}, headers=BROWSER
        )
        assert response.status_code == 404

    async def test_a_double_opt_in_list_chosen_on_the_page_waits_for_confirmation(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        contact, made, message = await subscribed_contact(client, db, admin_actor)
        digest = await create_list(
            client, admin_actor, name="Digest", visibility="public", opt_in="double"
        )
        response = await client.post(
            f"/u/{message.token(Kind.UNSUBSCRIBE)}",
            data={"action": "update", "lists": [made["id"], digest["id"]]},
            headers=BROWSER,
        )
        assert response.status_code == 200
        assert "waiting for your confirmation" in response.text
        assert await subscription(db, contact["id"], digest["id"]) == "unconfirmed"
        put = await put_subscription(
            client, admin_actor, contact["id"], digest["id"], status="unsubscribed"
        )
        assert put.status_code == 200

    async def test_choosing_a_list_after_leaving_everything_lifts_the_unsubscribe(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        contact, made, message = await subscribed_contact(
            client, db, admin_actor, visibility="public"
        )
        url = f"/u/{message.token(Kind.UNSUBSCRIBE)}"
        await client.post(url, data={"action": "unsubscribe_all"}, headers=BROWSER)
        assert await suppression_reason(db, admin_actor.workspace_id, "ada@example.com") == (
            "unsubscribed"
        )
        page = (await client.get(url, headers=BROWSER)).text
        assert "You are unsubscribed from all email" in page
        await client.post(url, data={"action": "update", "lists": [made["id"]]}, headers=BROWSER)
        assert await contact_status(db, contact["id"]) == "active"
        assert await suppression_reason(db, admin_actor.workspace_id, "ada@example.com") is None
        assert len(await events_of(db, "suppression.removed")) == 1
