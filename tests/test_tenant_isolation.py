"""Cross-tenant isolation, for every route the app has.

Workspace A owns one object of each kind; workspace B holds an `admin` key.
For every route with an id in its path, B calling it on A's object must get a
404 (never a 403, never data) and A's object must be unchanged; A calling the
same route must not get a 404, which proves the id was a real one. Every list
route, called by B, must not mention any of A's objects.

The routes are read from the app itself, so a new domain's routes are covered
the moment they are mounted. A route whose path has no factory in `FACTORIES`
fails with a message saying so: a new domain adds a factory that creates one
object of its kind in a workspace.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.app import create_app
from sendstream.bounces.imap_schemas import BounceMailboxCreate
from sendstream.bounces.imap_service import imap_mailbox_service
from sendstream.bounces.providers.schemas import PostmarkWebhookCreate
from sendstream.bounces.providers.service import provider_webhook_service
from sendstream.contacts.consent import ConsentContext
from sendstream.contacts.field_service import field_service
from sendstream.contacts.lists import list_service, subscription_service
from sendstream.contacts.schemas import ContactCreate, FieldCreate
from sendstream.contacts.service import contact_service
from sendstream.contacts.suppression_service import (
    address_target,
    domain_target,
    suppression_service,
)
from sendstream.core.db import Database
from sendstream.core.jobs.queue import enqueue
from sendstream.delivery.domain_service import domain_service
from sendstream.delivery.smtp_credential_schemas import SmtpCredentialCreate
from sendstream.delivery.smtp_credential_service import smtp_credential_service
from sendstream.models.api_key import ApiKey
from sendstream.models.base import Base
from sendstream.models.contact import Contact
from sendstream.models.contact_import import ContactImport
from sendstream.models.contact_list import ContactList
from sendstream.models.field import Field
from sendstream.models.imap_mailbox import ImapMailbox
from sendstream.models.inbound_email import InboundAttachment, InboundEmail
from sendstream.models.inbound_message import InboundMessage
from sendstream.models.inbound_route import InboundDomain, InboundRoute
from sendstream.models.job import Job
from sendstream.models.message import CapturedMessage, Message
from sendstream.models.provider_webhook import ProviderWebhook
from sendstream.models.sending_domain import SendingDomain
from sendstream.models.smtp_credential import SmtpCredential
from sendstream.models.suppression import Suppression
from sendstream.models.template import Template
from sendstream.models.user import User
from sendstream.models.webhook_delivery import WebhookDelivery
from sendstream.models.webhook_endpoint import WebhookEndpoint
from sendstream.templates.schemas import TemplateCreate
from sendstream.templates.service import template_service
from sendstream.webhooks.endpoint_service import endpoint_service
from sendstream.webhooks.schemas import WebhookCreate
from sendstream.workspaces.service import api_key_service, user_service
from tests.fixtures.actors import Actor

_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


@dataclass(frozen=True)
class Owned:
    """An object created in workspace A: the path parameters that address it
    and the row to compare before and after B's attempt."""

    params: dict[str, str]
    model: type[Base]
    primary_key: Any


Factory = Callable[[AsyncSession, uuid.UUID], Awaitable[Owned]]


async def _user(session: AsyncSession, workspace_id: uuid.UUID) -> Owned:
    # A member, not an owner, so A's own DELETE in the control call succeeds.
    user = await user_service.create_user(
        session, workspace_id, email=f"{uuid.uuid4().hex[:8]}@a.example", role="member"
    )
    return Owned({"user_id": str(user.id)}, User, user.id)


async def _api_key(session: AsyncSession, workspace_id: uuid.UUID) -> Owned:
    key, _ = await api_key_service.create_key(session, workspace_id, "a's key", ["contacts:read"])
    return Owned({"key_id": str(key.id)}, ApiKey, key.id)


async def _job(session: AsyncSession, workspace_id: uuid.UUID) -> Owned:
    job_id = await enqueue(
        session, "test.tenant_isolation", {"n": 1}, workspace_id=workspace_id, delay=3600
    )
    return Owned({"job_id": str(job_id)}, Job, job_id)


async def _contact(session: AsyncSession, workspace_id: uuid.UUID) -> Owned:
    contact = await contact_service.create_contact(
        session,
        workspace_id,
        ContactCreate(email=f"{uuid.uuid4().hex[:8]}@a.example"),
        ConsentContext(source="api"),
    )
    return Owned({"contact_id": str(contact.id)}, Contact, contact.id)


async def _field(session: AsyncSession, workspace_id: uuid.UUID) -> Owned:
    created = await field_service.create_field(
        session, workspace_id, FieldCreate(key=f"f{uuid.uuid4().hex[:8]}", type="text")
    )
    return Owned({"field_key": created.key}, Field, created.id)


async def _list(session: AsyncSession, workspace_id: uuid.UUID) -> Owned:
    created = await list_service.create_list(
        session,
        workspace_id,
        name=f"list {uuid.uuid4().hex[:8]}",
        description=None,
        visibility="private",
        opt_in="single",
    )
    return Owned({"list_id": str(created.list.id)}, ContactList, created.list.id)


async def _contact_on_list(session: AsyncSession, workspace_id: uuid.UUID) -> Owned:
    """A contact subscribed to a list: the routes under
    /v1/contacts/{contact_id}/... (subscriptions, consent, export, erase)."""
    owned = await _contact(session, workspace_id)
    on = await _list(session, workspace_id)
    await subscription_service.set_subscription(
        session,
        workspace_id,
        owned.primary_key,
        uuid.UUID(on.params["list_id"]),
        "subscribed",
        ConsentContext(source="api"),
    )
    return Owned({**owned.params, **on.params}, Contact, owned.primary_key)


async def _contact_import(session: AsyncSession, workspace_id: uuid.UUID) -> Owned:
    """A queued import (nothing runs it here) that already brought in one contact,
    so the export route has something of A's to show."""
    row = ContactImport(
        id=uuid.uuid4(), workspace_id=workspace_id, format="csv", mode="upsert", filename="a.csv"
    )
    session.add(row)
    session.add(
        Contact(
            id=uuid.uuid4(),
            workspace_id=workspace_id,
            email=f"imported-{uuid.uuid4().hex[:8]}@a.example",
            email_key=f"imported-{uuid.uuid4().hex[:8]}@a.example",
        )
    )
    await session.flush()
    return Owned({"import_id": str(row.id)}, ContactImport, row.id)


async def _sending_domain(session: AsyncSession, workspace_id: uuid.UUID) -> Owned:
    created = await domain_service.create_domain(
        session, workspace_id, name=f"d{uuid.uuid4().hex[:8]}.example"
    )
    return Owned({"domain_id": str(created.id)}, SendingDomain, created.id)


async def _template(session: AsyncSession, workspace_id: uuid.UUID) -> Owned:
    """A template with one version (number 1): the routes under
    /v1/templates/{template_id}/... (versions, activate, preview)."""
    created = await template_service.create_template(
        session,
        workspace_id,
        TemplateCreate(key=f"t-{uuid.uuid4().hex[:8]}", name="T", subject="Hi", text="Hello"),
        None,
    )
    # A verified sending domain, so the owner's test-send (the control call) is accepted.
    domain = await domain_service.create_domain(session, workspace_id, name="a.example")
    await session.execute(
        update(SendingDomain).where(SendingDomain.id == domain.id).values(status="verified")
    )
    return Owned({"template_id": str(created.id), "number": "1"}, Template, created.id)


async def _suppressed_address(session: AsyncSession, workspace_id: uuid.UUID) -> Owned:
    """A suppressed address: the routes under /v1/suppressions/{address}."""
    target = address_target(f"{uuid.uuid4().hex[:8]}@a.example")
    await suppression_service.add_suppression(
        session, workspace_id, target, reason="manual", source="api"
    )
    return Owned({"address": target.label}, Suppression, (workspace_id, target.key_hash))


async def _suppressed_domain(session: AsyncSession, workspace_id: uuid.UUID) -> Owned:
    target = domain_target(f"{uuid.uuid4().hex[:8]}.a.example")
    await suppression_service.add_suppression(
        session, workspace_id, target, reason="manual", source="api"
    )
    return Owned({"domain": target.label[1:]}, Suppression, (workspace_id, target.key_hash))


async def _message(session: AsyncSession, workspace_id: uuid.UUID) -> Owned:
    """A sent message with its captured copy, so /v1/messages/{id}/raw
    answers for A."""
    message = Message(
        id=uuid.uuid4(),
        workspace_id=workspace_id,
        stream="transactional",
        status="sent",
        from_email="news@a.example",
        to_email="ada@a.example",
        to_email_key="ada@a.example",
        message_id_header=f"<{uuid.uuid4().hex}@a.example>",
        subject="Hi",
        text="Hello",
    )
    session.add(message)
    await session.flush()
    session.add(
        CapturedMessage(
            message_id=message.id,
            workspace_id=workspace_id,
            mail_from="bounces@a.example",
            recipients=["ada@a.example"],
            raw=b"Subject: Hi\r\n\r\nHello\r\n",
        )
    )
    await session.flush()
    return Owned({"message_id": str(message.id)}, Message, message.id)


async def _webhook(session: AsyncSession, workspace_id: uuid.UUID) -> Owned:
    """A webhook endpoint: the routes under /v1/webhooks/{webhook_id}/... (its
    URL is on loopback, which the workspace is allowed; nothing is sent)."""
    await endpoint_service.set_private_addresses_allowed(session, workspace_id, True)
    endpoint, _ = await endpoint_service.create_endpoint(
        session,
        workspace_id,
        WebhookCreate(url="https://127.0.0.1:9/hook", event_types=["*"]),
    )
    # One delivery, for /v1/webhooks/{webhook_id}/deliveries/{delivery_id}/...
    delivery = WebhookDelivery(
        workspace_id=workspace_id,
        endpoint_id=endpoint.id,
        webhook_id="msg_1_test",
        event_positions=[1],
        event_type="contact.created",
        payload={"type": "contact.created", "timestamp": "2026-11-26T10:00:00Z", "data": {}},
        status="failed",
    )
    session.add(delivery)
    await session.flush()
    return Owned(
        {"webhook_id": str(endpoint.id), "delivery_id": str(delivery.id)},
        WebhookEndpoint,
        endpoint.id,
    )


async def _provider_webhook(session: AsyncSession, workspace_id: uuid.UUID) -> Owned:
    """A Postmark provider webhook (its credentials are generated)."""
    created = await provider_webhook_service.create_webhook(
        session, workspace_id, PostmarkWebhookCreate(provider="postmark", name="ESP")
    )
    return Owned({"webhook_id": str(created.id)}, ProviderWebhook, created.id)


async def _smtp_credential(session: AsyncSession, workspace_id: uuid.UUID) -> Owned:
    """An SMTP credential of the submission relay."""
    credential, _ = await smtp_credential_service.create_credential(
        session, workspace_id, SmtpCredentialCreate(name="relay")
    )
    return Owned({"credential_id": str(credential.id)}, SmtpCredential, credential.id)


async def _bounce_mailbox(session: AsyncSession, workspace_id: uuid.UUID) -> Owned:
    """An IMAP bounce mailbox (never connected to: the worker loop is not running)."""
    mailbox = await imap_mailbox_service.create_mailbox(
        session,
        workspace_id,
        BounceMailboxCreate(
            name="bounces", host="imap.example.com", username="bounces", password="secret"
        ),
    )
    return Owned({"mailbox_id": str(mailbox.id)}, ImapMailbox, mailbox.id)


async def _inbound_domain(session: AsyncSession, workspace_id: uuid.UUID) -> Owned:
    domain = InboundDomain(workspace_id=workspace_id, name=f"in-{uuid.uuid4().hex[:8]}.a.example")
    session.add(domain)
    await session.flush()
    return Owned({"domain_id": str(domain.id)}, InboundDomain, domain.id)


async def _inbound_route(session: AsyncSession, workspace_id: uuid.UUID) -> Owned:
    domain = InboundDomain(workspace_id=workspace_id, name=f"in-{uuid.uuid4().hex[:8]}.a.example")
    session.add(domain)
    await session.flush()
    route = InboundRoute(workspace_id=workspace_id, domain_id=domain.id, name="r", pattern="*")
    session.add(route)
    await session.flush()
    return Owned({"route_id": str(route.id)}, InboundRoute, route.id)


async def _inbound_email(session: AsyncSession, workspace_id: uuid.UUID) -> Owned:
    """A received mail with its raw row and one stored attachment."""
    raw = InboundMessage(
        workspace_id=workspace_id,
        source="inbound",
        mail_from=None,
        rcpt_to=["x@in.a.example"],
        size_bytes=4,
        raw=b"Hi\r\n",
        status="processed",
    )
    session.add(raw)
    await session.flush()
    email = InboundEmail(
        workspace_id=workspace_id,
        inbound_message_id=raw.id,
        action="webhook",
        recipients=["x@in.a.example"],
        to_addresses=[],
        cc_addresses=[],
        reply_to=[],
        text_truncated=False,
        html_truncated=False,
        headers=[],
        spf="none",
        dkim="none",
        dmarc="none",
        auth_details={},
        auto_submitted=False,
        size_bytes=4,
        notes=[],
    )
    session.add(email)
    await session.flush()
    attachment = InboundAttachment(
        workspace_id=workspace_id,
        inbound_email_id=email.id,
        position=0,
        filename="a.txt",
        content_type="text/plain",
        disposition="attachment",
        size=1,
        sha256="0" * 64,
        omitted=False,
        content=b"a",
    )
    session.add(attachment)
    await session.flush()
    return Owned(
        {"email_id": str(email.id), "attachment_id": str(attachment.id)}, InboundEmail, email.id
    )


# Route path up to and including its first path parameter -> a factory that
# creates one such object in a given workspace. Deeper routes
# (`/v1/api-keys/{key_id}/revoke`) share their prefix's factory.
FACTORIES: dict[str, Factory] = {
    "/v1/users/{user_id}": _user,
    "/v1/api-keys/{key_id}": _api_key,
    "/v1/jobs/{job_id}": _job,
    "/v1/contacts/{contact_id:uuid}": _contact,
    "/v1/fields/{field_key}": _field,
    "/v1/lists/{list_id}": _list,
    "/v1/contacts/{contact_id}": _contact_on_list,
    "/v1/contacts/imports/{import_id}": _contact_import,
    "/v1/domains/{domain_id}": _sending_domain,
    "/v1/templates/{template_id}": _template,
    "/v1/messages/{message_id:uuid}": _message,
    "/v1/suppressions/{address}": _suppressed_address,
    "/v1/suppressions/domains/{domain}": _suppressed_domain,
    "/v1/webhooks/{webhook_id}": _webhook,
    "/v1/webhooks/{webhook_id:uuid}": _webhook,
    "/v1/provider-webhooks/{webhook_id}": _provider_webhook,
    "/v1/smtp-credentials/{credential_id}": _smtp_credential,
    "/v1/bounce-mailboxes/{mailbox_id:uuid}": _bounce_mailbox,
    "/v1/inbound-domains/{domain_id:uuid}": _inbound_domain,
    "/v1/inbound-routes/{route_id:uuid}": _inbound_route,
    "/v1/inbound-emails/{email_id:uuid}": _inbound_email,
}

# Upserts addressed by a natural key (an email address, an external id): the
# same key in another workspace names that workspace's own contact, so these
# create instead of answering 404; TestKeyedUpserts checks them.
KEYED_UPSERTS = {
    ("PUT", "/v1/contacts/by-email/{email}"),
    ("PUT", "/v1/contacts/by-external-id/{external_id}"),
}

# Public routes whose path token is the credential (a double opt-in link): the
# link works for whoever holds it, whatever API key they hold, so there is no
# "other workspace" to refuse. tests/contacts/test_optin.py covers the tokens.
PUBLIC_TOKEN_ROUTES = {("GET", "/v1/confirm/{token}"), ("POST", "/v1/confirm/{token}")}

# Request bodies for id routes whose body cannot be `{}`, keyed "METHOD path".
BODIES: dict[str, Any] = {
    "POST /v1/webhooks/{webhook_id}/replay": {"since": "2026-01-01T00:00:00Z"},
    "POST /v1/webhooks/{webhook_id}/test": {"event_type": "contact.created"},
    "PUT /v1/contacts/{contact_id}/subscriptions/{list_id}": {"status": "subscribed"},
    "POST /v1/templates/{template_id}/versions": {"subject": "Hi", "text": "Hello"},
    "POST /v1/templates/{template_id}/test-send": {"to": ["qa@a.example"], "from": "t@a.example"},
    "POST /v1/templates/{template_id}/versions/{number}/test-send": {
        "to": ["qa@a.example"],
        "from": "t@a.example",
    },
}


def _api_routes() -> list[tuple[str, str]]:
    app = create_app(manage_database=False)
    found: set[tuple[str, str]] = set()
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute) or not context.path:
            continue
        if not context.path.startswith("/v1/") or context.path == "/v1/docs":
            continue
        for method in context.methods or ():
            if method != "HEAD":
                found.add((method, context.path))
    return sorted(found, key=lambda r: (r[1], r[0]))


_ROUTES = _api_routes()
ID_ROUTES = [
    r
    for r in _ROUTES
    if _PARAM.search(r[1]) and r not in KEYED_UPSERTS and r not in PUBLIC_TOKEN_ROUTES
]
LIST_ROUTES = [r for r in _ROUTES if r[0] == "GET" and not _PARAM.search(r[1])]


def _factory_for(path: str) -> Factory:
    first = _PARAM.search(path)
    assert first is not None
    prefix = path[: first.end()]
    factory = FACTORIES.get(prefix)
    if factory is None:
        pytest.fail(
            f"no factory for {prefix}: add one to FACTORIES in {__name__} that creates "
            "an object of this kind in a workspace, so its cross-tenant test can run",
            pytrace=False,
        )
    return factory


async def _snapshot(db: Database, owned: Owned) -> dict[str, Any] | None:
    async with db.session() as session:
        row = await session.get(owned.model, owned.primary_key)
        if row is None:
            return None
        return {attr.key: getattr(row, attr.key) for attr in sa_inspect(owned.model).column_attrs}


async def _call(
    client: httpx.AsyncClient, method: str, path: str, params: dict[str, str], actor: Actor
) -> httpx.Response:
    url = _PARAM.sub(lambda m: params[m.group(1)], path)
    key = f"{method} {path}"
    body = BODIES.get(key, {}) if method in ("POST", "PUT", "PATCH") else None
    return await client.request(method, url, headers=actor.headers, json=body)


@pytest.mark.parametrize(("method", "path"), ID_ROUTES, ids=[f"{m} {p}" for m, p in ID_ROUTES])
class TestObjectRoutes:
    async def test_other_workspace_gets_404_and_changes_nothing(
        self,
        client: httpx.AsyncClient,
        db: Database,
        admin_actor: Actor,
        other_workspace_actor: Actor,
        method: str,
        path: str,
    ) -> None:
        factory = _factory_for(path)
        async with db.session() as session:
            owned = await factory(session, admin_actor.workspace_id)
        missing = set(_PARAM.findall(path)) - set(owned.params)
        assert not missing, f"factory for {path} gave no value for {missing}"
        before = await _snapshot(db, owned)

        response = await _call(client, method, path, owned.params, other_workspace_actor)

        assert response.status_code == 404, (
            f"{method} {path} with another workspace's id answered "
            f"{response.status_code}: {response.text[:300]}"
        )
        code = response.json()["code"]
        # A route's own 404 (`not_found`, `job_not_found`...), not an unmatched path.
        assert code == "not_found" or code.endswith("_not_found"), code
        assert "No route matches" not in response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert str(admin_actor.workspace_id) not in response.text
        assert await _snapshot(db, owned) == before

        # Control: the owner reaches the same object through the same route, so
        # the 404 above was isolation, not a bad id or a bad body.
        own = await _call(client, method, path, owned.params, admin_actor)
        assert own.status_code != 404, f"{method} {path}: A's own call answered 404"
        assert own.status_code != 422, (
            f"{method} {path} refused the test body ({own.text[:300]}); add one to BODIES"
        )


@pytest.mark.parametrize(("method", "path"), LIST_ROUTES, ids=[f"{m} {p}" for m, p in LIST_ROUTES])
class TestListRoutes:
    async def test_other_workspace_never_sees_a_row(
        self,
        client: httpx.AsyncClient,
        db: Database,
        admin_actor: Actor,
        other_workspace_actor: Actor,
        method: str,
        path: str,
    ) -> None:
        async def both() -> tuple[Any, Any]:
            as_a = await client.get(path, headers=admin_actor.headers)
            as_b = await client.get(path, headers=other_workspace_actor.headers)
            assert as_a.status_code == as_b.status_code == 200, (as_a.text[:300], as_b.text[:300])
            assert str(admin_actor.workspace_id) not in as_b.text
            # Downloads (CSV, JSON lines) are compared as text.
            if not as_a.headers["content-type"].startswith("application/json"):
                return as_a.text, as_b.text
            return as_a.json(), as_b.json()

        a_before, b_before = await both()
        async with db.session() as session:
            for factory in FACTORIES.values():
                await factory(session, admin_actor.workspace_id)
        # A mutating call gives A's audit log a row to leak, and renames A.
        await client.patch("/v1/workspace", headers=admin_actor.headers, json={"name": "A corp"})
        a_after, b_after = await both()

        assert b_after == b_before, f"{path} shows B a change made only in workspace A"
        # Control: A's own view did change, so the list can show these objects.
        assert a_after != a_before, f"{path} shows no change for A; add a factory it lists"


class TestKeyedUpserts:
    async def test_upserts_never_reach_another_workspaces_contact(
        self,
        client: httpx.AsyncClient,
        db: Database,
        admin_actor: Actor,
        other_workspace_actor: Actor,
    ) -> None:
        async with db.session() as session:
            owned = await _contact(session, admin_actor.workspace_id)
            contact = await session.get(Contact, owned.primary_key)
            assert contact is not None
            email = contact.email
            contact.external_id = "crm-1"
        before = await _snapshot(db, owned)
        assert KEYED_UPSERTS <= set(_ROUTES)
        for url, body in (
            (f"/v1/contacts/by-email/{email}", {"first_name": "Mallory"}),
            ("/v1/contacts/by-external-id/crm-1", {"email": "mallory@b.example"}),
        ):
            response = await client.put(url, headers=other_workspace_actor.headers, json=body)
            assert response.status_code in (200, 201), response.text
            assert response.json()["id"] != str(owned.primary_key)
        assert await _snapshot(db, owned) == before
