"""SendGrid (ECDSA-signed), Postmark (basic auth) and Mailgun (HMAC-signed)
event webhooks: a valid request acts, a forged or replayed one is refused
and leaves nothing behind. Payloads follow each vendor's documented shape."""

from __future__ import annotations

import base64
import json
import time
import uuid

import httpx

from sendstream.core.db import Database
from tests.bounces.providers_support import (
    SendGridSigner,
    counters,
    create_webhook,
    events_of,
    hook_path,
    mailgun_body,
    make_message,
    message_status,
    suppressed,
)
from tests.fixtures.actors import Actor


def _sendgrid_events(smtp_id: str) -> list[dict[str, object]]:
    now = int(time.time())
    return [
        {
            "email": "ada@a.example",
            "timestamp": now,
            "smtp-id": smtp_id,
            "event": "bounce",
            "type": "bounce",
            "status": "5.1.1",
            "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
            "sg_event_id": uuid.uuid4().hex,
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        },
        {
            "email": "bob@a.example",
            "timestamp": now,
            "event": "delivered",
            "response": "250 OK",
            "sg_event_id": uuid.uuid4().hex,
        },
        {
            "email": "cy@a.example",
            "timestamp": now,
            "event": "open",
            "sg_event_id": uuid.uuid4().hex,
        },
        {
            "email": "dee@a.example",
            "timestamp": now,
            "event": "spamreport",
            "sg_event_id": uuid.uuid4().hex,
        },
    ]


class TestSendGrid:
    async def test_a_signed_batch_acts_per_event(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        signer = SendGridSigner()
        hook = await create_webhook(client, admin_actor, "sendgrid", public_key=signer.public_key)
        message = await make_message(db, admin_actor.workspace_id, "ada@a.example")
        body = json.dumps(_sendgrid_events(message.message_id_header)).encode()

        response = await client.post(hook_path(hook), content=body, headers=signer.headers(body))

        assert response.status_code == 200, response.text
        assert response.json() == {"received": 4, "applied": 3, "ignored": 1, "duplicates": 0}
        assert await suppressed(db, admin_actor.workspace_id) == {
            "ada@a.example": "bounced",
            "dee@a.example": "complained",
        }
        assert await message_status(db, message.id) == "bounced"
        [bounced] = await events_of(db, admin_actor.workspace_id, "message.bounced")
        assert bounced["message_id"] == str(message.id)
        assert bounced["source"] == "sendgrid"

    async def test_a_bad_signature_is_refused_and_nothing_recorded(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        signer = SendGridSigner()
        hook = await create_webhook(client, admin_actor, "sendgrid", public_key=signer.public_key)
        body = json.dumps(_sendgrid_events("<x@a.example>")).encode()
        headers = SendGridSigner().headers(body)  # signed by another key

        response = await client.post(hook_path(hook), content=body, headers=headers)
        unsigned = await client.post(hook_path(hook), content=body)

        assert response.status_code == unsigned.status_code == 401
        assert response.json()["code"] == "provider_signature_invalid"
        assert await suppressed(db, admin_actor.workspace_id) == {}
        assert (await counters(db, str(hook["id"])))["received"] == 0

    async def test_an_old_signature_is_refused(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        signer = SendGridSigner()
        hook = await create_webhook(client, admin_actor, "sendgrid", public_key=signer.public_key)
        body = json.dumps(_sendgrid_events("<x@a.example>")).encode()

        response = await client.post(
            hook_path(hook),
            content=body,
            headers=signer.headers(body, int(time.time()) - 3 * 86400),
        )

        assert response.status_code == 401
        assert response.json()["code"] == "provider_request_stale"
        assert await suppressed(db, admin_actor.workspace_id) == {}

    async def test_a_replayed_batch_does_not_act_twice(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        signer = SendGridSigner()
        hook = await create_webhook(client, admin_actor, "sendgrid", public_key=signer.public_key)
        body = json.dumps(_sendgrid_events("<x@a.example>")).encode()
        headers = signer.headers(body)

        await client.post(hook_path(hook), content=body, headers=headers)
        again = await client.post(hook_path(hook), content=body, headers=headers)

        assert again.json() == {"received": 4, "applied": 0, "ignored": 1, "duplicates": 3}
        assert len(await events_of(db, admin_actor.workspace_id, "message.bounced")) == 1

    async def test_signed_malformed_json_is_a_400(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        signer = SendGridSigner()
        hook = await create_webhook(client, admin_actor, "sendgrid", public_key=signer.public_key)
        body = b'[{"event": "bounce",'

        response = await client.post(hook_path(hook), content=body, headers=signer.headers(body))

        assert response.status_code == 400
        assert response.json()["code"] == "malformed_payload"


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class TestPostmark:
    async def test_hard_bounce_with_our_metadata_acts_on_the_message(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        hook = await create_webhook(client, admin_actor, "postmark")
        assert hook["url_with_credentials"].startswith("http://pm_")
        message = await make_message(db, admin_actor.workspace_id, "ada@a.example")
        payload = {
            "RecordType": "Bounce",
            "ID": 4323372036854775807,
            "Type": "HardBounce",
            "TypeCode": 1,
            "Name": "Hard bounce",
            "MessageID": str(uuid.uuid4()),
            "ServerID": 23,
            "MessageStream": "outbound",
            "Description": "The server was unable to deliver your message (ex: unknown user, "
            "mailbox not found).",
            "Details": "Test bounce details",
            "Email": "ada@a.example",
            "From": "news@a.example",
            "BouncedAt": "2026-11-27T10:00:00Z",
            "DumpAvailable": True,
            "Inactive": True,
            "CanActivate": True,
            "Subject": "Hi",
            "Metadata": {"sendstream_message_id": str(message.id)},
        }

        response = await client.post(
            hook_path(hook), json=payload, headers=_basic(hook["username"], hook["password"])
        )

        assert response.status_code == 200, response.text
        assert await suppressed(db, admin_actor.workspace_id) == {"ada@a.example": "bounced"}
        assert await message_status(db, message.id) == "bounced"

    async def test_spam_complaint_suppresses_as_complained(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        hook = await create_webhook(client, admin_actor, "postmark")
        payload = {
            "RecordType": "SpamComplaint",
            "ID": 42,
            "Type": "SpamComplaint",
            "TypeCode": 512,
            "MessageID": str(uuid.uuid4()),
            "Email": "bob@a.example",
            "BouncedAt": "2026-11-27T10:00:00Z",
            "MessageStream": "outbound",
        }

        response = await client.post(
            hook_path(hook), json=payload, headers=_basic(hook["username"], hook["password"])
        )

        assert response.status_code == 200, response.text
        assert await suppressed(db, admin_actor.workspace_id) == {"bob@a.example": "complained"}

    async def test_wrong_or_missing_credentials_are_refused(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        hook = await create_webhook(client, admin_actor, "postmark")
        payload = {"RecordType": "SpamComplaint", "ID": 1, "Email": "bob@a.example"}

        wrong = await client.post(
            hook_path(hook), json=payload, headers=_basic(hook["username"], "guess")
        )
        missing = await client.post(hook_path(hook), json=payload)

        assert wrong.status_code == missing.status_code == 401
        assert wrong.headers["www-authenticate"].startswith("Basic")
        assert await suppressed(db, admin_actor.workspace_id) == {}


class TestMailgun:
    key = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"

    def _failed(self, message_id: str, severity: str = "permanent") -> dict[str, object]:
        return {
            "event": "failed",
            "id": uuid.uuid4().hex,
            "timestamp": time.time(),
            "severity": severity,
            "reason": "bounce" if severity == "permanent" else "generic",
            "recipient": "ada@a.example",
            "log-level": "error",
            "delivery-status": {
                "attempt-no": 1,
                "code": 550 if severity == "permanent" else 452,
                "message": "5.1.1 The email account that you tried to reach does not exist"
                if severity == "permanent"
                else "4.2.2 mailbox full",
                "description": "",
                "mx-host": "mx.a.example",
            },
            "message": {
                "headers": {
                    "to": "ada@a.example",
                    "from": "news@a.example",
                    "message-id": message_id,
                    "subject": "Hi",
                }
            },
        }

    async def test_permanent_failure_suppresses_and_matches_the_header(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        hook = await create_webhook(client, admin_actor, "mailgun", signing_key=self.key)
        message = await make_message(db, admin_actor.workspace_id, "ada@a.example")
        # Mailgun echoes the Message-ID without its angle brackets.
        body = mailgun_body(self.key, self._failed(message.message_id_header.strip("<>")))

        response = await client.post(hook_path(hook), json=body)

        assert response.status_code == 200, response.text
        assert await suppressed(db, admin_actor.workspace_id) == {"ada@a.example": "bounced"}
        assert await message_status(db, message.id) == "bounced"

    async def test_temporary_failure_is_a_delay_that_suppresses_nothing(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        hook = await create_webhook(client, admin_actor, "mailgun", signing_key=self.key)
        body = mailgun_body(self.key, self._failed("<x@a.example>", "temporary"))

        response = await client.post(hook_path(hook), json=body)

        assert response.status_code == 200, response.text
        assert await suppressed(db, admin_actor.workspace_id) == {}
        [delayed] = await events_of(db, admin_actor.workspace_id, "message.delayed")
        assert delayed["reason"] == "mailbox_full"

    async def test_a_replayed_token_is_refused_with_406(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        hook = await create_webhook(client, admin_actor, "mailgun", signing_key=self.key)
        body = mailgun_body(self.key, self._failed("<x@a.example>"))

        first = await client.post(hook_path(hook), json=body)
        # The same signed token around another event: still a replay.
        replay = {**body, "event-data": self._failed("<y@a.example>")}
        again = await client.post(hook_path(hook), json=replay)

        assert first.status_code == 200
        assert again.status_code == 406
        assert again.json()["code"] == "provider_replay"
        assert len(await events_of(db, admin_actor.workspace_id, "message.bounced")) == 1

    async def test_bad_signature_and_old_timestamp_are_refused(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        hook = await create_webhook(client, admin_actor, "mailgun", signing_key=self.key)
        forged = mailgun_body("another-key-entirely", self._failed("<x@a.example>"))
        old = mailgun_body(
            self.key, self._failed("<x@a.example>"), timestamp=int(time.time()) - 2 * 86400
        )

        bad = await client.post(hook_path(hook), json=forged)
        stale = await client.post(hook_path(hook), json=old)

        assert bad.status_code == 401
        assert stale.status_code == 401
        assert stale.json()["code"] == "provider_request_stale"
        assert await suppressed(db, admin_actor.workspace_id) == {}
