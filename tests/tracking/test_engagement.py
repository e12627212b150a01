"""Open pixel and click redirects over HTTP on the real app: each hit is an
event labelled human or machine, only human hits are counted, a forged
token records nothing, and a click only ever leads to the message's own URL."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import httpx
import pytest

from sendstream.core.db import Database
from sendstream.core.settings import Settings
from sendstream.tracking.router import PIXEL_GIF
from sendstream.tracking.tokens import Kind, make_token
from tests.contacts.helpers import count
from tests.fixtures.actors import Actor
from tests.tracking.helpers import (
    BROWSER,
    message_events,
    message_row,
    sent_message,
    tracking_settings,
)

URL = "https://shop.example.com/sale?utm_source=mail&x=1"


def tampered(token: str) -> str:
    middle = len(token) // 2
    return token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]


class TestOpenPixel:
    async def test_an_open_answers_the_gif_and_records_a_unique_human_open(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        message = await sent_message(db, admin_actor.workspace_id, contact_id=None)
        response = await client.get(f"/t/o/{message.token(Kind.OPEN)}", headers=BROWSER)
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/gif"
        assert response.content == PIXEL_GIF
        assert "no-store" in response.headers["cache-control"]
        [event] = await message_events(db, message.id, "message.opened")
        assert event["machine"] is False
        assert event["reason"] is None
        assert event["unique"] is True
        assert event["message_id"] == str(message.id)
        assert "ip" not in event  # not kept unless `tracking.record_client_ip`
        row = await message_row(db, message.id)
        assert row["opens"] == 1
        assert row["first_opened_at"] is not None

    async def test_a_second_open_counts_in_the_total_but_is_not_unique(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        message = await sent_message(db, admin_actor.workspace_id)
        token = message.token(Kind.OPEN)
        await client.get(f"/t/o/{token}", headers=BROWSER)
        first = (await message_row(db, message.id))["first_opened_at"]
        await client.get(f"/t/o/{token}?utm=added-by-a-client", headers=BROWSER)
        events = await message_events(db, message.id, "message.opened")
        assert [e["unique"] for e in events] == [True, False]
        row = await message_row(db, message.id)
        assert row["opens"] == 2
        assert row["first_opened_at"] == first

    async def test_a_forged_pixel_still_answers_a_gif_and_records_nothing(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        message = await sent_message(db, admin_actor.workspace_id)
        for token in (
            tampered(message.token(Kind.OPEN)),
            "nonsense",
            message.token(Kind.UNSUBSCRIBE),
        ):
            response = await client.get(f"/t/o/{token}", headers=BROWSER)
            assert response.status_code == 200
            assert response.content == PIXEL_GIF
        assert await count(db, "events") == 0
        assert (await message_row(db, message.id))["opens"] == 0

    @pytest.mark.parametrize(
        ("headers", "reason"),
        [
            ({"User-Agent": "Mozilla/5.0"}, "apple_mpp"),
            ({"User-Agent": "python-requests/2.31"}, "scanner_user_agent"),
        ],
    )
    async def test_machine_opens_are_labelled_and_not_counted(
        self,
        client: httpx.AsyncClient,
        db: Database,
        admin_actor: Actor,
        headers: dict[str, str],
        reason: str,
    ) -> None:
        message = await sent_message(db, admin_actor.workspace_id)
        response = await client.get(f"/t/o/{message.token(Kind.OPEN)}", headers=headers)
        assert response.content == PIXEL_GIF
        [event] = await message_events(db, message.id, "message.opened")
        assert (event["machine"], event["reason"], event["unique"]) == (True, reason, False)
        row = await message_row(db, message.id)
        assert (row["opens"], row["first_opened_at"]) == (0, None)

    async def test_an_open_on_arrival_is_a_machine(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        message = await sent_message(db, admin_actor.workspace_id, sent_ago=timedelta(0))
        await client.get(f"/t/o/{message.token(Kind.OPEN)}", headers=BROWSER)
        [event] = await message_events(db, message.id, "message.opened")
        assert event["reason"] == "too_soon"

    async def test_nothing_is_recorded_when_tracking_is_off(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor, settings: Settings
    ) -> None:
        own_flag_off = await sent_message(db, admin_actor.workspace_id, track_opens=False)
        await client.get(f"/t/o/{own_flag_off.token(Kind.OPEN)}", headers=BROWSER)
        message = await sent_message(db, admin_actor.workspace_id)
        with tracking_settings(settings, workspaces={admin_actor.workspace_id: False}):
            response = await client.get(f"/t/o/{message.token(Kind.OPEN)}", headers=BROWSER)
        assert response.content == PIXEL_GIF
        with tracking_settings(settings, streams=["transactional"]):
            await client.get(f"/t/o/{message.token(Kind.OPEN)}", headers=BROWSER)
        assert await count(db, "events") == 0

    async def test_client_ip_is_kept_only_when_configured(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor, settings: Settings
    ) -> None:
        message = await sent_message(db, admin_actor.workspace_id)
        with tracking_settings(settings, record_client_ip=True):
            await client.get(f"/t/o/{message.token(Kind.OPEN)}", headers=BROWSER)
        [event] = await message_events(db, message.id, "message.opened")
        assert event["ip"] == "127.0.0.1"


class TestClick:
    async def test_a_click_redirects_to_the_messages_url_and_is_counted(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        message = await sent_message(db, admin_actor.workspace_id)
        response = await client.get(f"/t/c/{message.token(Kind.CLICK, URL)}", headers=BROWSER)
        assert response.status_code == 302
        assert response.headers["location"] == URL
        assert response.headers["referrer-policy"] == "no-referrer"
        [event] = await message_events(db, message.id, "message.clicked")
        assert (event["url"], event["machine"], event["unique"]) == (URL, False, True)
        row = await message_row(db, message.id)
        assert row["clicks"] == 1
        assert row["first_clicked_at"] is not None

    async def test_a_url_with_spaces_and_non_ascii_is_redirected_percent_encoded(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        message = await sent_message(db, admin_actor.workspace_id)
        url = "https://shop.example.com/caf\u00e9 cr\u00e8me?q=a b&r=%20"
        response = await client.get(f"/t/c/{message.token(Kind.CLICK, url)}", headers=BROWSER)
        assert response.status_code == 302
        assert response.headers["location"] == (
            "https://shop.example.com/caf%C3%A9%20cr%C3%A8me?q=a%20b&r=%20"
        )

    async def test_a_tampered_click_is_a_plain_404_never_a_redirect(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        message = await sent_message(db, admin_actor.workspace_id)
        for token in (
            tampered(message.token(Kind.CLICK, URL)),
            message.token(Kind.OPEN),
            "x" * 120,
        ):
            response = await client.get(f"/t/c/{token}", headers=BROWSER)
            assert response.status_code == 404
            assert "location" not in response.headers
            assert response.headers["content-type"].startswith("text/html")
            assert "shop.example.com" not in response.text
        assert await count(db, "events") == 0

    async def test_a_token_naming_another_workspace_changes_nothing_there(
        self,
        client: httpx.AsyncClient,
        db: Database,
        admin_actor: Actor,
        other_workspace_actor: Actor,
    ) -> None:
        message = await sent_message(db, admin_actor.workspace_id)
        # Signed by us, but for workspace B and A's message id: it finds no message.
        token = make_token(Kind.CLICK, other_workspace_actor.workspace_id, message.id, url=URL)
        response = await client.get(f"/t/c/{token}", headers=BROWSER)
        assert response.status_code == 302
        assert (await message_row(db, message.id))["clicks"] == 0
        assert await count(db, "events") == 0

    async def test_a_click_still_leads_on_when_its_message_is_gone(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        token = make_token(Kind.CLICK, admin_actor.workspace_id, uuid.uuid4(), url=URL)
        response = await client.get(f"/t/c/{token}", headers=BROWSER)
        assert response.status_code == 302
        assert response.headers["location"] == URL
        assert await count(db, "events") == 0

    @pytest.mark.parametrize(
        ("method", "headers", "sent_ago", "reason"),
        [
            ("HEAD", BROWSER, timedelta(minutes=5), "head_request"),
            (
                "GET",
                {"User-Agent": "Barracuda Sentinel"},
                timedelta(minutes=5),
                "scanner_user_agent",
            ),
            ("GET", BROWSER, timedelta(seconds=1), "too_soon"),
        ],
    )
    async def test_scanner_clicks_are_labelled_and_not_counted(
        self,
        client: httpx.AsyncClient,
        db: Database,
        admin_actor: Actor,
        method: str,
        headers: dict[str, str],
        sent_ago: timedelta,
        reason: str,
    ) -> None:
        message = await sent_message(db, admin_actor.workspace_id, sent_ago=sent_ago)
        response = await client.request(
            method, f"/t/c/{message.token(Kind.CLICK, URL)}", headers=headers
        )
        assert response.status_code == 302
        [event] = await message_events(db, message.id, "message.clicked")
        assert (event["machine"], event["reason"], event["unique"]) == (True, reason, False)
        row = await message_row(db, message.id)
        assert (row["clicks"], row["first_clicked_at"]) == (0, None)

    async def test_the_trap_link_is_labelled_and_leads_nowhere(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        message = await sent_message(db, admin_actor.workspace_id)
        response = await client.get(f"/t/c/{message.token(Kind.TRAP)}", headers=BROWSER)
        assert response.status_code == 200
        assert "location" not in response.headers
        [event] = await message_events(db, message.id, "message.clicked")
        assert (event["machine"], event["reason"], event["url"]) == (True, "trap_link", None)
        assert (await message_row(db, message.id))["clicks"] == 0


class TestAccessLog:
    @pytest.mark.parametrize(
        ("method", "prefix"), [("GET", "/t/o/"), ("GET", "/t/c/"), ("POST", "/u/")]
    )
    async def test_tokens_never_reach_the_access_log(
        self,
        client: httpx.AsyncClient,
        db: Database,
        admin_actor: Actor,
        capsys: pytest.CaptureFixture[str],
        method: str,
        prefix: str,
    ) -> None:
        message = await sent_message(db, admin_actor.workspace_id)
        kind = {"/t/o/": Kind.OPEN, "/t/c/": Kind.CLICK, "/u/": Kind.UNSUBSCRIBE}[prefix]
        token = message.token(kind, URL if kind is Kind.CLICK else None)
        capsys.readouterr()
        await client.request(method, f"{prefix}{token}", headers=BROWSER)
        captured = capsys.readouterr().err
        lines = [json.loads(line) for line in captured.splitlines() if line.startswith("{")]
        [access] = [line for line in lines if line.get("event") == "http.request"]
        assert access["path"] == f"{prefix}{{token}}"
        assert token not in captured.replace(f"http://testserver{prefix}{token}", "")
