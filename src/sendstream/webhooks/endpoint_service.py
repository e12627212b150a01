"""The rules of webhook endpoints.

- Saving a URL validates it (`ssrf.check_url`: http(s) only, https outside
  development, no credentials, host resolving to public addresses unless
  the workspace allows private ones) and the event types against the
  catalogue; custom headers may not forge or break the request
  (`invalid_header`).
- Secrets: the `whsec_` secret (and the Ed25519 key for `v1a`) is generated
  here, stored as `core.secrets` tokens bound to
  `webhook_endpoints.<column>:<id>`, and returned in clear only by
  `create_endpoint` and `rotate_secret`. A rotation keeps the old secret
  signing for `overlap_seconds`; only one previous secret is kept, so a
  second rotation within the overlap ends the first one's.
- `signing_material` and `custom_headers` are what the delivery engine asks
  before each request.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core import secrets
from sendstream.core.ids import uuid7
from sendstream.core.pagination import PageParams, cursor_uuid, trim_page
from sendstream.core.settings import get_settings
from sendstream.models.webhook_endpoint import WebhookEndpoint
from sendstream.webhooks import signing, ssrf
from sendstream.webhooks.catalogue import validate_patterns
from sendstream.webhooks.endpoint_repository import endpoint_repository
from sendstream.webhooks.errors import InvalidWebhookHeader, WebhookNotFound
from sendstream.webhooks.schemas import (
    WebhookCreate,
    WebhookFilters,
    WebhookRead,
    WebhookUpdate,
)

# RFC 9110 token characters: what a header name may hold.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Headers the sender sets itself or that change how the request is framed
# or routed: a custom value would forge the signature headers or break the
# request.
_RESERVED = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "expect",
        "proxy-authorization",
        "proxy-connection",
    }
)
_RESERVED_PREFIX = "webhook-"
HINT_CHARS = 4


def secret_context(column: str, endpoint_id: uuid.UUID) -> str:
    """The `core.secrets` context of an endpoint's secret column: a token
    decrypts only in the row and column it was written to."""
    return f"webhook_endpoints.{column}:{endpoint_id}"


@dataclass(frozen=True)
class SigningMaterial:
    """What signs one request: the HMAC secrets (current first) and the
    Ed25519 keys, for `signing.sign`."""

    secrets: list[bytes]
    ed25519_keys: list[Ed25519PrivateKey]


def _schemes(scheme: str) -> set[str]:
    return set(scheme.split(","))


def validate_headers(headers: dict[str, str] | None) -> dict[str, str]:
    if not headers:
        return {}
    seen: set[str] = set()
    for name, value in headers.items():
        lower = name.lower()
        if not _TOKEN.match(name):
            raise InvalidWebhookHeader(
                name, "is not a header name (letters, digits and !#$%&'*+-.^_`|~ only)"
            )
        if lower in _RESERVED or lower.startswith(_RESERVED_PREFIX):
            raise InvalidWebhookHeader(name, "is set by Sendstream itself and cannot be replaced")
        if lower in seen:
            raise InvalidWebhookHeader(name, "is given twice (header names ignore case)")
        seen.add(lower)
        if any(c in value for c in "\r\n\x00") or any(
            (ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value
        ):
            raise InvalidWebhookHeader(name, "has a value with a line break or control character")
    return dict(headers)


def _filters_json(filters: WebhookFilters) -> dict[str, Any]:
    return filters.model_dump(mode="json", exclude_none=True)


class EndpointService:
    # --- saving

    async def _check_url(self, session: AsyncSession, workspace_id: uuid.UUID, url: str) -> None:
        allowed = await endpoint_repository.private_addresses_allowed(session, workspace_id)
        await ssrf.check_url(url, ssrf.private_allowed(allowed))

    def _set_headers(self, endpoint: WebhookEndpoint, headers: dict[str, str]) -> None:
        endpoint.headers_encrypted = (
            secrets.encrypt(
                json.dumps(headers).encode(), secret_context("headers_encrypted", endpoint.id)
            )
            if headers
            else None
        )

    def _ensure_ed25519(self, endpoint: WebhookEndpoint) -> None:
        if "v1a" in _schemes(endpoint.signature_scheme) and not endpoint.ed25519_private_encrypted:
            endpoint.ed25519_private_encrypted = secrets.encrypt(
                signing.generate_ed25519_key(),
                secret_context("ed25519_private_encrypted", endpoint.id),
            )

    async def create_endpoint(
        self, session: AsyncSession, workspace_id: uuid.UUID, body: WebhookCreate
    ) -> tuple[WebhookEndpoint, str]:
        """The new endpoint and its `whsec_` secret (shown once)."""
        event_types = validate_patterns(body.event_types)
        headers = validate_headers(body.headers)
        await self._check_url(session, workspace_id, body.url)
        endpoint_id = uuid7()
        secret = signing.generate_secret()
        endpoint = WebhookEndpoint(
            id=endpoint_id,
            workspace_id=workspace_id,
            url=body.url,
            description=body.description,
            enabled=body.enabled,
            event_types=event_types,
            filters=_filters_json(body.filters),
            secret_encrypted=secrets.encrypt(
                secret, secret_context("secret_encrypted", endpoint_id)
            ),
            signature_scheme=body.signature_scheme,
            fifo=body.fifo,
            max_concurrency=body.max_concurrency,
            batch_max_events=body.batch_max_events,
            batch_window_ms=body.batch_window_ms,
        )
        if not body.enabled:
            endpoint.disabled_at = datetime.now(UTC)
            endpoint.disabled_reason = "created disabled"
        self._set_headers(endpoint, headers)
        self._ensure_ed25519(endpoint)
        created = await endpoint_repository.add(session, endpoint)
        return created, signing.format_secret(secret)

    async def update_endpoint(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        body: WebhookUpdate,
    ) -> WebhookEndpoint:
        """Fields given change; `description`, `headers` and
        `batch_max_events` given as null are cleared."""
        given = body.model_fields_set
        # Validate before locking: the URL check may wait on DNS.
        event_types = validate_patterns(body.event_types) if body.event_types else None
        headers = validate_headers(body.headers) if "headers" in given else None
        if body.url is not None:
            await self._check_url(session, workspace_id, body.url)
        endpoint = await self._locked(session, workspace_id, endpoint_id)
        if body.url is not None:
            endpoint.url = body.url
        if event_types is not None:
            endpoint.event_types = event_types
        if body.filters is not None:
            endpoint.filters = _filters_json(body.filters)
        if "description" in given:
            endpoint.description = body.description
        if headers is not None:
            self._set_headers(endpoint, headers)
        for name in ("fifo", "max_concurrency", "batch_window_ms", "signature_scheme"):
            value = getattr(body, name)
            if value is not None:
                setattr(endpoint, name, value)
        if "batch_max_events" in given:
            endpoint.batch_max_events = body.batch_max_events
        self._ensure_ed25519(endpoint)
        if body.enabled is True and not endpoint.enabled:
            self._enable(endpoint)
        elif body.enabled is False and endpoint.enabled:
            endpoint.enabled = False
            endpoint.disabled_at = datetime.now(UTC)
            endpoint.disabled_reason = "disabled through the API"
        return await endpoint_repository.save(session, endpoint)

    def _enable(self, endpoint: WebhookEndpoint) -> None:
        endpoint.enabled = True
        endpoint.disabled_reason = None
        endpoint.disabled_at = None
        endpoint.failing_since = None

    async def enable_endpoint(
        self, session: AsyncSession, workspace_id: uuid.UUID, endpoint_id: uuid.UUID
    ) -> WebhookEndpoint:
        """Resume delivery to an endpoint that was disabled (by a user, by a
        410, or after failing too long); its failure streak starts afresh.
        Enabling an enabled endpoint changes nothing."""
        endpoint = await self._locked(session, workspace_id, endpoint_id)
        if not endpoint.enabled or endpoint.disabled_reason or endpoint.failing_since:
            self._enable(endpoint)
        return await endpoint_repository.save(session, endpoint)

    async def rotate_secret(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        overlap_seconds: int,
    ) -> tuple[WebhookEndpoint, str]:
        """A new `whsec_` secret (returned once); the current one keeps
        signing beside it for `overlap_seconds` (0: it stops at once)."""
        endpoint = await self._locked(session, workspace_id, endpoint_id)
        current = secrets.decrypt(
            endpoint.secret_encrypted, secret_context("secret_encrypted", endpoint.id)
        )
        new = signing.generate_secret()
        if overlap_seconds > 0:
            endpoint.previous_secret_encrypted = secrets.encrypt(
                current, secret_context("previous_secret_encrypted", endpoint.id)
            )
            endpoint.previous_secret_expires_at = datetime.now(UTC) + timedelta(
                seconds=overlap_seconds
            )
        else:
            endpoint.previous_secret_encrypted = None
            endpoint.previous_secret_expires_at = None
        endpoint.secret_encrypted = secrets.encrypt(
            new, secret_context("secret_encrypted", endpoint.id)
        )
        return await endpoint_repository.save(session, endpoint), signing.format_secret(new)

    async def delete_endpoint(
        self, session: AsyncSession, workspace_id: uuid.UUID, endpoint_id: uuid.UUID
    ) -> None:
        """Delivery to it stops with the commit; its deliveries and attempts
        go with it."""
        endpoint = await self._locked(session, workspace_id, endpoint_id)
        await endpoint_repository.delete(session, endpoint)

    # --- reading

    async def get_endpoint(
        self, session: AsyncSession, workspace_id: uuid.UUID, endpoint_id: uuid.UUID
    ) -> WebhookEndpoint:
        found = await endpoint_repository.get(session, workspace_id, endpoint_id)
        if found is None:
            raise WebhookNotFound(endpoint_id)
        return found

    async def _locked(
        self, session: AsyncSession, workspace_id: uuid.UUID, endpoint_id: uuid.UUID
    ) -> WebhookEndpoint:
        found = await endpoint_repository.get(session, workspace_id, endpoint_id, for_update=True)
        if found is None:
            raise WebhookNotFound(endpoint_id)
        return found

    async def list_endpoints(
        self, session: AsyncSession, workspace_id: uuid.UUID, page: PageParams
    ) -> tuple[list[WebhookEndpoint], str | None]:
        rows = list(
            await endpoint_repository.page(
                session, workspace_id, after=cursor_uuid(page.cursor, "id"), limit=page.limit + 1
            )
        )
        return trim_page(rows, page.limit, lambda row: {"id": str(row.id)})

    # --- what answers and the delivery engine need

    def describe(self, endpoint: WebhookEndpoint) -> WebhookRead:
        """The endpoint as answers show it: no secret, no header values."""
        return WebhookRead.of(
            endpoint,
            secret_hint=self.secret_hint(endpoint),
            public_key=self.public_key(endpoint),
            header_names=list(self.custom_headers(endpoint)),
        )

    def secret_hint(self, endpoint: WebhookEndpoint) -> str:
        """`whsec_` and the first characters of the secret, then `...`: enough
        to tell two secrets apart, far too little to guess one."""
        secret = secrets.decrypt(
            endpoint.secret_encrypted, secret_context("secret_encrypted", endpoint.id)
        )
        return signing.format_secret(secret)[: len(signing.SECRET_PREFIX) + HINT_CHARS] + "..."

    def _ed25519_key(self, endpoint: WebhookEndpoint) -> Ed25519PrivateKey | None:
        if "v1a" not in _schemes(endpoint.signature_scheme) or not (
            endpoint.ed25519_private_encrypted
        ):
            return None
        return signing.load_ed25519_key(
            secrets.decrypt(
                endpoint.ed25519_private_encrypted,
                secret_context("ed25519_private_encrypted", endpoint.id),
            )
        )

    def public_key(self, endpoint: WebhookEndpoint) -> str | None:
        """`whpk_...` for endpoints that sign with Ed25519, else None."""
        key = self._ed25519_key(endpoint)
        return signing.public_key(key) if key is not None else None

    def custom_headers(self, endpoint: WebhookEndpoint) -> dict[str, str]:
        if not endpoint.headers_encrypted:
            return {}
        headers: dict[str, str] = json.loads(
            secrets.decrypt(
                endpoint.headers_encrypted, secret_context("headers_encrypted", endpoint.id)
            )
        )
        return headers

    def signing_material(
        self, endpoint: WebhookEndpoint, now: datetime | None = None
    ) -> SigningMaterial:
        """The secrets and keys that sign a request sent at `now`: with `v1`,
        the current secret and, until `previous_secret_expires_at`, the
        previous one; with `v1a`, the Ed25519 key."""
        now = now or datetime.now(UTC)
        hmac_secrets: list[bytes] = []
        if "v1" in _schemes(endpoint.signature_scheme):
            hmac_secrets.append(
                secrets.decrypt(
                    endpoint.secret_encrypted, secret_context("secret_encrypted", endpoint.id)
                )
            )
            if (
                endpoint.previous_secret_encrypted
                and endpoint.previous_secret_expires_at is not None
                and endpoint.previous_secret_expires_at > now
            ):
                hmac_secrets.append(
                    secrets.decrypt(
                        endpoint.previous_secret_encrypted,
                        secret_context("previous_secret_encrypted", endpoint.id),
                    )
                )
        key = self._ed25519_key(endpoint)
        return SigningMaterial(hmac_secrets, [key] if key is not None else [])

    # --- workspace settings

    async def private_addresses_allowed(
        self, session: AsyncSession, workspace_id: uuid.UUID
    ) -> bool:
        """The workspace's own switch (not the installation-wide setting)."""
        return await endpoint_repository.private_addresses_allowed(session, workspace_id)

    async def set_private_addresses_allowed(
        self, session: AsyncSession, workspace_id: uuid.UUID, allowed: bool
    ) -> None:
        """Endpoints saved earlier are not re-checked here; delivery checks
        every address again before it connects."""
        await endpoint_repository.set_private_addresses_allowed(session, workspace_id, allowed)

    def installation_allows_private_addresses(self) -> bool:
        return get_settings().webhooks.allow_private_addresses


endpoint_service = EndpointService()
