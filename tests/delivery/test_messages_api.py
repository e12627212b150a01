"""The send API over HTTP: queueing (202 with ids at once), one message per
`to` address, every refusal with its own code and nothing queued, batches
checked item by item, idempotent retries, and the reads."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from sendstream.contacts.suppression import suppress
from sendstream.core.db import Database
from sendstream.core.settings import Settings, override_settings
from tests.delivery.messages_helpers import (
    DOMAIN,
    SENDER,
    events_of,
    make_template,
    verified_domain,
    with_delivery,
)
from tests.fixtures.actors import Actor, MakeActor


@pytest.fixture
async def sender(db: Database, admin_actor: Actor) -> Actor:
    """admin_actor's workspace with a verified sending domain."""
    await verified_domain(db, admin_actor.workspace_id)
    return admin_actor


@contextmanager
def delivery_settings(settings: Settings, **delivery: Any) -> Iterator[None]:
    override_settings(with_delivery(settings, **delivery))
    try:
        yield
    finally:
        override_settings(settings)


def inline(**fields: Any) -> dict[str, Any]:
    return {"from": SENDER, "to": "ada@example.com", "subject": "Hi", "text": "Hello", **fields}


async def send(client: httpx.AsyncClient, actor: Actor, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/v1/messages", headers=actor.headers, json=body)


async def queued(db: Database) -> int:
    async with db.engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM messages")) or 0)


async def refused(
    client: httpx.AsyncClient, actor: Actor, db: Database, body: dict[str, Any], code: str
) -> str:
    response = await send(client, actor, body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code, response.text
    assert await queued(db) == 0
    detail: str = response.json()["detail"]
    return detail


class TestSendOne:
    async def test_inline_message_is_queued_at_once_with_its_id(
        self, client: httpx.AsyncClient, sender: Actor, db: Database
    ) -> None:
        response = await send(client, sender, inline())
        assert response.status_code == 202, response.text
        [message] = response.json()["messages"]
        assert message["status"] == "queued"
        assert message["to"] == "ada@example.com"
        assert message["message_id"].endswith(f"@{DOMAIN}>")

        read = await client.get(f"/v1/messages/{message['id']}", headers=sender.headers)
        assert read.status_code == 200
        body = read.json()
        assert body["status"] == "queued"
        assert body["from"] == {"email": f"news@{DOMAIN}", "name": "Acme"}
        assert body["to"] == {"email": "ada@example.com", "name": None}
        assert body["stream"] == "transactional"
        assert (body["track_opens"], body["track_clicks"]) == (False, False)
        assert body["attempts"] == 0
        assert body["next_attempt_at"] is not None
        assert [e["type"] for e in body["events"]] == ["message.queued"]
        assert body["events"][0]["data"]["to"] == "ada@example.com"

    async def test_each_to_address_gets_its_own_message_with_the_same_copies(
        self, client: httpx.AsyncClient, sender: Actor, db: Database
    ) -> None:
        response = await send(
            client,
            sender,
            inline(
                to=["ada@example.com", {"email": "bob@example.com", "name": "Bob"}, "C <c@x.io>"],
                cc=["boss@example.com"],
                bcc=[{"email": "audit@example.com"}],
                tags=["welcome"],
                metadata={"order": 42},
            ),
        )
        assert response.status_code == 202, response.text
        ids = [m["id"] for m in response.json()["messages"]]
        assert len(set(ids)) == 3
        for message_id in ids:
            read = (await client.get(f"/v1/messages/{message_id}", headers=sender.headers)).json()
            assert read["cc"] == [{"email": "boss@example.com", "name": None}]
            assert read["bcc"] == [{"email": "audit@example.com", "name": None}]
            assert (read["tags"], read["metadata"]) == (["welcome"], {"order": 42})
        names = {m["to"] for m in response.json()["messages"]}
        assert names == {"ada@example.com", "bob@example.com", "c@x.io"}
        assert len(await events_of(db, ids[0])) == 1

    async def test_marketing_tracks_by_default_and_transactional_does_not(
        self, client: httpx.AsyncClient, sender: Actor, settings: Settings
    ) -> None:
        marketing = await send(client, sender, inline(stream="marketing"))
        [m] = marketing.json()["messages"]
        read = (await client.get(f"/v1/messages/{m['id']}", headers=sender.headers)).json()
        assert (read["track_opens"], read["track_clicks"]) == (True, True)

        asked = await send(client, sender, inline(track_opens=True))
        [t] = asked.json()["messages"]
        read = (await client.get(f"/v1/messages/{t['id']}", headers=sender.headers)).json()
        assert (read["track_opens"], read["track_clicks"]) == (True, False)

        tracking = settings.tracking.model_copy(update={"enabled": False})
        override_settings(settings.model_copy(update={"tracking": tracking}))
        try:
            off = await send(client, sender, inline(stream="marketing", track_clicks=True))
        finally:
            override_settings(settings)
        [o] = off.json()["messages"]
        read = (await client.get(f"/v1/messages/{o['id']}", headers=sender.headers)).json()
        assert (read["track_opens"], read["track_clicks"]) == (False, False)

    async def test_template_and_sender_come_from_the_template_version(
        self, client: httpx.AsyncClient, sender: Actor, db: Database
    ) -> None:
        await make_template(
            db,
            sender.workspace_id,
            text="Hello {{ name }}",
            from_email=f"hello@{DOMAIN}",
            from_name="Acme Hello",
        )
        response = await send(
            client,
            sender,
            {"template": "welcome", "to": {"email": "ada@example.com", "data": {"name": "Ada"}}},
        )
        assert response.status_code == 202, response.text
        [m] = response.json()["messages"]
        read = (await client.get(f"/v1/messages/{m['id']}", headers=sender.headers)).json()
        assert read["from"] == {"email": f"hello@{DOMAIN}", "name": "Acme Hello"}
        assert read["template_version_id"] is not None
        assert read["subject"] is None

    async def test_send_at_schedules_the_message(
        self, client: httpx.AsyncClient, sender: Actor
    ) -> None:
        when = datetime.now(UTC) + timedelta(hours=2)
        response = await send(client, sender, inline(send_at=when.isoformat()))
        assert response.status_code == 202
        [m] = response.json()["messages"]
        assert datetime.fromisoformat(m["send_at"]) == when
        read = (await client.get(f"/v1/messages/{m['id']}", headers=sender.headers)).json()
        assert datetime.fromisoformat(read["next_attempt_at"]) == when

    async def test_a_read_only_key_cannot_send(
        self, client: httpx.AsyncClient, sender: Actor, member_actor: Actor, db: Database
    ) -> None:
        response = await send(client, member_actor, inline())
        assert response.status_code == 403
        assert response.json()["code"] == "missing_scope"
        assert await queued(db) == 0


class TestRefusals:
    async def test_unknown_template(
        self, client: httpx.AsyncClient, sender: Actor, db: Database
    ) -> None:
        body = {"from": SENDER, "to": "ada@example.com", "template": "nope"}
        await refused(client, sender, db, body, "template_not_found")

    async def test_strict_template_missing_a_variable_names_the_recipient(
        self, client: httpx.AsyncClient, sender: Actor, db: Database
    ) -> None:
        await make_template(db, sender.workspace_id, text="Hello {{ name }}", strict=True)
        body = {
            "from": SENDER,
            "template": "welcome",
            "to": [
                {"email": "ada@example.com", "data": {"name": "Ada"}},
                {"email": "bob@example.com"},
            ],
        }
        detail = await refused(client, sender, db, body, "template_undefined_variable")
        assert "bob@example.com" in detail
        assert "name" in detail

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("to", "not an address"),
            ("to", "a@b, c@d.example"),
            ("cc", ["ada@@example.com"]),
            ("to", "jürgen@example.com"),  # would need SMTPUTF8
            ("from", "news@"),
            ("reply_to", "nobody"),
        ],
    )
    async def test_bad_address(
        self, client: httpx.AsyncClient, sender: Actor, db: Database, field: str, value: Any
    ) -> None:
        detail = await refused(client, sender, db, inline(**{field: value}), "invalid_address")
        assert detail.startswith(field)

    async def test_attachment_over_the_limit(
        self, client: httpx.AsyncClient, sender: Actor, db: Database, settings: Settings
    ) -> None:
        content = base64.b64encode(b"x" * 2001).decode()
        body = inline(attachments=[{"content": content, "filename": "big.bin"}])
        with delivery_settings(settings, max_attachment_bytes=2000):
            detail = await refused(client, sender, db, body, "attachment_too_large")
        assert "2001" in detail

    async def test_attachments_over_the_total_limit(
        self, client: httpx.AsyncClient, sender: Actor, db: Database, settings: Settings
    ) -> None:
        content = base64.b64encode(b"x" * 1500).decode()
        files = [{"content": content, "filename": f"{i}.bin"} for i in range(2)]
        with delivery_settings(settings, max_attachments_total_bytes=2000):
            await refused(client, sender, db, inline(attachments=files), "attachment_too_large")

    async def test_attachment_that_is_not_base64(
        self, client: httpx.AsyncClient, sender: Actor, db: Database
    ) -> None:
        body = inline(attachments=[{"content": "not base64!", "filename": "a.txt"}])
        await refused(client, sender, db, body, "invalid_attachment")

    async def test_suppressed_recipient(
        self, client: httpx.AsyncClient, sender: Actor, db: Database
    ) -> None:
        async with db.session() as session:
            await suppress(session, sender.workspace_id, "bob@example.com", "bounced")
        body = inline(to=["ada@example.com", "Bob@Example.com"])
        detail = await refused(client, sender, db, body, "recipient_suppressed")
        assert "bounced" in detail

    async def test_suppressed_copy_refuses_too(
        self, client: httpx.AsyncClient, sender: Actor, db: Database
    ) -> None:
        async with db.session() as session:
            await suppress(session, sender.workspace_id, "boss@example.com", "complained")
        body = inline(bcc=["boss@example.com"])
        detail = await refused(client, sender, db, body, "recipient_suppressed")
        assert detail.startswith("bcc[0]")

    async def test_transactional_mail_passes_an_unsubscribe_but_marketing_does_not(
        self, client: httpx.AsyncClient, sender: Actor, db: Database
    ) -> None:
        async with db.session() as session:
            await suppress(session, sender.workspace_id, "ada@example.com", "unsubscribed")
        await refused(client, sender, db, inline(stream="marketing"), "recipient_suppressed")
        response = await send(client, sender, inline(stream="transactional"))
        assert response.status_code == 202, response.text

    async def test_a_contact_unsubscribed_through_the_api_gets_no_marketing_mail(
        self, client: httpx.AsyncClient, sender: Actor, db: Database
    ) -> None:
        made = await client.post(
            "/v1/contacts",
            headers=sender.headers,
            json={"email": "Ada@Example.com", "status": "unsubscribed"},
        )
        assert made.status_code == 201, made.text

        detail = await refused(
            client, sender, db, inline(stream="marketing"), "recipient_suppressed"
        )
        assert "unsubscribed" in detail
        response = await send(client, sender, inline(stream="transactional"))
        assert response.status_code == 202, response.text

    async def test_setting_a_contact_active_again_lifts_an_unsubscribe_link_s_entry(
        self, client: httpx.AsyncClient, sender: Actor, db: Database
    ) -> None:
        made = await client.post(
            "/v1/contacts", headers=sender.headers, json={"email": "ada@example.com"}
        )
        assert made.status_code == 201, made.text
        contact_id = made.json()["id"]
        async with db.session() as session:
            await suppress(session, sender.workspace_id, "ada@example.com", "unsubscribed")
        unsubscribed = await client.patch(
            f"/v1/contacts/{contact_id}", headers=sender.headers, json={"status": "unsubscribed"}
        )
        assert unsubscribed.status_code == 200, unsubscribed.text
        await refused(client, sender, db, inline(stream="marketing"), "recipient_suppressed")

        again = await client.patch(
            f"/v1/contacts/{contact_id}", headers=sender.headers, json={"status": "active"}
        )
        assert again.status_code == 200, again.text

        response = await send(client, sender, inline(stream="marketing"))
        assert response.status_code == 202, response.text

    @pytest.mark.parametrize("reason", ["bounced", "complained", "erased", "manual"])
    async def test_transactional_mail_never_passes_other_suppressions(
        self, client: httpx.AsyncClient, sender: Actor, db: Database, reason: str
    ) -> None:
        async with db.session() as session:
            await suppress(session, sender.workspace_id, "ada@example.com", reason)
        await refused(client, sender, db, inline(), "recipient_suppressed")

    @pytest.mark.parametrize(
        "body",
        [
            inline(headers={"X-Campaign": "spring\r\nBcc: victim@example.com"}),
            inline(headers={"X-Evil\nBcc": "x"}),
            inline(subject="Hi\r\nBcc: victim@example.com"),
            inline(**{"from": {"email": f"news@{DOMAIN}", "name": "Acme\r\nBcc: v@x.io"}}),
            inline(to="Ada\n <ada@example.com>"),
            inline(attachments=[{"content": "eA==", "filename": "a\r\n.txt"}]),
        ],
        ids=["header value", "header name", "subject", "display name", "address", "file name"],
    )
    async def test_header_injection(
        self, client: httpx.AsyncClient, sender: Actor, db: Database, body: dict[str, Any]
    ) -> None:
        await refused(client, sender, db, body, "header_injection")

    @pytest.mark.parametrize(
        "name",
        ["From", "bcc", "List-Unsubscribe", "Content-Type", "DKIM-Signature", "X-Sendstream-Id"],
    )
    async def test_reserved_header(
        self, client: httpx.AsyncClient, sender: Actor, db: Database, name: str
    ) -> None:
        await refused(client, sender, db, inline(headers={name: "x"}), "reserved_header")

    async def test_unverified_sending_domain(
        self, client: httpx.AsyncClient, admin_actor: Actor, db: Database
    ) -> None:
        await verified_domain(db, admin_actor.workspace_id, status="pending")
        await refused(client, admin_actor, db, inline(), "domain_not_verified")

    async def test_unknown_sending_domain(
        self, client: httpx.AsyncClient, sender: Actor, db: Database
    ) -> None:
        body = inline(**{"from": "someone@elsewhere.example"})
        await refused(client, sender, db, body, "unknown_sending_domain")

    async def test_subdomain_of_a_verified_domain_may_send(
        self, client: httpx.AsyncClient, sender: Actor
    ) -> None:
        response = await send(client, sender, inline(**{"from": f"news@mail.{DOMAIN}"}))
        assert response.status_code == 202, response.text

    @pytest.mark.parametrize(
        ("body", "code"),
        [
            (
                {"from": SENDER, "to": "ada@example.com", "subject": "only a subject"},
                "content_required",
            ),
            (inline(template="welcome"), "content_conflict"),
            (
                {"from": SENDER, "to": "a@example.com", "text": "x", "version": 2},
                "content_conflict",
            ),
            ({"to": "ada@example.com", "text": "no sender"}, "from_required"),
            (
                inline(send_at=(datetime.now(UTC) + timedelta(days=31)).isoformat()),
                "send_at_too_far",
            ),
            (inline(list_id=str(uuid.uuid4())), "list_not_found"),
            (inline(data={"x": "nul\u0000"}), "invalid_data"),
        ],
        ids=["no body", "both", "version alone", "no sender", "far", "list", "nul"],
    )
    async def test_request_rules(
        self,
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
        body: dict[str, Any],
        code: str,
    ) -> None:
        await refused(client, sender, db, body, code)

    async def test_too_many_recipients_for_one_request(
        self, client: httpx.AsyncClient, sender: Actor, db: Database, settings: Settings
    ) -> None:
        body = inline(to=[f"p{i}@example.com" for i in range(4)])
        with delivery_settings(settings, max_messages_per_request=3):
            await refused(client, sender, db, body, "too_many_messages")

    async def test_template_data_over_the_limit(
        self, client: httpx.AsyncClient, sender: Actor, db: Database, settings: Settings
    ) -> None:
        body = inline(to={"email": "ada@example.com", "data": {"notes": "x" * 600}})
        with delivery_settings(settings, max_data_bytes=500):
            detail = await refused(client, sender, db, body, "data_too_large")
        assert detail.startswith("to.data")

    async def test_content_stored_once_per_recipient_counts_against_the_request(
        self, client: httpx.AsyncClient, sender: Actor, db: Database, settings: Settings
    ) -> None:
        body = inline(to=[f"p{i}@example.com" for i in range(10)], html="<p>" + "x" * 1000)
        with delivery_settings(settings, max_request_content_bytes=5000):
            await refused(client, sender, db, body, "request_too_large")
            one = await send(client, sender, {**body, "to": "p1@example.com"})
        assert one.status_code == 202

    async def test_unknown_fields_are_refused(
        self, client: httpx.AsyncClient, sender: Actor, db: Database
    ) -> None:
        response = await send(client, sender, inline(subjcet="typo"))
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"
        assert await queued(db) == 0


class TestBatch:
    async def test_valid_items_are_queued_and_each_refusal_has_its_code(
        self, client: httpx.AsyncClient, sender: Actor, db: Database
    ) -> None:
        items = [
            inline(to=["a@example.com", "b@example.com"]),
            inline(to="not an address"),
            {"from": SENDER, "text": "no recipient"},
            inline(headers={"Subject": "x"}),
            inline(to="d@example.com", template="missing"),
            inline(to="e@example.com"),
        ]
        response = await client.post(
            "/v1/messages/batch", headers=sender.headers, json={"messages": items}
        )
        assert response.status_code == 202, response.text
        body = response.json()
        assert (body["queued"], body["rejected"]) == (3, 4)
        results = body["results"]
        assert [r["index"] for r in results] == list(range(6))
        assert [r["code"] for r in results] == [
            None,
            "invalid_address",
            "validation_error",
            "reserved_header",
            "content_conflict",
            None,
        ]
        assert len(results[0]["messages"]) == 2
        assert results[1]["messages"] == []
        assert await queued(db) == 3

    async def test_attachment_content_is_stored_once_for_the_whole_batch(
        self, client: httpx.AsyncClient, sender: Actor, db: Database
    ) -> None:
        pdf = {"content": base64.b64encode(b"%PDF-1.4 same file").decode(), "filename": "a.pdf"}
        items = [
            inline(to=f"p{i}@example.com", attachments=[{**pdf, "content_type": "application/pdf"}])
            for i in range(5)
        ]
        response = await client.post(
            "/v1/messages/batch", headers=sender.headers, json={"messages": items}
        )
        assert response.json()["queued"] == 5
        async with db.engine.connect() as conn:
            blobs = await conn.scalar(text("SELECT count(*) FROM attachment_blobs"))
            links = await conn.scalar(text("SELECT count(*) FROM message_attachments"))
        assert (blobs, links) == (1, 5)
        some = response.json()["results"][0]["messages"][0]["id"]
        read = (await client.get(f"/v1/messages/{some}", headers=sender.headers)).json()
        assert read["attachments"][0] | {"sha256": None} == {
            "filename": "a.pdf",
            "content_type": "application/pdf",
            "content_id": None,
            "size_bytes": 18,
            "sha256": None,
        }

    async def test_each_message_has_one_queued_event_in_order_with_gapless_positions(
        self, client: httpx.AsyncClient, sender: Actor, db: Database
    ) -> None:
        later = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
        items = [
            inline(to=["a@example.com", "b@example.com"], tags=["t1"], metadata={"k": 1}),
            inline(to="c@example.com", send_at=later.isoformat(), stream="marketing"),
            inline(to="d@example.com", subject="Über"),
        ]
        response = await client.post(
            "/v1/messages/batch", headers=sender.headers, json={"messages": items}
        )
        assert response.json()["queued"] == 4, response.text
        ids = [m["id"] for r in response.json()["results"] for m in r["messages"]]
        async with db.engine.connect() as conn:
            events = (
                await conn.execute(
                    text(
                        "SELECT position, subject_id, data FROM events "
                        "WHERE workspace_id = :w AND type = 'message.queued' ORDER BY position"
                    ),
                    {"w": sender.workspace_id},
                )
            ).all()
            last = await conn.scalar(
                text("SELECT last_position FROM event_counters WHERE workspace_id = :w"),
                {"w": sender.workspace_id},
            )
            due = dict(
                (
                    await conn.execute(
                        text(
                            "SELECT id::text, next_attempt_at = created_at FROM messages "
                            "WHERE workspace_id = :w"
                        ),
                        {"w": sender.workspace_id},
                    )
                ).all()
            )
            scheduled = await conn.scalar(
                text("SELECT next_attempt_at FROM messages WHERE id = :id"), {"id": ids[2]}
            )
        # Positions follow the messages' order, with no gap to the counter.
        assert [e.subject_id for e in events] == ids
        positions = [e.position for e in events]
        assert positions == list(range(positions[0], positions[0] + 4))
        assert last == positions[-1]
        assert events[0].data == {
            "message_id": ids[0],
            "to": "a@example.com",
            "contact_id": None,
            "from": f"news@{DOMAIN}",
            "stream": "transactional",
            "template_version_id": None,
            "subject": "Hi",
            "send_at": None,
            "tags": ["t1"],
            "metadata": {"k": 1},
            "test": False,
        }
        assert events[2].data["send_at"] == later.isoformat()
        assert events[2].data["stream"] == "marketing"
        assert events[3].data["subject"] == "Über"
        # Due now: the transaction's clock; scheduled: its send_at.
        assert [due[i] for i in ids] == [True, True, False, True]
        assert scheduled == later


class TestIdempotency:
    async def test_a_retried_send_with_the_same_key_queues_once(
        self, client: httpx.AsyncClient, sender: Actor, db: Database
    ) -> None:
        headers = {**sender.headers, "Idempotency-Key": "order-42-receipt"}
        first = await client.post("/v1/messages", headers=headers, json=inline())
        again = await client.post("/v1/messages", headers=headers, json=inline())
        assert first.status_code == again.status_code == 202
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
        assert await queued(db) == 1

    async def test_a_refused_send_leaves_the_key_free(
        self, client: httpx.AsyncClient, sender: Actor, db: Database
    ) -> None:
        headers = {**sender.headers, "Idempotency-Key": "k-1"}
        bad = await client.post("/v1/messages/batch", headers=headers, json={"messages": []})
        assert bad.status_code == 422
        good = await client.post(
            "/v1/messages/batch", headers=headers, json={"messages": [inline()]}
        )
        assert good.status_code == 202
        assert await queued(db) == 1


class TestReads:
    async def test_list_filters_and_pages_newest_first(
        self, client: httpx.AsyncClient, sender: Actor
    ) -> None:
        sent = []
        for i in range(5):
            response = await send(
                client,
                sender,
                inline(
                    to=f"p{i}@example.com",
                    tags=["even"] if i % 2 == 0 else [],
                    stream="marketing" if i == 4 else "transactional",
                ),
            )
            sent.append(response.json()["messages"][0]["id"])
        page = await client.get("/v1/messages", headers=sender.headers, params={"limit": 2})
        first = page.json()
        assert [m["id"] for m in first["data"]] == sent[::-1][:2]
        rest = await client.get(
            "/v1/messages",
            headers=sender.headers,
            params={"limit": 10, "cursor": first["next_cursor"]},
        )
        assert [m["id"] for m in rest.json()["data"]] == sent[::-1][2:]
        assert rest.json()["next_cursor"] is None

        async def ids(**params: str) -> list[str]:
            found = await client.get("/v1/messages", headers=sender.headers, params=params)
            assert found.status_code == 200, found.text
            return [m["id"] for m in found.json()["data"]]

        assert await ids(tag="even") == [sent[4], sent[2], sent[0]]
        assert await ids(stream="marketing") == [sent[4]]
        assert await ids(to="P3@EXAMPLE.com") == [sent[3]]
        assert await ids(to="nobody") == []
        assert await ids(status="queued") == sent[::-1]
        assert await ids(status="sent") == []
        future = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
        assert await ids(created_after=future) == []
        assert await ids(created_before=future) == sent[::-1]

    async def test_another_workspaces_message_is_not_found(
        self, client: httpx.AsyncClient, sender: Actor, make_actor: MakeActor
    ) -> None:
        [m] = (await send(client, sender, inline())).json()["messages"]
        other = await make_actor(scopes=["admin"], name="other")
        response = await client.get(f"/v1/messages/{m['id']}", headers=other.headers)
        assert response.status_code == 404
        assert response.json()["code"] == "message_not_found"
        raw = await client.get(f"/v1/messages/{m['id']}/raw", headers=other.headers)
        assert raw.json()["code"] == "message_not_found"

    async def test_raw_of_a_message_not_captured_yet(
        self, client: httpx.AsyncClient, sender: Actor
    ) -> None:
        [m] = (await send(client, sender, inline())).json()["messages"]
        raw = await client.get(f"/v1/messages/{m['id']}/raw", headers=sender.headers)
        assert raw.status_code == 404
        assert raw.json()["code"] == "message_not_captured"


class TestNulInText:
    async def test_a_nul_character_in_a_filter_is_a_clear_422_not_a_500(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await client.get(
            "/v1/messages",
            params={"to": "\x00a@example.com", "tag": "x\x00"},
            headers=admin_actor.headers,
        )
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "invalid_text"
