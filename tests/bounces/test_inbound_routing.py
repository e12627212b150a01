"""Inbound routing end to end on loopback: aiosmtplib -> the MX (RCPT checks
the workspace's domain and routes) -> `inbound.process` -> an inbound email
with attachments -> `inbound.received` delivered to a real webhook receiver,
attachments downloadable through the API."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid

import dkim
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from standardwebhooks import Webhook

from sendstream.core.db import Database
from sendstream.core.settings import Settings
from tests.bounces.action_support import mailed, rows
from tests.bounces.inbound_support import (
    add_domain,
    add_route,
    mail,
    rcpt_code,
    received,
    send,
    settled,
    unverified_ok,
)
from tests.bounces.mx_support import StartMx, start_mx
from tests.fixtures.actors import Actor
from tests.fixtures.dns import DnsServer
from tests.fixtures.job_worker import WorkerHarness, workers
from tests.webhooks.delivery_helpers import create_endpoint, installed, running, webhook_settings
from tests.webhooks.receiver import receiving

__all__ = ["start_mx", "unverified_ok", "workers"]  # fixtures used below

DOMAIN = "in.acme.example"


def _attachment_mail(to: str, big: bytes, small: bytes) -> bytes:
    return (
        "From: Ada <ada@sender.example>\r\n"
        f"To: {to}\r\nCc: Bob <bob@cc.example>\r\nSubject: Files\r\n"
        "Message-ID: <files@sender.example>\r\n"
        'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
        '--B\r\nContent-Type: multipart/alternative; boundary="A"\r\n\r\n'
        "--A\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached\r\n"
        "--A\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>See <b>attached</b></p>\r\n"
        "--A--\r\n"
        '--B\r\nContent-Type: application/pdf; name="r.pdf"\r\n'
        'Content-Disposition: attachment; filename="r.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
        f"{base64.b64encode(small).decode()}\r\n"
        "--B\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\n"
        'Content-Disposition: inline; filename="huge.png"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
        f"{base64.encodebytes(big).decode()}\r\n"
        "--B--\r\n"
    ).encode()


class TestEndToEnd:
    async def test_mail_reaches_the_webhook_and_its_attachment_downloads(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        db: Database,
        settings: Settings,
        start_mx: StartMx,
        workers: WorkerHarness,
        unverified_ok: Settings,
    ) -> None:
        saved = settings.bounces.inbound_max_attachment_bytes
        settings.bounces.inbound_max_attachment_bytes = 4096
        try:
            domain = await add_domain(client, admin_actor, DOMAIN)
            route = await add_route(client, admin_actor, domain["id"], "support")
            small, big = b"%PDF-1.4 tiny", b"\x89PNG" + b"x" * 10_000
            mx = await start_mx()
            assert mx.port is not None
            await workers.start()
            fast = webhook_settings(settings)
            with installed(fast):
                async with receiving() as receiver:
                    endpoint = await create_endpoint(
                        client, admin_actor, receiver.url("/ok"), event_types=["inbound.received"]
                    )
                    raw_mail = _attachment_mail(f"support@{DOMAIN}", big, small)
                    await send(mx.port, raw_mail, [f"Support@{DOMAIN}"])
                    async with running(fast, db):
                        got = await receiver.wait_for("/ok", 1)
        finally:
            settings.bounces.inbound_max_attachment_bytes = saved
        payload = Webhook(endpoint["secret"]).verify(got[0].body, got[0].headers)
        assert payload["type"] == "inbound.received"
        data = payload["data"]
        assert data["route"] == {"id": route["id"], "name": "support", "pattern": "support"}
        assert data["from"] == {"address": "ada@sender.example", "name": "Ada"}
        assert data["cc"] == [{"address": "bob@cc.example", "name": "Bob"}]
        assert data["subject"] == "Files"
        assert data["text"].strip() == "See attached"
        assert "<b>attached</b>" in data["html"]
        assert data["in_reply_to"] is None
        assert data["auth"]["dkim"] == "none"
        pdf, png = data["attachments"]
        assert (pdf["filename"], pdf["omitted"], pdf["size"]) == ("r.pdf", False, len(small))
        assert png["omitted"] is True
        assert png["url"] is None
        assert png["size"] == len(big)
        assert png["sha256"] == hashlib.sha256(big).hexdigest()
        assert png["content_id"] == "<logo@x>"
        download = await client.get(pdf["url"], headers=admin_actor.headers)
        assert download.status_code == 200
        assert download.content == small
        assert download.headers["content-type"] == "application/pdf"
        assert download.headers["content-disposition"].startswith("attachment;")
        omitted = await client.get(
            f"/v1/inbound-emails/{data['id']}/attachments/{png['id']}", headers=admin_actor.headers
        )
        assert omitted.status_code == 410
        assert omitted.json()["code"] == "inbound_attachment_omitted"
        raw = await client.get(data["raw_url"], headers=admin_actor.headers)
        assert raw.status_code == 200
        assert raw.content.startswith(b"Received: from ")
        assert b"Subject: Files" in raw.content
        # No bounce processing ever saw it.
        assert await rows(db, "SELECT id FROM bounce_records") == []


class TestRecipients:
    async def test_unknown_addresses_are_refused_and_routes_decide(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        start_mx: StartMx,
        unverified_ok: Settings,
    ) -> None:
        domain = await add_domain(client, admin_actor, DOMAIN)
        await add_route(client, admin_actor, domain["id"], "support")
        await add_route(client, admin_actor, domain["id"], "reply+*")
        off = await add_route(client, admin_actor, domain["id"], "sales", enabled=False)
        mx = await start_mx()
        assert mx.port is not None
        assert await rcpt_code(mx.port, f"support@{DOMAIN}") == 250
        assert await rcpt_code(mx.port, f"reply+abc@{DOMAIN}") == 250
        assert await rcpt_code(mx.port, f"nobody@{DOMAIN}") == 550
        assert await rcpt_code(mx.port, "support@other.example") == 550
        assert await rcpt_code(mx.port, f"sales@{DOMAIN}") == 550  # disabled
        enabled = await client.patch(
            f"/v1/inbound-routes/{off['id']}", headers=admin_actor.headers, json={"enabled": True}
        )
        assert enabled.status_code == 200
        assert await rcpt_code(mx.port, f"sales@{DOMAIN}") == 250

    async def test_an_unverified_domain_takes_no_mail_until_its_mx_is_verified(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        start_mx: StartMx,
        dns_server: DnsServer,
        settings: Settings,
    ) -> None:
        domain = await add_domain(client, admin_actor, DOMAIN)
        await add_route(client, admin_actor, domain["id"], "*")
        mx = await start_mx()
        assert mx.port is not None
        assert await rcpt_code(mx.port, f"any@{DOMAIN}") == 550
        dns_server.add_mx(DOMAIN, "mx.elsewhere.example")
        wrong = await client.post(
            f"/v1/inbound-domains/{domain['id']}/verify", headers=admin_actor.headers
        )
        assert wrong.json()["status"] == "failed"
        dns_server.clear()
        dns_server.add_mx(DOMAIN, settings.delivery.bounce_domain)
        right = await client.post(
            f"/v1/inbound-domains/{domain['id']}/verify", headers=admin_actor.headers
        )
        assert right.json()["status"] == "verified", right.text
        assert await rcpt_code(mx.port, f"any@{DOMAIN}") == 250

    async def test_a_domain_belongs_to_one_workspace(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        other_workspace_actor: Actor,
    ) -> None:
        await add_domain(client, admin_actor, DOMAIN)
        taken = await client.post(
            "/v1/inbound-domains", headers=other_workspace_actor.headers, json={"name": DOMAIN}
        )
        assert taken.status_code == 409
        assert taken.json()["code"] == "inbound_domain_taken"
        bad = await client.post(
            "/v1/inbound-domains", headers=admin_actor.headers, json={"name": "not a domain"}
        )
        assert bad.status_code == 422
        assert bad.json()["code"] == "invalid_inbound_domain"


class TestRouting:
    async def test_the_lowest_priority_matching_route_wins_and_drop_stores_nothing(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        db: Database,
        start_mx: StartMx,
        workers: WorkerHarness,
        unverified_ok: Settings,
    ) -> None:
        domain = await add_domain(client, admin_actor, DOMAIN)
        catch_all = await add_route(client, admin_actor, domain["id"], "*", priority=500)
        exact = await add_route(client, admin_actor, domain["id"], "billing", priority=10)
        await add_route(client, admin_actor, domain["id"], "noise*", priority=1, action="drop")
        mx = await start_mx()
        assert mx.port is not None
        await workers.start()
        await send(mx.port, mail(to=f"billing@{DOMAIN}"), [f"billing@{DOMAIN}"])
        await send(mx.port, mail(to=f"hello@{DOMAIN}"), [f"hello@{DOMAIN}"])
        await send(mx.port, mail(to=f"noise-1@{DOMAIN}"), [f"noise-1@{DOMAIN}"])
        raw = await settled(db, 3)
        emails = await received(db, 2)
        assert {str(e["route_id"]) for e in emails} == {exact["id"], catch_all["id"]}
        assert sorted(r["status"] for r in raw) == ["processed"] * 3
        assert any("dropped by route" in (r["error"] or "") for r in raw)
        listed = await client.get(
            "/v1/inbound-emails", headers=admin_actor.headers, params={"route_id": exact["id"]}
        )
        assert [e["recipients"] for e in listed.json()["data"]] == [[f"billing@{DOMAIN}"]]

    async def test_another_workspace_never_sees_the_mail(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        other_workspace_actor: Actor,
        db: Database,
        start_mx: StartMx,
        workers: WorkerHarness,
        unverified_ok: Settings,
    ) -> None:
        mine = await add_domain(client, admin_actor, DOMAIN)
        await add_route(client, admin_actor, mine["id"], "*")
        theirs = await add_domain(client, other_workspace_actor, "in.globex.example")
        await add_route(client, other_workspace_actor, theirs["id"], "*")
        mx = await start_mx()
        assert mx.port is not None
        await workers.start()
        # One mail to both workspaces: each gets its own copy with its own recipient.
        await send(
            mx.port,
            mail(to=f"a@{DOMAIN}, b@in.globex.example"),
            [f"a@{DOMAIN}", "b@in.globex.example"],
        )
        emails = await received(db, 2)
        by_workspace = {e["workspace_id"]: e["recipients"] for e in emails}
        assert by_workspace == {
            admin_actor.workspace_id: [f"a@{DOMAIN}"],
            other_workspace_actor.workspace_id: ["b@in.globex.example"],
        }
        mine_id = next(e["id"] for e in emails if e["workspace_id"] == admin_actor.workspace_id)
        foreign = await client.get(
            f"/v1/inbound-emails/{mine_id}", headers=other_workspace_actor.headers
        )
        assert foreign.status_code == 404
        listed = await client.get("/v1/inbound-emails", headers=other_workspace_actor.headers)
        assert [e["id"] for e in listed.json()["data"]] != [str(mine_id)]
        assert str(mine_id) not in listed.text


class TestParsing:
    async def test_malformed_mime_and_a_wrong_charset_still_make_a_record(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        db: Database,
        start_mx: StartMx,
        workers: WorkerHarness,
        unverified_ok: Settings,
    ) -> None:
        domain = await add_domain(client, admin_actor, DOMAIN)
        await add_route(client, admin_actor, domain["id"], "*")
        mx = await start_mx()
        assert mx.port is not None
        await workers.start()
        broken = (
            b"From: =?x-klingon?q?Qapla?= <k@sender.example>\r\nTo: x@"
            + DOMAIN.encode()
            + b"\r\nSubject: caf\xe9\r\n"
            b'Content-Type: multipart/mixed; boundary="never-closed"\r\n\r\n'
            b"--never-closed\r\nContent-Type: text/plain; charset=klingon\r\n\r\n"
            b"caf\xe9 \xff\xfe bytes\r\n"
        )
        await send(mx.port, broken, [f"x@{DOMAIN}"])
        (email,) = await received(db, 1)
        got = await client.get(f"/v1/inbound-emails/{email['id']}", headers=admin_actor.headers)
        assert got.status_code == 200, got.text
        body = got.json()
        assert "bytes" in body["text"]
        assert "\ufffd" in body["text"]
        assert body["from"]["address"] == "k@sender.example"
        assert any("charset" in note for note in body["notes"])


def _dkim_key() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(public).decode()


class TestAuthentication:
    async def test_dkim_signed_mail_passes_and_a_tampered_copy_fails(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        db: Database,
        start_mx: StartMx,
        workers: WorkerHarness,
        unverified_ok: Settings,
        dns_server: DnsServer,
    ) -> None:
        private, public = _dkim_key()
        dns_server.add_txt("sel._domainkey.signer.example", f"v=DKIM1; k=rsa; p={public}")
        dns_server.add_txt("signer.example", "v=spf1 ip4:127.0.0.0/8 -all")
        dns_server.add_txt("_dmarc.signer.example", "v=DMARC1; p=reject")
        domain = await add_domain(client, admin_actor, DOMAIN)
        await add_route(client, admin_actor, domain["id"], "*")
        message = mail(to=f"x@{DOMAIN}", from_="Sig <sig@signer.example>", body="signed body")
        signature = dkim.sign(
            message, b"sel", b"signer.example", private, include_headers=[b"from", b"subject"]
        )
        signed = signature + message
        tampered = signed.replace(b"signed body", b"changed body")
        mx = await start_mx()
        assert mx.port is not None
        await workers.start()
        await send(mx.port, signed, [f"x@{DOMAIN}"], sender="sig@signer.example")
        await received(db, 1)
        await send(mx.port, tampered, [f"y@{DOMAIN}"], sender="other@unsigned.example")
        first, second = await received(db, 2)
        assert (first["dkim"], first["spf"], first["dmarc"]) == ("pass", "pass", "pass")
        assert first["auth_details"]["dkim"]["domains"] == ["signer.example"]
        assert second["dkim"] == "fail"
        assert second["spf"] == "none"  # unsigned.example publishes no SPF
        assert second["dmarc"] == "fail"
        assert second["auth_details"]["dmarc"]["policy"] == "reject"

    async def test_dns_failure_records_temperror_and_keeps_the_mail(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        db: Database,
        start_mx: StartMx,
        workers: WorkerHarness,
        unverified_ok: Settings,
        dns_server: DnsServer,
    ) -> None:
        dns_server.servfail("flaky.example")
        domain = await add_domain(client, admin_actor, DOMAIN)
        await add_route(client, admin_actor, domain["id"], "*")
        mx = await start_mx()
        assert mx.port is not None
        await workers.start()
        await send(mx.port, mail(to=f"x@{DOMAIN}"), [f"x@{DOMAIN}"], sender="a@flaky.example")
        (email,) = await received(db, 1)
        assert email["spf"] == "temperror"


class TestReplies:
    async def test_a_reply_links_to_the_sent_message_and_emits_message_replied(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        db: Database,
        start_mx: StartMx,
        workers: WorkerHarness,
        unverified_ok: Settings,
    ) -> None:
        sent = await mailed(client, db, admin_actor)
        domain = await add_domain(client, admin_actor, DOMAIN)
        await add_route(client, admin_actor, domain["id"], "*")
        mx = await start_mx()
        assert mx.port is not None
        await workers.start()
        header = await rows(
            db, "SELECT message_id_header FROM messages WHERE id = :i", i=sent.message.id
        )
        reply = mail(
            to=f"reply@{DOMAIN}",
            subject="Re: news",
            extra_headers=f"In-Reply-To: {header[0]['message_id_header']}\r\n"
            f"References: <unknown@x> {header[0]['message_id_header']}\r\n"
            "Auto-Submitted: auto-replied\r\n",
        )
        await send(mx.port, reply, [f"reply@{DOMAIN}"])
        (email,) = await received(db, 1)
        assert email["in_reply_to_message_id"] == sent.message.id
        assert str(email["in_reply_to_contact_id"]) == sent.contact_id
        assert email["auto_submitted"] is True
        events = await rows(
            db,
            "SELECT type, data FROM events WHERE workspace_id = :w AND type IN "
            "('inbound.received', 'message.replied') ORDER BY position",
            w=admin_actor.workspace_id,
        )
        assert [e["type"] for e in events] == ["inbound.received", "message.replied"]
        data = (
            events[0]["data"]
            if isinstance(events[0]["data"], dict)
            else json.loads(events[0]["data"])
        )
        assert data["in_reply_to"] == {
            "message_id": str(sent.message.id),
            "contact_id": sent.contact_id,
        }
        assert data["auto_submitted"] is True
        assert await rows(db, "SELECT id FROM bounce_records") == []
        assert uuid.UUID(str(email["id"]))
