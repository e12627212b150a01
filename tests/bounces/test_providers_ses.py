"""Amazon SES events through SNS: the signature is checked against a
certificate fetched from an allow-listed host (a real HTTP server on
loopback serving a certificate generated for the test), subscription
confirmations visit their SubscribeURL, and bounce notifications act."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from sendstream.core.db import Database
from tests.bounces.providers_support import (
    TOPIC,
    FakeSns,
    counters,
    create_webhook,
    events_of,
    fake_sns_fixture,  # noqa: F401 - the fake_sns fixture
    hook_path,
    make_message,
    message_status,
    ses_bounce,
    suppressed,
)
from tests.fixtures.actors import Actor


async def _ses_webhook(client: httpx.AsyncClient, actor: Actor) -> dict[str, object]:
    return await create_webhook(client, actor, "ses", topic_arns=[TOPIC])


class TestSesNotifications:
    @pytest.mark.parametrize("version", ["1", "2"])
    async def test_hard_bounce_suppresses_and_marks_the_message(
        self,
        client: httpx.AsyncClient,
        db: Database,
        admin_actor: Actor,
        fake_sns: FakeSns,
        version: str,
    ) -> None:
        hook = await _ses_webhook(client, admin_actor)
        message = await make_message(db, admin_actor.workspace_id, "ada@a.example")
        note = fake_sns.notification(
            ses_bounce("ada@a.example", message_id_header=message.message_id_header),
            version=version,
        )

        response = await client.post(hook_path(hook), content=json.dumps(note))

        assert response.status_code == 200, response.text
        assert response.json() == {"received": 1, "applied": 1, "ignored": 0, "duplicates": 0}
        assert (await suppressed(db, admin_actor.workspace_id)) == {"ada@a.example": "bounced"}
        assert await message_status(db, message.id) == "bounced"
        [event] = await events_of(db, admin_actor.workspace_id, "message.bounced")
        assert event["message_id"] == str(message.id)
        assert event["hard"] is True
        assert event["reason"] == "user_unknown"
        assert event["source"] == "ses"
        assert fake_sns.paths == ["/cert.pem"]

    async def test_transient_mailbox_full_is_a_soft_bounce(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor, fake_sns: FakeSns
    ) -> None:
        hook = await _ses_webhook(client, admin_actor)
        note = fake_sns.notification(
            ses_bounce(
                "bob@a.example",
                message_id_header=None,
                bounce_type="Transient",
                subtype="MailboxFull",
                status="4.2.2",
                diagnostic="smtp; 452 4.2.2 mailbox full",
            )
        )

        response = await client.post(hook_path(hook), content=json.dumps(note))

        assert response.status_code == 200, response.text
        assert await suppressed(db, admin_actor.workspace_id) == {}
        [event] = await events_of(db, admin_actor.workspace_id, "message.bounced")
        assert event["hard"] is False
        assert event["reason"] == "mailbox_full"
        assert event["message_id"] is None

    async def test_the_same_sns_message_twice_acts_once(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor, fake_sns: FakeSns
    ) -> None:
        hook = await _ses_webhook(client, admin_actor)
        note = fake_sns.notification(ses_bounce("ada@a.example", message_id_header=None))

        first = await client.post(hook_path(hook), content=json.dumps(note))
        again = await client.post(hook_path(hook), content=json.dumps(note))

        assert first.status_code == again.status_code == 200
        assert again.json()["duplicates"] == 1
        assert len(await events_of(db, admin_actor.workspace_id, "message.bounced")) == 1
        assert await counters(db, str(hook["id"])) == {
            "received": 2,
            "applied": 1,
            "ignored": 0,
            "duplicates": 1,
        }


class TestSesVerification:
    async def test_a_changed_message_is_refused_and_nothing_recorded(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor, fake_sns: FakeSns
    ) -> None:
        hook = await _ses_webhook(client, admin_actor)
        note = fake_sns.notification(ses_bounce("ada@a.example", message_id_header=None))
        note["Message"] = note["Message"].replace("ada@a.example", "eve@a.example")

        response = await client.post(hook_path(hook), content=json.dumps(note))

        assert response.status_code == 401
        assert response.json()["code"] == "provider_signature_invalid"
        assert await suppressed(db, admin_actor.workspace_id) == {}
        assert (await counters(db, str(hook["id"])))["received"] == 0

    async def test_a_signature_by_another_key_is_refused(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor, fake_sns: FakeSns
    ) -> None:
        hook = await _ses_webhook(client, admin_actor)
        forger = FakeSns()
        note = forger.sign(
            {
                k: v
                for k, v in fake_sns.notification(
                    ses_bounce("ada@a.example", message_id_header=None)
                ).items()
                if k not in ("Signature",)
            }
            | {"SigningCertURL": fake_sns.cert_url}
        )

        response = await client.post(hook_path(hook), content=json.dumps(note))

        assert response.status_code == 401
        assert await suppressed(db, admin_actor.workspace_id) == {}

    async def test_a_certificate_url_off_the_allow_list_is_never_fetched(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor, fake_sns: FakeSns
    ) -> None:
        hook = await _ses_webhook(client, admin_actor)
        # Same server, named by a host the allow-list does not hold.
        off_list = fake_sns.cert_url.replace("127.0.0.1", "localhost")
        note = fake_sns.notification(
            ses_bounce("ada@a.example", message_id_header=None), SigningCertURL=off_list
        )

        response = await client.post(hook_path(hook), content=json.dumps(note))

        assert response.status_code == 403
        assert response.json()["code"] == "provider_source_not_allowed"
        assert fake_sns.paths == []
        assert await suppressed(db, admin_actor.workspace_id) == {}

    async def test_https_is_required_unless_allowed(
        self,
        client: httpx.AsyncClient,
        db: Database,
        admin_actor: Actor,
        fake_sns: FakeSns,
        settings: object,
    ) -> None:
        hook = await _ses_webhook(client, admin_actor)
        config = settings.provider_webhooks  # type: ignore[attr-defined]
        config.sns_allow_http = False
        note = fake_sns.notification(ses_bounce("ada@a.example", message_id_header=None))

        response = await client.post(hook_path(hook), content=json.dumps(note))

        assert response.status_code == 403
        assert fake_sns.paths == []

    async def test_another_topic_is_refused(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor, fake_sns: FakeSns
    ) -> None:
        hook = await _ses_webhook(client, admin_actor)
        note = fake_sns.notification(
            ses_bounce("ada@a.example", message_id_header=None),
            topic="arn:aws:sns:eu-west-1:999999999999:someone-else",
        )

        response = await client.post(hook_path(hook), content=json.dumps(note))

        assert response.status_code == 403
        assert await suppressed(db, admin_actor.workspace_id) == {}

    async def test_an_old_message_is_refused(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor, fake_sns: FakeSns
    ) -> None:
        hook = await _ses_webhook(client, admin_actor)
        old = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        note = fake_sns.notification(
            ses_bounce("ada@a.example", message_id_header=None), Timestamp=old
        )

        response = await client.post(hook_path(hook), content=json.dumps(note))

        assert response.status_code == 401
        assert response.json()["code"] == "provider_request_stale"
        assert await suppressed(db, admin_actor.workspace_id) == {}

    async def test_malformed_json_is_a_400(
        self, client: httpx.AsyncClient, admin_actor: Actor, fake_sns: FakeSns
    ) -> None:
        hook = await _ses_webhook(client, admin_actor)

        response = await client.post(hook_path(hook), content=b"{not json")

        assert response.status_code == 400
        assert response.json()["code"] == "malformed_payload"


class TestSubscriptionConfirmation:
    async def test_confirmation_visits_the_subscribe_url_and_is_recorded(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor, fake_sns: FakeSns
    ) -> None:
        hook = await _ses_webhook(client, admin_actor)
        token = uuid.uuid4().hex
        doc = fake_sns.sign(
            {
                "Type": "SubscriptionConfirmation",
                "MessageId": str(uuid.uuid4()),
                "Token": token,
                "TopicArn": TOPIC,
                "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
                "SubscribeURL": fake_sns.url(
                    f"/confirm?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={token}"
                ),
                "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            },
            version="2",
        )

        response = await client.post(hook_path(hook), content=json.dumps(doc))

        assert response.status_code == 200, response.text
        assert [p for p in fake_sns.paths if p.startswith("/confirm")] == [
            f"/confirm?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={token}"
        ]
        shown = (
            await client.get(f"/v1/provider-webhooks/{hook['id']}", headers=admin_actor.headers)
        ).json()
        assert shown["subscription_topic_arn"] == TOPIC
        assert shown["subscription_confirmed_at"] is not None

    async def test_a_subscribe_url_off_the_allow_list_is_not_visited(
        self, client: httpx.AsyncClient, admin_actor: Actor, fake_sns: FakeSns
    ) -> None:
        hook = await _ses_webhook(client, admin_actor)
        doc = fake_sns.sign(
            {
                "Type": "SubscriptionConfirmation",
                "MessageId": str(uuid.uuid4()),
                "Token": "t",
                "TopicArn": TOPIC,
                "Message": "subscribe",
                "SubscribeURL": fake_sns.url("/confirm").replace("127.0.0.1", "localhost"),
                "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            }
        )

        response = await client.post(hook_path(hook), content=json.dumps(doc))

        assert response.status_code == 403
        assert not [p for p in fake_sns.paths if p.startswith("/confirm")]
