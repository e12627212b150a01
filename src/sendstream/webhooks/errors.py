"""Errors of the webhooks domain, each with its stable problem+json `code`.

(Two people add to this file: append new classes at the end.)"""

from __future__ import annotations

import uuid

from sendstream.core.errors import InvalidInput, NotFound


class WebhookNotFound(NotFound):
    code = "webhook_not_found"

    def __init__(self, webhook_id: uuid.UUID | str) -> None:
        super().__init__(f"No webhook endpoint {webhook_id} in this workspace.")


class InvalidWebhookUrl(InvalidInput):
    code = "invalid_webhook_url"

    def __init__(self, url: str, why: str) -> None:
        super().__init__(f"url: {url[:200]!r} is not a usable webhook URL: {why}.")


class WebhookHttpsRequired(InvalidInput):
    code = "webhook_https_required"

    def __init__(self, url: str) -> None:
        super().__init__(
            f"url: {url[:200]!r} must use https:// (plain http is accepted only in "
            "development, or where `webhooks.allow_http` is set)."
        )


class WebhookUrlNotAllowed(InvalidInput):
    """The URL's host is, or resolves to, an address webhooks may not reach
    (loopback, private, link-local, cloud metadata ...): server-side request
    forgery protection."""

    code = "webhook_url_not_allowed"

    def __init__(self, host: str, address: str, reason: str) -> None:
        shown = host if host == address else f"{host} ({address})"
        super().__init__(
            f"url: {shown} is a {reason} address, which webhooks may not reach. A workspace "
            "admin can allow private addresses (PATCH /v1/webhooks/settings) for local "
            "development."
        )


class WebhookHostUnresolvable(InvalidInput):
    code = "webhook_host_unresolvable"

    def __init__(self, host: str, why: str) -> None:
        super().__init__(f"url: the host {host[:253]!r} does not resolve: {why}.")


class UnknownEventType(InvalidInput):
    code = "unknown_event_type"

    def __init__(self, pattern: str) -> None:
        super().__init__(
            f"event_types: {pattern[:100]!r} is neither a known event type nor a pattern "
            "matching one (`message.*`, `*`); docs/webhooks.md lists them."
        )


class InvalidWebhookHeader(InvalidInput):
    code = "invalid_header"

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"headers: {name[:100]!r} {why}.")


class WebhookDeliveryNotFound(NotFound):
    code = "webhook_delivery_not_found"

    def __init__(self, delivery_id: int) -> None:
        super().__init__(f"No delivery {delivery_id} of this webhook endpoint.")


class InvalidReplayRange(InvalidInput):
    code = "invalid_replay_range"

    def __init__(self, why: str) -> None:
        super().__init__(f"since/until: {why}.")
