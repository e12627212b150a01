"""Mounts every domain router under /v1 in one place."""

from __future__ import annotations

from fastapi import APIRouter

from sendstream.bounces.imap_router import router as bounce_mailboxes_router
from sendstream.bounces.inbound_router import router as inbound_router
from sendstream.bounces.providers.router import router as provider_webhooks_router
from sendstream.contacts.router import router as contacts_router
from sendstream.delivery.domain_router import router as domains_router
from sendstream.delivery.message_router import router as messages_router
from sendstream.delivery.smtp_credential_router import router as smtp_credentials_router
from sendstream.events.router import router as events_router
from sendstream.jobs.router import router as jobs_router
from sendstream.templates.router import router as templates_router
from sendstream.webhooks.delivery_router import router as webhook_deliveries_router
from sendstream.webhooks.endpoint_router import router as webhooks_router
from sendstream.workspaces.router import router as workspaces_router

api_router = APIRouter(prefix="/v1")
api_router.include_router(workspaces_router)
api_router.include_router(jobs_router)
api_router.include_router(contacts_router)
api_router.include_router(templates_router)
api_router.include_router(domains_router)
api_router.include_router(messages_router)
api_router.include_router(webhooks_router)
api_router.include_router(webhook_deliveries_router)
api_router.include_router(events_router)
api_router.include_router(smtp_credentials_router)
api_router.include_router(provider_webhooks_router)
api_router.include_router(bounce_mailboxes_router)
api_router.include_router(inbound_router)
