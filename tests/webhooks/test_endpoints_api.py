"""Webhook endpoints over HTTP: creating (secret shown once, stored
encrypted), reading without the secret, listing, changing, rotating the
secret with an overlap, re-enabling, deleting, the workspace's private
address switch, and every validation error with its own code."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text, update
from standardwebhooks import Webhook, WebhookVerificationError

from sendstream.core import secrets
from sendstream.core.db import Database
from sendstream.models.webhook_endpoint import WebhookEndpoint
from sendstream.webhooks import signing
from sendstream.webhooks.endpoint_service import endpoint_service, secret_context
from tests.fixtures.actors import Actor, MakeActor
from tests.fixtures.dns import DnsServer
from tests.webhooks.conftest import publish_address
from tests.webhooks.test_signing import verify_v1a

URL = "https://127.0.0.1:9443/hooks/sendstream"


async def create(
    client: httpx.AsyncClient, actor: Actor, expect: int = 201, **body: Any
) -> dict[str, Any]:
    body.setdefault("url", URL)
    body.setdefault("event_types", ["message.*"])
    response = await client.post("/v1/webhooks", headers=actor.headers, json=body)
    assert response.status_code == expect, response.text
    return dict(response.json())


async def load(db: Database, endpoint_id: str) -> WebhookEndpoint:
    async with db.session() as session:
        found = await session.get(WebhookEndpoint, uuid.UUID(endpoint_id))
        assert found is not None
        session.expunge(found)
        return found


def signed_headers(endpoint: WebhookEndpoint, body: bytes) -> dict[str, str]:
    """The headers a delivery of `body` to `endpoint` carries now."""
    material = endpoint_service.signing_material(endpoint)
    now = int(time.time())
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": signing.sign(
            material.secrets, "msg_1", now, body, material.ed25519_keys
        ),
    }


class TestCreateWebhook:
    async def test_answer_holds_the_secret_once_and_reads_never_show_it(
        self, client: httpx.AsyncClient, private_actor: Actor
    ) -> None:
        response = await client.post(
            "/v1/webhooks",
            headers=private_actor.headers,
            json={"url": URL, "event_types": ["message.*", "contact.created"]},
        )

        assert response.status_code == 201, response.text
        created = response.json()
        assert response.headers["location"] == f"/v1/webhooks/{created['id']}"
        assert response.headers["cache-control"] == "no-store"
        secret = created["secret"]
        assert secret.startswith("whsec_")
        assert len(signing.parse_secret(secret)) == 32
        assert created["secret_hint"] == secret[:10] + "..."
        assert created["event_types"] == ["message.*", "contact.created"]
        assert created["signature_scheme"] == "v1"
        assert created["public_key"] is None
        assert created["enabled"] is True
        assert created["disabled_reason"] is None
        assert (created["fifo"], created["max_concurrency"]) == (False, 10)
        assert (created["batch_max_events"], created["batch_window_ms"]) == (None, 1000)

        read = await client.get(f"/v1/webhooks/{created['id']}", headers=private_actor.headers)
        assert read.status_code == 200
        assert "secret" not in read.json()
        assert read.json()["secret_hint"] == created["secret_hint"]
        assert secret[6:] not in read.text

    async def test_the_secret_is_stored_encrypted_and_signs_what_the_library_verifies(
        self, client: httpx.AsyncClient, private_actor: Actor, db: Database
    ) -> None:
        created = await create(client, private_actor)

        endpoint = await load(db, created["id"])
        raw = signing.parse_secret(created["secret"])
        assert raw not in endpoint.secret_encrypted
        assert (
            secrets.decrypt(
                endpoint.secret_encrypted, secret_context("secret_encrypted", endpoint.id)
            )
            == raw
        )
        body = b'{"type":"message.sent"}'
        Webhook(created["secret"]).verify(body, signed_headers(endpoint, body))

    async def test_ed25519_endpoints_get_a_public_key_that_verifies_their_signatures(
        self, client: httpx.AsyncClient, private_actor: Actor, db: Database
    ) -> None:
        created = await create(client, private_actor, signature_scheme="v1,v1a")

        assert created["public_key"].startswith("whpk_")
        endpoint = await load(db, created["id"])
        body = b'{"type":"contact.created"}'
        sent = signed_headers(endpoint, body)
        verify_v1a(created["public_key"], body, sent)
        Webhook(created["secret"]).verify(body, sent)

    async def test_v1a_only_endpoints_sign_without_hmac(
        self, client: httpx.AsyncClient, private_actor: Actor, db: Database
    ) -> None:
        created = await create(client, private_actor, signature_scheme="v1a")

        endpoint = await load(db, created["id"])
        sent = signed_headers(endpoint, b"{}")
        assert sent["webhook-signature"].startswith("v1a,")
        assert " " not in sent["webhook-signature"]
        verify_v1a(created["public_key"], b"{}", sent)

    async def test_every_option_is_kept(
        self, client: httpx.AsyncClient, private_actor: Actor
    ) -> None:
        list_id = str(uuid.uuid4())
        created = await create(
            client,
            private_actor,
            description="CRM sync",
            event_types=["contact.*", "message.opened", "message.opened"],
            filters={"streams": ["marketing"], "list_ids": [list_id], "tags": ["vip"]},
            headers={"Authorization": "Bearer receiver-token", "X-Tenant": "acme"},
            fifo=True,
            max_concurrency=3,
            batch_max_events=50,
            batch_window_ms=250,
        )

        read = (
            await client.get(f"/v1/webhooks/{created['id']}", headers=private_actor.headers)
        ).json()
        assert read["description"] == "CRM sync"
        assert read["event_types"] == ["contact.*", "message.opened"]
        assert read["filters"] == {"streams": ["marketing"], "list_ids": [list_id], "tags": ["vip"]}
        assert read["header_names"] == ["Authorization", "X-Tenant"]
        assert "receiver-token" not in json.dumps(read)
        assert (read["fifo"], read["max_concurrency"]) == (True, 3)
        assert (read["batch_max_events"], read["batch_window_ms"]) == (50, 250)

    async def test_custom_headers_are_stored_encrypted(
        self, client: httpx.AsyncClient, private_actor: Actor, db: Database
    ) -> None:
        created = await create(client, private_actor, headers={"Authorization": "Bearer t0k3n"})

        endpoint = await load(db, created["id"])
        assert endpoint.headers_encrypted is not None
        assert b"t0k3n" not in endpoint.headers_encrypted
        assert endpoint_service.custom_headers(endpoint) == {"Authorization": "Bearer t0k3n"}

    async def test_created_disabled_says_so(
        self, client: httpx.AsyncClient, private_actor: Actor
    ) -> None:
        created = await create(client, private_actor, enabled=False)

        assert created["enabled"] is False
        assert created["disabled_reason"] == "created disabled"
        assert created["disabled_at"] is not None

    async def test_an_idempotent_replay_does_not_show_the_secret_again(
        self, client: httpx.AsyncClient, private_actor: Actor
    ) -> None:
        headers = {**private_actor.headers, "Idempotency-Key": "create-hook-1"}
        body = {"url": URL, "event_types": ["*"]}

        first = await client.post("/v1/webhooks", headers=headers, json=body)
        again = await client.post("/v1/webhooks", headers=headers, json=body)

        assert first.status_code == again.status_code == 201
        assert first.json()["secret"].startswith("whsec_")
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json()["id"] == first.json()["id"]
        assert again.json()["secret"] is None


class TestValidation:
    @pytest.mark.parametrize(
        ("event_types", "named"),
        [
            (["message.sent", "message.exploded"], "message.exploded"),
            (["nothing.*"], "nothing.*"),
            (["message*"], "message*"),
            (["Order Completed"], "Order Completed"),
        ],
    )
    async def test_unknown_event_types_are_named(
        self, client: httpx.AsyncClient, private_actor: Actor, event_types: list[str], named: str
    ) -> None:
        problem = await create(client, private_actor, 422, event_types=event_types)

        assert problem["code"] == "unknown_event_type"
        assert repr(named) in problem["detail"]

    async def test_everything_wildcard_is_accepted(
        self, client: httpx.AsyncClient, private_actor: Actor
    ) -> None:
        assert (await create(client, private_actor, event_types=["*"]))["event_types"] == ["*"]

    @pytest.mark.parametrize(
        ("url", "code"),
        [
            ("ftp://hooks.example.com/", "invalid_webhook_url"),
            ("https://user:secret@hooks.example.com/", "invalid_webhook_url"),
            ("https://hooks.example.com/" + "x" * 2040, "invalid_webhook_url"),
            ("http://127.0.0.1:9443/hook", "webhook_https_required"),
            ("https://nowhere.example.com/hook", "webhook_host_unresolvable"),
        ],
    )
    async def test_unusable_urls_get_their_own_codes(
        self, client: httpx.AsyncClient, private_actor: Actor, url: str, code: str
    ) -> None:
        problem = await create(client, private_actor, 422, url=url)

        assert problem["code"] == code, problem

    async def test_internal_addresses_are_refused_unless_the_workspace_allows_them(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        problem = await create(client, admin_actor, 422, url="https://[::1]:9443/hook")
        assert problem["code"] == "webhook_url_not_allowed"
        assert "loopback" in problem["detail"]

        settings = await client.patch(
            "/v1/webhooks/settings",
            headers=admin_actor.headers,
            json={"allow_private_addresses": True},
        )
        assert settings.status_code == 200, settings.text
        assert settings.json()["allow_private_addresses"] is True
        await create(client, admin_actor, url="https://[::1]:9443/hook")

    async def test_a_name_resolving_to_a_private_address_is_refused(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer
    ) -> None:
        publish_address(dns_server, "hooks.corp.example", "192.168.10.20")

        problem = await create(client, admin_actor, 422, url="https://hooks.corp.example/in")

        assert problem["code"] == "webhook_url_not_allowed"
        assert "192.168.10.20" in problem["detail"]

    async def test_a_name_resolving_to_a_public_address_is_accepted(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer
    ) -> None:
        publish_address(dns_server, "hooks.example.com", "93.184.216.34")

        created = await create(client, admin_actor, url="https://hooks.example.com/in")

        assert created["url"] == "https://hooks.example.com/in"

    @pytest.mark.parametrize(
        "headers",
        [
            {"X-Token": "a\r\nX-Injected: 1"},
            {"X-Token": "a\nb"},
            {"webhook-signature": "v1,forged"},
            {"Webhook-Id": "msg_1"},
            {"Content-Type": "text/plain"},
            {"host": "internal.example"},
            {"Transfer-Encoding": "chunked"},
            {"Bad Name": "x"},
            {"X-Token": "a", "x-token": "b"},
        ],
    )
    async def test_headers_that_would_forge_or_break_the_request_are_refused(
        self, client: httpx.AsyncClient, private_actor: Actor, headers: dict[str, str]
    ) -> None:
        problem = await create(client, private_actor, 422, headers=headers)

        assert problem["code"] == "invalid_header"
        assert repr(next(iter(headers))) in problem["detail"] or "twice" in problem["detail"]

    async def test_nothing_is_written_by_a_refused_create(
        self, client: httpx.AsyncClient, private_actor: Actor, db: Database
    ) -> None:
        await create(client, private_actor, 422, event_types=["nope.nope"])

        async with db.engine.connect() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM webhook_endpoints"))).scalar()
        assert count == 0


class TestScopes:
    async def test_read_only_keys_read_but_cannot_write(
        self, client: httpx.AsyncClient, private_actor: Actor, make_actor: MakeActor
    ) -> None:
        created = await create(client, private_actor)
        reader = await make_actor(scopes=["webhooks:read"], workspace_id=private_actor.workspace_id)

        assert (await client.get("/v1/webhooks", headers=reader.headers)).status_code == 200
        refused = await client.post(
            "/v1/webhooks", headers=reader.headers, json={"url": URL, "event_types": ["*"]}
        )
        assert refused.status_code == 403
        assert refused.json()["code"] == "missing_scope"
        rotate = await client.post(
            f"/v1/webhooks/{created['id']}/rotate-secret", headers=reader.headers
        )
        assert rotate.status_code == 403

    async def test_only_admin_keys_change_the_private_address_switch(
        self, client: httpx.AsyncClient, admin_actor: Actor, make_actor: MakeActor
    ) -> None:
        writer = await make_actor(
            scopes=["webhooks:read", "webhooks:write"], workspace_id=admin_actor.workspace_id
        )

        refused = await client.patch(
            "/v1/webhooks/settings", headers=writer.headers, json={"allow_private_addresses": True}
        )

        assert refused.status_code == 403
        current = await client.patch("/v1/webhooks/settings", headers=admin_actor.headers, json={})
        assert current.json() == {
            "allow_private_addresses": False,
            "installation_allows_private_addresses": False,
        }


class TestListWebhooks:
    async def test_pages_run_oldest_first_with_a_cursor(
        self, client: httpx.AsyncClient, private_actor: Actor
    ) -> None:
        ids = [(await create(client, private_actor, description=str(n)))["id"] for n in range(3)]

        first = await client.get("/v1/webhooks?limit=2", headers=private_actor.headers)
        assert first.status_code == 200
        page = first.json()
        assert [w["id"] for w in page["data"]] == ids[:2]
        assert all("secret" not in w for w in page["data"])
        second = await client.get(
            "/v1/webhooks", headers=private_actor.headers, params={"cursor": page["next_cursor"]}
        )
        assert [w["id"] for w in second.json()["data"]] == ids[2:]
        assert second.json()["next_cursor"] is None


class TestUpdateWebhook:
    async def test_given_fields_change_and_the_rest_stay(
        self, client: httpx.AsyncClient, private_actor: Actor
    ) -> None:
        created = await create(
            client, private_actor, description="old", headers={"X-A": "1"}, batch_max_events=10
        )

        response = await client.patch(
            f"/v1/webhooks/{created['id']}",
            headers=private_actor.headers,
            json={
                "event_types": ["contact.unsubscribed"],
                "description": None,
                "headers": None,
                "batch_max_events": None,
                "max_concurrency": 1,
            },
        )

        assert response.status_code == 200, response.text
        updated = response.json()
        assert updated["event_types"] == ["contact.unsubscribed"]
        assert updated["description"] is None
        assert updated["header_names"] == []
        assert updated["batch_max_events"] is None
        assert updated["max_concurrency"] == 1
        assert updated["url"] == URL
        assert updated["secret_hint"] == created["secret_hint"]
        assert updated["updated_at"] >= created["updated_at"]

    async def test_a_changed_url_is_checked_again(
        self, client: httpx.AsyncClient, admin_actor: Actor, dns_server: DnsServer
    ) -> None:
        publish_address(dns_server, "hooks.example.com", "93.184.216.34")
        created = await create(client, admin_actor, url="https://hooks.example.com/a")

        response = await client.patch(
            f"/v1/webhooks/{created['id']}",
            headers=admin_actor.headers,
            json={"url": "https://169.254.169.254/latest/meta-data"},
        )

        assert response.status_code == 422
        assert response.json()["code"] == "webhook_url_not_allowed"
        assert "cloud metadata" in response.json()["detail"]

    async def test_unknown_event_types_are_refused_on_update_too(
        self, client: httpx.AsyncClient, private_actor: Actor
    ) -> None:
        created = await create(client, private_actor)

        response = await client.patch(
            f"/v1/webhooks/{created['id']}",
            headers=private_actor.headers,
            json={"event_types": ["message.teleported"]},
        )

        assert response.json()["code"] == "unknown_event_type"

    async def test_switching_to_ed25519_makes_a_key(
        self, client: httpx.AsyncClient, private_actor: Actor
    ) -> None:
        created = await create(client, private_actor)

        response = await client.patch(
            f"/v1/webhooks/{created['id']}",
            headers=private_actor.headers,
            json={"signature_scheme": "v1,v1a"},
        )

        assert response.json()["public_key"].startswith("whpk_")

    async def test_disabling_and_enabling_through_patch(
        self, client: httpx.AsyncClient, private_actor: Actor
    ) -> None:
        created = await create(client, private_actor)
        path = f"/v1/webhooks/{created['id']}"

        off = await client.patch(path, headers=private_actor.headers, json={"enabled": False})
        on = await client.patch(path, headers=private_actor.headers, json={"enabled": True})

        assert off.json()["enabled"] is False
        assert off.json()["disabled_reason"] == "disabled through the API"
        assert on.json()["enabled"] is True
        assert on.json()["disabled_reason"] is None
        assert on.json()["disabled_at"] is None


class TestRotateSecret:
    async def test_old_and_new_secret_both_verify_during_the_overlap(
        self, client: httpx.AsyncClient, private_actor: Actor, db: Database
    ) -> None:
        created = await create(client, private_actor)

        response = await client.post(
            f"/v1/webhooks/{created['id']}/rotate-secret",
            headers=private_actor.headers,
            json={"overlap_seconds": 3600},
        )

        assert response.status_code == 200, response.text
        rotated = response.json()
        assert rotated["secret"].startswith("whsec_")
        assert rotated["secret"] != created["secret"]
        assert rotated["secret_hint"] == rotated["secret"][:10] + "..."
        expires = datetime.fromisoformat(rotated["previous_secret_expires_at"])
        assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)
        endpoint = await load(db, created["id"])
        body = b'{"type":"message.sent"}'
        sent = signed_headers(endpoint, body)
        assert len(sent["webhook-signature"].split(" ")) == 2
        Webhook(created["secret"]).verify(body, sent)
        Webhook(rotated["secret"]).verify(body, sent)

    async def test_the_old_secret_stops_signing_when_the_overlap_ends(
        self, client: httpx.AsyncClient, private_actor: Actor, db: Database
    ) -> None:
        created = await create(client, private_actor)
        rotated = (
            await client.post(
                f"/v1/webhooks/{created['id']}/rotate-secret", headers=private_actor.headers
            )
        ).json()
        endpoint = await load(db, created["id"])
        assert endpoint.previous_secret_expires_at is not None
        later = endpoint.previous_secret_expires_at + timedelta(seconds=1)

        material = endpoint_service.signing_material(endpoint, later)

        assert material.secrets == [signing.parse_secret(rotated["secret"])]

    async def test_the_default_overlap_is_a_day(
        self, client: httpx.AsyncClient, private_actor: Actor
    ) -> None:
        created = await create(client, private_actor)

        rotated = (
            await client.post(
                f"/v1/webhooks/{created['id']}/rotate-secret", headers=private_actor.headers
            )
        ).json()

        expires = datetime.fromisoformat(rotated["previous_secret_expires_at"])
        assert timedelta(hours=23, minutes=59) < expires - datetime.now(UTC) <= timedelta(days=1)

    async def test_no_overlap_drops_the_old_secret_at_once(
        self, client: httpx.AsyncClient, private_actor: Actor, db: Database
    ) -> None:
        created = await create(client, private_actor)

        rotated = (
            await client.post(
                f"/v1/webhooks/{created['id']}/rotate-secret",
                headers=private_actor.headers,
                json={"overlap_seconds": 0},
            )
        ).json()

        assert rotated["previous_secret_expires_at"] is None
        endpoint = await load(db, created["id"])
        body = b"{}"
        with pytest.raises(WebhookVerificationError):
            Webhook(created["secret"]).verify(body, signed_headers(endpoint, body))

    async def test_an_overlap_past_seven_days_is_refused(
        self, client: httpx.AsyncClient, private_actor: Actor
    ) -> None:
        created = await create(client, private_actor)

        response = await client.post(
            f"/v1/webhooks/{created['id']}/rotate-secret",
            headers=private_actor.headers,
            json={"overlap_seconds": 7 * 86400 + 1},
        )

        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"


class TestEnableWebhook:
    async def test_enabling_a_disabled_endpoint_clears_why_it_stopped(
        self, client: httpx.AsyncClient, private_actor: Actor, db: Database
    ) -> None:
        created = await create(client, private_actor)
        now = datetime.now(UTC)
        async with db.session() as session:
            # As delivery leaves an endpoint that answered 410 Gone.
            await session.execute(
                update(WebhookEndpoint)
                .where(WebhookEndpoint.id == uuid.UUID(created["id"]))
                .values(
                    enabled=False,
                    disabled_reason="410 Gone",
                    disabled_at=now,
                    failing_since=now - timedelta(hours=1),
                )
            )

        response = await client.post(
            f"/v1/webhooks/{created['id']}/enable", headers=private_actor.headers
        )

        assert response.status_code == 200, response.text
        enabled = response.json()
        assert enabled["enabled"] is True
        assert (enabled["disabled_reason"], enabled["disabled_at"]) == (None, None)
        assert enabled["failing_since"] is None


class TestDeleteWebhook:
    async def test_a_deleted_endpoint_is_gone(
        self, client: httpx.AsyncClient, private_actor: Actor
    ) -> None:
        created = await create(client, private_actor)
        path = f"/v1/webhooks/{created['id']}"

        deleted = await client.delete(path, headers=private_actor.headers)

        assert deleted.status_code == 204
        missing = await client.get(path, headers=private_actor.headers)
        assert missing.status_code == 404
        assert missing.json()["code"] == "webhook_not_found"
