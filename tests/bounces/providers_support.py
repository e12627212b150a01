"""What the provider webhook tests share: a stand-in for Amazon SNS on
loopback (a real HTTP server serving a signing certificate generated here
and recording SubscribeURL visits), SNS/SendGrid/Mailgun signers that follow
each vendor's documented rules, and helpers to create webhooks and messages
and to read what acting on an event left behind."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from sendstream.bounces.providers import sns
from sendstream.core.db import Database
from sendstream.core.settings import Settings
from sendstream.models.event import Event
from sendstream.models.message import Message
from sendstream.models.provider_webhook import ProviderWebhook
from sendstream.models.suppression import Suppression
from tests.fixtures.actors import Actor

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-events"


def _certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class FakeSns:
    """Serves `/cert.pem` (the signing certificate) and answers `/confirm...`
    (a SubscribeURL) with SNS's ConfirmSubscriptionResponse; records every path."""

    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    paths: list[str] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    @property
    def cert_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cert.pem"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        self._pem = _certificate(self.key)
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.decode("latin-1").split(" ", 2)[1]
            self.paths.append(path)
            if path == "/cert.pem":
                status, body = "200 OK", self._pem
            elif path.startswith("/confirm"):
                status, body = "200 OK", b"<ConfirmSubscriptionResponse/>"
            else:
                status, body = "404 Not Found", b"no"
            head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def sign(self, doc: dict[str, Any], version: str = "1") -> dict[str, Any]:
        doc = {
            **doc,
            "SignatureVersion": version,
            "SigningCertURL": doc.get("SigningCertURL", self.cert_url),
        }
        signed = sns.string_to_sign(doc)
        assert signed is not None
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 - SNS v1
        signature = self.key.sign(signed, padding.PKCS1v15(), algorithm)
        return {**doc, "Signature": base64.b64encode(signature).decode()}

    def notification(
        self, event: dict[str, Any], *, topic: str = TOPIC, version: str = "1", **extra: Any
    ) -> dict[str, Any]:
        doc = {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": topic,
            "Message": json.dumps(event),
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            **extra,
        }
        return self.sign(doc, version)


@pytest.fixture(name="fake_sns")
async def fake_sns_fixture(settings: Settings) -> AsyncIterator[FakeSns]:
    """The SNS stand-in, with the webhook settings pointed at it (loopback,
    plain HTTP) for the test and the certificate cache emptied."""
    server = FakeSns()
    await server.start()
    config = settings.provider_webhooks
    saved = (config.sns_hosts, config.sns_allow_http)
    config.sns_hosts = [r"127\.0\.0\.1"]
    config.sns_allow_http = True
    sns.certificates.clear()
    try:
        yield server
    finally:
        config.sns_hosts, config.sns_allow_http = saved
        sns.certificates.clear()
        await server.close()


def ses_bounce(
    recipient: str,
    *,
    message_id_header: str | None,
    bounce_type: str = "Permanent",
    subtype: str = "General",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 user unknown",
) -> dict[str, Any]:
    """An SES bounce notification as documented (notificationType Bounce)."""
    headers = [{"name": "Message-ID", "value": message_id_header}] if message_id_header else []
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": subtype,
            "bouncedRecipients": [
                {
                    "emailAddress": recipient,
                    "action": "failed",
                    "status": status,
                    "diagnosticCode": diagnostic,
                }
            ],
            "timestamp": "2026-11-27T10:00:00.000Z",
            "feedbackId": f"0100{uuid.uuid4().hex}-000000",
            "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
        },
        "mail": {
            "timestamp": "2026-11-27T09:59:58.000Z",
            "source": "news@a.example",
            "messageId": f"0100{uuid.uuid4().hex}-000000",
            "destination": [recipient],
            "headersTruncated": False,
            "headers": headers,
            "commonHeaders": {
                "from": ["news@a.example"],
                "to": [recipient],
                "messageId": f"<0100{uuid.uuid4().hex}@email.amazonses.com>",
            },
        },
    }


# --- SendGrid


@dataclass
class SendGridSigner:
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    @property
    def public_key(self) -> str:
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(timestamp if timestamp is not None else int(time.time()))
        signature = self.key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        }


# --- Mailgun


def mailgun_body(
    signing_key: str,
    event_data: dict[str, Any],
    *,
    timestamp: int | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    token = token or secrets.token_hex(25)
    signature = hmac.new(signing_key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": stamp, "token": token, "signature": signature},
        "event-data": event_data,
    }


# --- the app side


async def create_webhook(
    client: httpx.AsyncClient, actor: Actor, provider: str, **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/provider-webhooks",
        json={"provider": provider, "name": f"{provider} test", **fields},
        headers=actor.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def hook_path(webhook: dict[str, Any]) -> str:
    return f"/hooks/{webhook['provider']}/{webhook['id']}"


async def make_message(db: Database, workspace_id: uuid.UUID, to: str = "ada@a.example") -> Message:
    async with db.session() as session:
        message = Message(
            id=uuid.uuid4(),
            workspace_id=workspace_id,
            stream="marketing",
            status="sent",
            from_email="news@a.example",
            to_email=to,
            to_email_key=to.lower(),
            message_id_header=f"<{secrets.token_urlsafe(18)}@a.example>",
            subject="Hi",
            text="Hello",
        )
        session.add(message)
    return message


async def suppressed(db: Database, workspace_id: uuid.UUID) -> dict[str, str]:
    """address -> reason of the workspace's suppressions."""
    async with db.session() as session:
        rows = await session.execute(
            select(Suppression.address, Suppression.reason).where(
                Suppression.workspace_id == workspace_id
            )
        )
        return {str(a): r for a, r in rows.all()}


async def events_of(db: Database, workspace_id: uuid.UUID, type_: str) -> list[dict[str, Any]]:
    async with db.session() as session:
        rows = await session.scalars(
            select(Event.data).where(Event.workspace_id == workspace_id, Event.type == type_)
        )
        return list(rows.all())


async def message_status(db: Database, message_id: uuid.UUID) -> str:
    async with db.session() as session:
        found = await session.get(Message, message_id)
        assert found is not None
        return found.status


async def counters(db: Database, webhook_id: str) -> dict[str, int]:
    async with db.session() as session:
        row = await session.get(ProviderWebhook, uuid.UUID(webhook_id))
        assert row is not None
        return {
            "received": row.received_count,
            "applied": row.applied_count,
            "ignored": row.ignored_count,
            "duplicates": row.duplicate_count,
        }
