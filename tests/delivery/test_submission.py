"""The SMTP submission relay against real clients on loopback (aiosmtplib,
and Python's smtplib as Django uses it), over real TLS: authentication,
what is queued from a message, the refusals and their SMTP codes."""

from __future__ import annotations

import asyncio
import json
import smtplib
import uuid
from typing import Any

import aiosmtplib
import httpx
import pytest
from sqlalchemy import text

from sendstream.contacts.suppression import suppress
from sendstream.core.db import Database, create_database
from sendstream.core.settings import Settings
from sendstream.delivery import compose, mime
from sendstream.delivery.message_service import _check_inline
from sendstream.delivery.smtp_credential_service import LoginRefused
from sendstream.delivery.submission import SubmissionServer
from tests.delivery.messages_helpers import DOMAIN, verified_domain
from tests.delivery.submission_helpers import (
    StartRelay,
    client_context,
    connect,
    create_credential,
    message,
    queued_ids,
    relay_fixture,  # noqa: F401  (fixture `relay`)
    rows,
    start_relay_fixture,  # noqa: F401  (fixture `start_relay`)
    submit,
)
from tests.fixtures.actors import Actor
from tests.fixtures.tcp_proxy import proxied_database


@pytest.fixture
async def sender(db: Database, admin_actor: Actor) -> Actor:
    await verified_domain(db, admin_actor.workspace_id)
    return admin_actor


@pytest.fixture
async def login(client: httpx.AsyncClient, sender: Actor) -> dict[str, Any]:
    return await create_credential(client, sender)


async def refused(call: Any) -> tuple[int, str]:
    with pytest.raises(aiosmtplib.SMTPResponseException) as caught:
        await call
    return caught.value.code, caught.value.message


class TestAuthentication:
    async def test_starttls_and_auth_plain_queue_a_message(
        self, relay: SubmissionServer, login: dict[str, Any], db: Database, sender: Actor
    ) -> None:
        client = await connect(relay, tls="starttls")
        assert "plain" in client.supported_auth_methods
        assert "login" in client.supported_auth_methods
        code, reply = await client.auth_plain(login["username"], login["password"])
        assert code == 235
        code, reply = await submit(client, message())
        await client.quit()

        assert code == 250
        [message_id] = queued_ids(reply)
        [row] = await rows(db, sender.workspace_id)
        assert row["id"] == message_id
        assert (row["status"], row["to_email"], row["subject"]) == (
            "queued",
            "ada@example.com",
            "Hi",
        )
        assert row["text"].strip() == "Hello"

    async def test_auth_login_works_too(
        self, relay: SubmissionServer, login: dict[str, Any]
    ) -> None:
        client = await connect(relay, tls="starttls")
        code, _ = await client.auth_login(login["username"], login["password"])
        assert code == 235
        code, reply = await submit(client, message())
        await client.quit()
        assert code == 250
        assert len(queued_ids(reply)) == 1

    async def test_implicit_tls_port_takes_auth_and_mail(
        self, relay: SubmissionServer, login: dict[str, Any]
    ) -> None:
        client = await connect(relay, tls="implicit", login=login)
        code, reply = await submit(client, message())
        await client.quit()
        assert code == 250
        assert len(queued_ids(reply)) == 1

    async def test_wrong_password_is_535(
        self, relay: SubmissionServer, login: dict[str, Any]
    ) -> None:
        client = await connect(relay)
        code, text_ = await refused(client.auth_plain(login["username"], "not-the-password"))
        await client.quit()
        assert (code, text_) == (535, "5.7.8 Authentication credentials invalid")

    async def test_unknown_username_is_535(self, relay: SubmissionServer) -> None:
        client = await connect(relay)
        code, _ = await refused(client.auth_plain("nobody-here", "whatever"))
        await client.quit()
        assert code == 535

    async def test_mail_without_auth_is_530(self, relay: SubmissionServer) -> None:
        client = await connect(relay)
        code, text_ = await refused(client.mail("app@" + DOMAIN))
        await client.quit()
        assert (code, text_) == (530, "5.7.0 Authentication required")

    async def test_nothing_but_starttls_before_tls(self, relay: SubmissionServer) -> None:
        client = await connect(relay, tls="none")
        assert "starttls" in client.esmtp_extensions
        assert client.supported_auth_methods == []  # AUTH is not offered in clear
        code, text_ = await refused(client.mail("app@" + DOMAIN))
        await client.quit()
        assert (code, text_) == (530, "5.7.0 Must issue a STARTTLS command first")

    async def test_auth_in_clear_is_refused(self, relay: SubmissionServer) -> None:
        client = await connect(relay, tls="none")
        code, text_ = await client.execute_command(b"AUTH", b"PLAIN", b"AGFkYQBzZWNyZXQ=")
        await client.quit()
        assert (code, text_) == (530, "5.7.0 Must issue a STARTTLS command first")

    async def test_plaintext_on_loopback_when_the_dev_setting_allows_it(
        self, start_relay: StartRelay, login: dict[str, Any]
    ) -> None:
        relay = await start_relay(submission_allow_plaintext_loopback=True)
        client = await connect(relay, tls="none", login=login)
        code, _ = await submit(client, message())
        await client.quit()
        assert code == 250

    async def test_revoked_credential_cannot_log_in(
        self,
        relay: SubmissionServer,
        login: dict[str, Any],
        client: httpx.AsyncClient,
        sender: Actor,
    ) -> None:
        response = await client.delete(
            f"/v1/smtp-credentials/{login['id']}", headers=sender.headers
        )
        assert response.status_code == 200
        smtp = await connect(relay)
        code, text_ = await refused(smtp.auth_plain(login["username"], login["password"]))
        await smtp.quit()
        assert code == 535
        assert "revoked" in text_

    async def test_credential_revoked_during_a_connection_sends_nothing_more(
        self,
        relay: SubmissionServer,
        login: dict[str, Any],
        client: httpx.AsyncClient,
        sender: Actor,
        db: Database,
    ) -> None:
        smtp = await connect(relay, login=login)
        code, _ = await submit(smtp, message(subject="first"))
        assert code == 250
        await client.delete(f"/v1/smtp-credentials/{login['id']}", headers=sender.headers)

        await smtp.mail("app@" + DOMAIN)
        await smtp.rcpt("ada@example.com")
        code, text_ = await refused(smtp.data(message(subject="second").as_bytes()))
        await smtp.quit()

        assert code == 554
        assert text_.startswith("5.7.8")
        assert [r["subject"] for r in await rows(db, sender.workspace_id)] == ["first"]

    async def test_repeated_failures_from_one_address_are_throttled(
        self, start_relay: StartRelay, login: dict[str, Any]
    ) -> None:
        relay = await start_relay(submission_auth_failure_limit=3)
        for _ in range(3):
            smtp = await connect(relay)
            code, _ = await refused(smtp.auth_plain(login["username"], "wrong"))
            assert code == 535
            await smtp.quit()
        smtp = await connect(relay)
        # Even the right password: the address is cooling down.
        code, text_ = await refused(smtp.auth_plain(login["username"], login["password"]))
        assert (code, text_.split()[0]) == (454, "4.7.0")
        smtp.close()

    async def test_trusted_loopback_network_needs_no_auth(
        self, start_relay: StartRelay, login: dict[str, Any], db: Database, sender: Actor
    ) -> None:
        relay = await start_relay(
            submission_trusted_networks=["127.0.0.0/8"],
            submission_trusted_username=login["username"],
        )
        smtp = await connect(relay, tls="none")
        code, reply = await submit(smtp, message())
        await smtp.quit()
        assert code == 250
        [row] = await rows(db, sender.workspace_id)
        assert row["id"] == queued_ids(reply)[0]

    async def test_trusted_mails_share_a_running_lookup_but_a_later_one_sees_a_revocation(
        self,
        start_relay: StartRelay,
        client: httpx.AsyncClient,
        login: dict[str, Any],
        sender: Actor,
    ) -> None:
        relay = await start_relay(
            submission_trusted_networks=["127.0.0.0/8"],
            submission_trusted_username=login["username"],
        )
        first, second = relay.trusted_login(), relay.trusted_login()
        running = relay._trusted_lookup
        assert (await first) == (await second)
        assert relay._trusted_lookup is running
        revoked = await client.delete(f"/v1/smtp-credentials/{login['id']}", headers=sender.headers)
        assert revoked.status_code == 200, revoked.text
        with pytest.raises(LoginRefused) as caught:
            await relay.trusted_login()
        assert caught.value.reason == "revoked"
        smtp = await connect(relay, tls="none")
        await smtp.ehlo()
        code, text_ = await refused(smtp.mail("app@" + DOMAIN))
        smtp.close()
        assert (code, text_.split()[0]) == (454, "4.7.0")

    def test_a_trusted_network_beyond_loopback_is_refused(self, settings: Settings) -> None:
        from sendstream.core.settings import SmtpSettings

        bad = settings.model_copy(
            update={
                "smtp": SmtpSettings(
                    submission_trusted_networks=["10.0.0.0/8"],
                    submission_trusted_username="x-app",
                )
            }
        )
        with pytest.raises(ValueError, match="not a loopback network"):
            SubmissionServer(bad)


class TestWhatIsQueued:
    async def test_headers_become_the_api_request(
        self, relay: SubmissionServer, login: dict[str, Any], db: Database, sender: Actor
    ) -> None:
        mail = message(
            to="Ada <ada@example.com>",
            Cc="Bob <bob@example.com>",
            Reply_To="Support <help@acme.example>",
            html="<p>Hello <b>Ada</b></p>",
            headers={"X-Campaign": "spring", "X-Mailer": "WordPress"},
        )
        smtp = await connect(relay, login=login)
        code, reply = await submit(
            smtp, mail, ["ada@example.com", "bob@example.com", "secret@example.com"]
        )
        await smtp.quit()

        assert code == 250
        [row] = await rows(db, sender.workspace_id)
        assert row["id"] == queued_ids(reply)[0]
        assert (row["from_email"], row["from_name"]) == (f"news@{DOMAIN}", "Acme")
        assert (row["to_email"], row["to_name"]) == ("ada@example.com", "Ada")
        assert row["cc"] == [{"email": "bob@example.com", "name": "Bob"}]
        assert row["bcc"] == [{"email": "secret@example.com", "name": None}]
        assert row["reply_to"] == "Support <help@acme.example>"
        assert "<b>Ada</b>" in row["html"]
        headers = dict(row["headers"])
        assert headers["X-Campaign"] == "spring"
        assert headers["X-Mailer"] == "WordPress"
        assert not {"Date", "Message-ID", "MIME-Version"} & set(headers)

    async def test_several_to_addresses_each_get_their_own_message(
        self, relay: SubmissionServer, login: dict[str, Any], db: Database, sender: Actor
    ) -> None:
        mail = message(to="ada@example.com, bob@example.com", Cc="carol@example.com")
        smtp = await connect(relay, login=login)
        code, reply = await submit(
            smtp, mail, ["ada@example.com", "bob@example.com", "carol@example.com"]
        )
        await smtp.quit()
        assert code == 250
        assert len(queued_ids(reply)) == 3
        found = await rows(db, sender.workspace_id)
        assert [r["to_email"] for r in found] == [
            "ada@example.com",
            "bob@example.com",
            "carol@example.com",
        ]
        assert all(r["cc"] == [] and r["bcc"] == [] for r in found)

    async def test_x_sendstream_headers_set_options_and_are_removed(
        self, relay: SubmissionServer, login: dict[str, Any], db: Database, sender: Actor
    ) -> None:
        mail = message(
            html='<p><a href="https://shop.example.com/">shop</a></p>',
            headers={
                "X-Sendstream-Stream": "marketing",
                "X-Sendstream-Tags": "welcome, onboarding",
                "X-Sendstream-Metadata": json.dumps({"order": 7, "vip": True}),
                "X-Sendstream-Track-Opens": "false",
                "X-Sendstream-Track-Clicks": "yes",
            },
        )
        smtp = await connect(relay, login=login)
        code, _ = await submit(smtp, mail)
        await smtp.quit()
        assert code == 250
        [row] = await rows(db, sender.workspace_id)
        assert row["stream"] == "marketing"
        assert row["tags"] == ["welcome", "onboarding"]
        assert row["metadata"] == {"order": 7, "vip": True}
        assert (row["track_opens"], row["track_clicks"]) == (False, True)
        assert not [n for n, _ in row["headers"] if n.lower().startswith("x-sendstream-")]

    async def test_attachments_are_kept(
        self, relay: SubmissionServer, login: dict[str, Any], db: Database, sender: Actor
    ) -> None:
        pdf = b"%PDF-1.4 " + bytes(range(256)) * 10
        mail = message()
        mail.add_attachment(pdf, maintype="application", subtype="pdf", filename="Rechnung.pdf")
        smtp = await connect(relay, login=login)
        code, reply = await submit(smtp, mail)
        await smtp.quit()
        assert code == 250
        async with db.engine.connect() as conn:
            found = (
                await conn.execute(
                    text(
                        "SELECT a.filename, a.content_type, length(b.data) FROM "
                        "message_attachments a JOIN attachment_blobs b USING (workspace_id, "
                        "sha256) WHERE a.message_id = :id"
                    ),
                    {"id": queued_ids(reply)[0]},
                )
            ).all()
        assert [tuple(r) for r in found] == [("Rechnung.pdf", "application/pdf", len(pdf))]

    async def test_events_are_written_with_the_messages(
        self, relay: SubmissionServer, login: dict[str, Any], db: Database
    ) -> None:
        smtp = await connect(relay, login=login)
        _, reply = await submit(smtp, message())
        await smtp.quit()
        async with db.engine.connect() as conn:
            types = (
                (
                    await conn.execute(
                        text("SELECT type FROM events WHERE subject_id = :id"),
                        {"id": str(queued_ids(reply)[0])},
                    )
                )
                .scalars()
                .all()
            )
        assert list(types) == ["message.queued"]


class TestRefusals:
    async def test_oversize_message_is_552_and_size_is_advertised(
        self, start_relay: StartRelay, login: dict[str, Any], db: Database, sender: Actor
    ) -> None:
        relay = await start_relay(submission_max_message_bytes=4096)
        smtp = await connect(relay, login=login)
        assert smtp.esmtp_extensions["size"] == "4096"
        await smtp.mail("app@" + DOMAIN)
        await smtp.rcpt("ada@example.com")
        code, text_ = await refused(smtp.data(message(text="x" * 8000).as_bytes()))
        # A declared size over the limit is refused at MAIL already.
        code_mail, text_mail = await refused(smtp.mail("app@" + DOMAIN, options=["SIZE=9000"]))
        await smtp.quit()
        assert (code, text_.split()[0]) == (552, "5.3.4")
        assert (code_mail, text_mail.split()[0]) == (552, "5.3.4")
        assert await rows(db, sender.workspace_id) == []

    async def test_suppressed_recipient_is_refused_at_rcpt_and_the_others_get_it(
        self, relay: SubmissionServer, login: dict[str, Any], db: Database, sender: Actor
    ) -> None:
        async with db.session() as session:
            await suppress(session, sender.workspace_id, "eve@example.com", "bounced")
        smtp = await connect(relay, login=login)
        await smtp.mail("app@" + DOMAIN)
        code, text_ = await refused(smtp.rcpt("eve@example.com"))
        await smtp.rcpt("ada@example.com")
        code_data, _ = await smtp.data(message(to="ada@example.com, eve@example.com").as_bytes())
        await smtp.quit()
        assert (code, text_.split()[0]) == (550, "5.7.1")
        assert "recipient_suppressed" in text_
        assert code_data == 250
        assert [r["to_email"] for r in await rows(db, sender.workspace_id)] == ["ada@example.com"]

    async def test_unsubscribed_address_gets_transactional_but_not_marketing_mail(
        self, relay: SubmissionServer, login: dict[str, Any], db: Database, sender: Actor
    ) -> None:
        async with db.session() as session:
            await suppress(session, sender.workspace_id, "ada@example.com", "unsubscribed")
        smtp = await connect(relay, login=login)
        code, _ = await submit(smtp, message(subject="receipt"))
        assert code == 250
        await smtp.mail("app@" + DOMAIN)
        await smtp.rcpt("ada@example.com")
        marketing = message(subject="sale", headers={"X-Sendstream-Stream": "marketing"})
        code, text_ = await refused(smtp.data(marketing.as_bytes()))
        await smtp.quit()
        assert (code, text_.split()[0]) == (550, "5.7.1")
        assert "recipient_suppressed" in text_
        assert [r["subject"] for r in await rows(db, sender.workspace_id)] == ["receipt"]

    async def test_from_an_unverified_domain_is_refused(
        self, relay: SubmissionServer, login: dict[str, Any], db: Database, sender: Actor
    ) -> None:
        await verified_domain(db, sender.workspace_id, "pending.example", status="pending")
        smtp = await connect(relay, login=login)
        await smtp.mail("app@pending.example")
        await smtp.rcpt("ada@example.com")
        code, text_ = await refused(smtp.data(message(sender="news@pending.example").as_bytes()))
        await smtp.mail("app@nowhere.example")
        await smtp.rcpt("ada@example.com")
        code_unknown, text_unknown = await refused(
            smtp.data(message(sender="news@nowhere.example").as_bytes())
        )
        await smtp.quit()
        assert (code, text_.split()[0]) == (550, "5.7.1")
        assert "domain_not_verified" in text_
        assert (code_unknown, text_unknown.split()[0]) == (550, "5.7.1")
        assert "unknown_sending_domain" in text_unknown
        assert await rows(db, sender.workspace_id) == []

    async def test_a_stream_the_credential_may_not_use_is_refused(
        self, relay: SubmissionServer, client: httpx.AsyncClient, sender: Actor
    ) -> None:
        login = await create_credential(client, sender, allowed_streams=["transactional"])
        smtp = await connect(relay, login=login)
        await smtp.mail("app@" + DOMAIN)
        await smtp.rcpt("ada@example.com")
        marketing = message(headers={"X-Sendstream-Stream": "marketing"})
        code, text_ = await refused(smtp.data(marketing.as_bytes()))
        await smtp.quit()
        assert (code, text_.split()[0]) == (550, "5.7.1")

    @pytest.mark.parametrize(
        ("name", "value", "why"),
        [
            ("X-Sendstream-Metadata", "not json", "X-Sendstream-Metadata"),
            ("X-Sendstream-Track-Opens", "maybe", "true or false"),
            ("X-Sendstream-Colour", "blue", "unknown_option"),
            ("X-Sendstream-Stream", "bulk", "stream"),
        ],
    )
    async def test_bad_options_are_refused_with_the_reason(
        self,
        relay: SubmissionServer,
        login: dict[str, Any],
        db: Database,
        sender: Actor,
        name: str,
        value: str,
        why: str,
    ) -> None:
        smtp = await connect(relay, login=login)
        await smtp.mail("app@" + DOMAIN)
        await smtp.rcpt("ada@example.com")
        code, text_ = await refused(smtp.data(message(headers={name: value}).as_bytes()))
        await smtp.quit()
        assert code == 554
        assert why in text_
        assert await rows(db, sender.workspace_id) == []

    async def test_a_subject_the_builder_refuses_is_refused_with_its_code(
        self, relay: SubmissionServer, login: dict[str, Any], db: Database, sender: Actor
    ) -> None:
        # An encoded-word that decodes to a NUL, which no header may hold
        # (the parser keeps it; the MIME builder's check refuses it).
        raw = message().as_bytes().replace(b"Subject: Hi", b"Subject: =?utf-8?q?Hi=00there?=")
        smtp = await connect(relay, login=login)
        await smtp.mail("app@" + DOMAIN)
        await smtp.rcpt("ada@example.com")
        refusal, text_ = await refused(smtp.data(raw))
        await smtp.quit()
        assert (refusal, text_.split()[0]) == (554, "5.6.0")
        assert text_.split()[1] == "header_injection:"
        assert await rows(db, sender.workspace_id) == []

    async def test_malformed_recipient_is_553(
        self, relay: SubmissionServer, login: dict[str, Any]
    ) -> None:
        smtp = await connect(relay, login=login)
        await smtp.mail("app@" + DOMAIN)
        code, _ = await refused(smtp.rcpt("not-an-address"))
        await smtp.quit()
        assert code == 553

    async def test_database_down_is_451_and_nothing_is_queued(
        self,
        start_relay: StartRelay,
        login: dict[str, Any],
        db: Database,
        sender: Actor,
        settings: Settings,
    ) -> None:
        with proxied_database(db.url) as (proxy, url):
            proxied = create_database(settings, url=url)
            try:
                relay = await start_relay(database=proxied)
                smtp = await connect(relay, login=login)
                await smtp.mail("app@" + DOMAIN)
                await smtp.rcpt("ada@example.com")
                proxy.cut()
                code, text_ = await refused(smtp.data(message().as_bytes()))
                smtp.close()
                proxy.restore()
            finally:
                await proxied.dispose()
        assert (code, text_.split()[0]) == (451, "4.3.0")
        assert await rows(db, sender.workspace_id) == []


class TestSmtplib:
    """Python's smtplib, as Django's SMTP backend drives it (EMAIL_USE_TLS:
    STARTTLS on the submission port, then login())."""

    async def test_django_style_client_sends(
        self, relay: SubmissionServer, login: dict[str, Any], db: Database, sender: Actor
    ) -> None:
        def send() -> dict[str, tuple[int, bytes]]:
            context = client_context()
            with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as smtp:
                smtp.starttls(context=context)
                smtp.login(login["username"], login["password"])
                return smtp.send_message(message(subject="From Django"))

        refusals = await asyncio.to_thread(send)
        assert refusals == {}
        [row] = await rows(db, sender.workspace_id)
        assert row["subject"] == "From Django"

    async def test_implicit_tls_with_smtp_ssl(
        self, relay: SubmissionServer, login: dict[str, Any], db: Database, sender: Actor
    ) -> None:
        def send() -> None:
            with smtplib.SMTP_SSL(
                "127.0.0.1", relay.tls_port, context=client_context(), timeout=30
            ) as smtp:
                smtp.login(login["username"], login["password"])
                smtp.send_message(message(subject="Over 465"))

        await asyncio.to_thread(send)
        assert [r["subject"] for r in await rows(db, sender.workspace_id)] == ["Over 465"]

    async def test_wrong_password_raises_authentication_error(
        self, relay: SubmissionServer, login: dict[str, Any]
    ) -> None:
        def attempt() -> None:
            with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as smtp:
                smtp.starttls(context=client_context())
                smtp.login(login["username"], "wrong")

        with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
            await asyncio.to_thread(attempt)
        assert caught.value.smtp_code == 535


class TestStopping:
    async def test_stop_closes_the_ports_and_open_connections(
        self, start_relay: StartRelay, login: dict[str, Any]
    ) -> None:
        relay = await start_relay()
        smtp = await connect(relay, login=login)
        port = relay.port
        await relay.stop()
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await smtp.noop()
        with pytest.raises(aiosmtplib.SMTPConnectError):
            await aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=5).connect()


class TestInlineCheck:
    """The relay's queue-time check (`_check_inline`: the header section
    built, the bodies not encoded) refuses exactly what building the whole
    message refuses, with the same code and text."""

    @pytest.mark.parametrize(
        "change",
        [
            {},
            {"subject": "Hi\r\nBcc: victim@example.com"},
            {"subject": "Hi \ud800"},
            {"subject": "x" * 1200},
            {"subject": "Grüße " * 100},
            {"from_name": "Ada \udcff"},
            {"to_name": "Ada\nBcc: x"},
            {"cc": [{"email": "cc@example.com", "name": "C\udc80"}]},
            {"reply_to": "Ada <ada@example.com>"},
            {"headers": [["X-Campaign", "x" * 1200]]},
            {"html": "<p>\ud800</p>"},
            {"text": "Hello \udcff"},
            {"text": "Grüße\r\n", "html": "<p>Grüße</p>"},
            {"stream": "marketing", "track_opens": True, "track_clicks": True},
            {"attachment": mime.Attachment("a\udcff.pdf", "application/pdf", b"%PDF")},
            {"attachment": mime.Attachment("r.pdf", "application/pdf", b"%PDF", "logo@x")},
        ],
    )
    def test_refuses_what_the_whole_build_refuses(
        self, settings: Settings, change: dict[str, Any]
    ) -> None:
        change = dict(change)
        attachment = change.pop("attachment", None)
        attachments = [attachment] if attachment is not None else []
        m = compose.Outgoing(
            id=uuid.uuid4(),
            workspace_id=uuid.uuid4(),
            stream="transactional",
            from_email=f"news@{DOMAIN}",
            from_name="Acme",
            reply_to=None,
            to_email="ada@example.com",
            to_name="Ada",
            message_id_header=f"<x@{DOMAIN}>",
            subject="Hi",
            text="Hello",
        )
        for name, value in change.items():
            setattr(m, name, value)
        content = compose.render(m, None, settings)

        def outcome(check: Any) -> tuple[str, str] | None:
            try:
                check()
            except compose.ComposeError as exc:
                return exc.code, exc.message
            return None

        whole = outcome(lambda: compose.build(m, content, settings, attachments=attachments))
        inline = outcome(lambda: _check_inline(m, content, settings, attachments))
        assert inline == whole
