"""/v1/bounce-mailboxes: configuration through the API, secrets never
returned, workspaces kept apart, and `check` against a real Dovecot."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from sendstream.core import secrets
from sendstream.core.db import Database
from sendstream.core.settings import Settings, override_settings
from sendstream.models.imap_mailbox import ImapMailbox
from tests.bounces.imap_support import PASSWORD, USER, imap_settings
from tests.fixtures.actors import Actor
from tests.fixtures.dovecot import Dovecot

BASE = "/v1/bounce-mailboxes"


def _body(**fields: Any) -> dict[str, Any]:
    return {
        "name": "bounces",
        "host": "imap.example.com",
        "username": USER,
        "password": PASSWORD,
        **fields,
    }


@pytest.fixture
def loopback_allowed(settings: Settings) -> Iterator[None]:
    override_settings(imap_settings(settings))
    yield
    override_settings(settings)


class TestBounceMailboxApi:
    async def test_create_stores_secrets_encrypted_and_never_returns_them(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        response = await client.post(
            BASE,
            json=_body(oauth_refresh_token="rt-secret", oauth_token_url="https://t.example/t"),
            headers=admin_actor.headers,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert response.headers["Location"] == f"{BASE}/{body['id']}"
        assert body["password_set"] is True
        assert body["oauth_refresh_token_set"] is True
        assert body["access_token_set"] is False
        assert PASSWORD not in response.text
        assert "rt-secret" not in response.text
        assert body["port"] == 993
        assert body["processed_action"] == "move"
        assert body["counters"] == {"accepted": 0, "duplicates": 0, "oversized": 0}
        async with db.session() as session:
            row = (await session.scalars(select(ImapMailbox))).one()
        assert row.password_encrypted is not None
        assert PASSWORD.encode() not in row.password_encrypted
        assert (
            secrets.decrypt(row.password_encrypted, f"imap_mailboxes.password_encrypted:{row.id}")
            == PASSWORD.encode()
        )
        got = await client.get(f"{BASE}/{body['id']}", headers=admin_actor.headers)
        assert got.status_code == 200
        assert PASSWORD not in got.text

    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({"password": None}, "password"),
            ({"auth": "xoauth2", "password": None}, "access_token"),
            ({"folder": "Bounces", "processed_folder": "bounces"}, "processed_folder"),
            ({"ca_certificates": "-----BEGIN CERTIFICATE-----\nnot base64\n"}, "ca_certificates"),
        ],
    )
    async def test_settings_that_cannot_work_are_refused(
        self,
        client: httpx.AsyncClient,
        db: Database,
        admin_actor: Actor,
        fields: dict[str, Any],
        field: str,
    ) -> None:
        response = await client.post(BASE, json=_body(**fields), headers=admin_actor.headers)
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["code"] == "invalid_bounce_mailbox"
        assert field in problem["detail"]
        async with db.session() as session:
            assert (await session.scalars(select(ImapMailbox))).all() == []

    async def test_bad_input_is_a_validation_error(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        for bad in ({"port": 0}, {"tls": "none"}, {"folder": "a\r\nb"}, {"mode": "push"}):
            response = await client.post(BASE, json=_body(**bad), headers=admin_actor.headers)
            assert response.status_code == 422, bad

    async def test_update_list_and_delete(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        created = (await client.post(BASE, json=_body(), headers=admin_actor.headers)).json()
        url = f"{BASE}/{created['id']}"
        changed = await client.patch(
            url,
            json={"mode": "poll", "poll_interval": 30, "processed_action": "flag"},
            headers=admin_actor.headers,
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["mode"] == "poll"
        assert changed.json()["password_set"] is True
        assert changed.json()["updated_at"] != created["updated_at"]
        null_password = await client.patch(
            url, json={"password": None}, headers=admin_actor.headers
        )
        assert null_password.status_code == 422
        listed = await client.get(BASE, headers=admin_actor.headers)
        assert [m["id"] for m in listed.json()["data"]] == [created["id"]]
        assert (await client.delete(url, headers=admin_actor.headers)).status_code == 204
        assert (await client.get(url, headers=admin_actor.headers)).status_code == 404

    async def test_other_workspaces_see_nothing(
        self, client: httpx.AsyncClient, admin_actor: Actor, other_workspace_actor: Actor
    ) -> None:
        created = (await client.post(BASE, json=_body(), headers=admin_actor.headers)).json()
        url = f"{BASE}/{created['id']}"
        other = other_workspace_actor.headers
        assert (await client.get(url, headers=other)).status_code == 404
        assert (await client.patch(url, json={"name": "x"}, headers=other)).status_code == 404
        assert (await client.delete(url, headers=other)).status_code == 404
        assert (await client.post(f"{url}/check", headers=other)).status_code == 404
        assert (await client.get(BASE, headers=other)).json()["data"] == []

    async def test_read_keys_cannot_write(
        self, client: httpx.AsyncClient, member_actor: Actor
    ) -> None:
        response = await client.post(BASE, json=_body(), headers=member_actor.headers)
        assert response.status_code == 403
        assert (await client.get(BASE, headers=member_actor.headers)).status_code == 200


class TestCheck:
    async def test_check_logs_in_and_opens_the_folder(
        self,
        client: httpx.AsyncClient,
        dovecot: Dovecot,
        admin_actor: Actor,
        loopback_allowed: None,
    ) -> None:
        dovecot.add_user(USER, PASSWORD)
        created = await client.post(
            BASE,
            json=_body(host="localhost", port=dovecot.tls_port, ca_certificates=dovecot.ca_pem),
            headers=admin_actor.headers,
        )
        url = f"{BASE}/{created.json()['id']}"
        response = await client.post(f"{url}/check", headers=admin_actor.headers)
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["ok"] is True, result
        assert result["uidvalidity"] == await dovecot.uidvalidity(USER)
        assert "IDLE" in result["capabilities"]
        state = (await client.get(url, headers=admin_actor.headers)).json()
        assert state["last_error"] is None
        assert state["last_checked_at"] is not None

    async def test_a_failed_check_says_why_and_is_recorded(
        self,
        client: httpx.AsyncClient,
        dovecot: Dovecot,
        admin_actor: Actor,
        loopback_allowed: None,
    ) -> None:
        dovecot.add_user(USER, PASSWORD)
        created = await client.post(
            BASE,
            json=_body(
                host="localhost",
                port=dovecot.tls_port,
                ca_certificates=dovecot.ca_pem,
                password="wrong",
            ),
            headers=admin_actor.headers,
        )
        url = f"{BASE}/{created.json()['id']}"
        result = (await client.post(f"{url}/check", headers=admin_actor.headers)).json()
        assert result["ok"] is False
        assert "AUTHENTICATIONFAILED" in result["error"]
        state = (await client.get(url, headers=admin_actor.headers)).json()
        assert "AUTHENTICATIONFAILED" in state["last_error"]

    async def test_loopback_hosts_are_refused_by_default(
        self, client: httpx.AsyncClient, dovecot: Dovecot, admin_actor: Actor
    ) -> None:
        created = await client.post(
            BASE,
            json=_body(host="127.0.0.1", port=dovecot.tls_port, ca_certificates=dovecot.ca_pem),
            headers=admin_actor.headers,
        )
        url = f"{BASE}/{created.json()['id']}"
        result = (await client.post(f"{url}/check", headers=admin_actor.headers)).json()
        assert result["ok"] is False
        assert "loopback" in result["error"]
