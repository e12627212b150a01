"""Every event type Sendstream emits, with what it means and an example of
its `data`: the contract webhook receivers and `GET /v1/events` readers
code against, and the list endpoint subscriptions are validated against.

A test scans the source for emitted types and fails when one is missing
here, and docs/webhooks.md is checked against this module, so the three
cannot drift apart. The examples are the shapes the emitting code writes;
webhook payloads add `workspace_id` and `event_position` to `data`.

`matches(patterns, type)`: a pattern is an exact type, `prefix.*` (every type
starting `prefix.`) or `*` (everything). `passes_filters(filters, data)`:
the endpoint filters (`streams`, `list_ids`, `tags`); each one given must
intersect the event's `stream` / `list_id` / `tags`, and an event without
that field does not pass it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sendstream.webhooks.errors import UnknownEventType


@dataclass(frozen=True)
class EventTypeInfo:
    description: str
    example: dict[str, Any]


_CONTACT_ID = "0193a5c8-6f2e-7c41-9a53-2f1d0c6e8b47"
_LIST_ID = "0193a5c8-7a10-7d2b-8e4f-5b6c7d8e9f01"
_MESSAGE_ID = "0193a5d0-1b2c-7e3d-8f4a-5b6c7d8e9f10"
_TEMPLATE_ID = "0193a5b0-0c1d-7e2f-8a3b-4c5d6e7f8091"
_VERSION_ID = "0193a5b0-1d2e-7f3a-8b4c-5d6e7f809102"
_IMPORT_ID = "0193a5c0-2e3f-7a4b-8c5d-6e7f80910213"
_DOMAIN_ID = "0193a5a0-3f4a-7b5c-8d6e-7f8091021324"
_WEBHOOK_ID = "0193a5e0-4a5b-7c6d-8e7f-809102132435"
_ADDRESS_HASH = "4f0c2d8e9b7a61532e1d0c9b8a7f6e5d4c3b2a1908f7e6d5c4b3a29180f7e6d5"

_CONTACT = {
    "id": _CONTACT_ID,
    "email": "ada@example.com",
    "external_id": "crm-1842",
    "external_ids": {"hubspot": "5123"},
    "first_name": "Ada",
    "last_name": "Lovelace",
    "timezone": "Europe/London",
    "locale": "en-GB",
    "status": "active",
    "attributes": {"plan": "pro"},
    "tags": ["customer"],
    "created_at": "2026-11-26T10:15:00.123456Z",
    "updated_at": "2026-11-26T10:15:00.123456Z",
}

EVENT_TYPES: dict[str, EventTypeInfo] = {
    # --- contacts
    "contact.created": EventTypeInfo(
        "A contact was created (API, batch, or a double opt-in form). From an "
        "import, `data` is short: `id`, `email`, `source: import`, `import_id` "
        "(and only when the import asked for per-contact events).",
        {"contact": _CONTACT, "source": "api"},
    ),
    "contact.updated": EventTypeInfo(
        "A contact's fields changed; `changes` holds the old and new value of each "
        "changed field. From an import, `import_id` is added.",
        {
            "id": _CONTACT_ID,
            "email": "ada@example.com",
            "changes": {"first_name": {"old": "Ada", "new": "Augusta"}},
            "source": "api",
        },
    ),
    "contact.deleted": EventTypeInfo(
        "A contact was deleted (its consent history and suppressions stay).",
        {"id": _CONTACT_ID, "email": "ada@example.com", "source": "api"},
    ),
    "contact.erased": EventTypeInfo(
        "A person was erased (GDPR): their data is gone, only a keyed hash of the "
        "address stays as a suppression. `id` is null when no contact existed.",
        {"id": _CONTACT_ID, "address_hash": _ADDRESS_HASH},
    ),
    "contact.subscribed": EventTypeInfo(
        "A contact was subscribed to a list (`list_id`), or their own status became "
        "active again (`list_id` null). From an import, `import_id` is added.",
        {
            "id": _CONTACT_ID,
            "email": "ada@example.com",
            "list_id": _LIST_ID,
            "status": "subscribed",
            "source": "api",
        },
    ),
    "contact.unsubscribed": EventTypeInfo(
        "A contact left a list (`list_id`), or unsubscribed from everything (`list_id` null).",
        {
            "id": _CONTACT_ID,
            "email": "ada@example.com",
            "list_id": _LIST_ID,
            "status": "unsubscribed",
            "source": "unsubscribe_link",
        },
    ),
    "contact.bounced": EventTypeInfo(
        "A hard bounce (or the soft-bounce policy) made the contact `bounced`: its "
        "global state and the list subscriptions in `list_ids`; `previous_status` "
        "is the global state before.",
        {
            "id": _CONTACT_ID,
            "email": "ada@example.com",
            "status": "bounced",
            "previous_status": "active",
            "list_ids": [_LIST_ID],
            "message_id": _MESSAGE_ID,
            "reason": "user_unknown",
            "source": "mx",
        },
    ),
    "contact.complained": EventTypeInfo(
        "A complaint made the contact `complained`: its global state and the list "
        "subscriptions in `list_ids`.",
        {
            "id": _CONTACT_ID,
            "email": "ada@example.com",
            "status": "complained",
            "previous_status": "active",
            "list_ids": [_LIST_ID],
            "message_id": _MESSAGE_ID,
            "reason": "complaint",
            "source": "mx",
        },
    ),
    "contact_import.completed": EventTypeInfo(
        "A contact import finished; the totals of what it did.",
        {
            "id": _IMPORT_ID,
            "status": "completed",
            "list_id": _LIST_ID,
            "mode": "upsert",
            "events": "summary",
            "rows": 1200,
            "created": 1000,
            "updated": 150,
            "unchanged": 40,
            "skipped": 0,
            "subscribed": 1150,
            "rejected": 10,
            "error": None,
        },
    ),
    "contact_import.failed": EventTypeInfo(
        "A contact import stopped on an error; what it had done until then.",
        {
            "id": _IMPORT_ID,
            "status": "failed",
            "list_id": None,
            "mode": "upsert",
            "events": "summary",
            "rows": 500,
            "created": 480,
            "updated": 0,
            "unchanged": 0,
            "skipped": 0,
            "subscribed": 0,
            "rejected": 20,
            "error": "row 501: the file is not valid UTF-8",
        },
    ),
    "field.created": EventTypeInfo(
        "A custom contact field was defined.", {"key": "plan", "type": "text"}
    ),
    "field.updated": EventTypeInfo(
        "A custom field's definition changed (`old_key` differs from `key` on a rename).",
        {"key": "plan", "old_key": "plan"},
    ),
    "field.deleted": EventTypeInfo("A custom field was deleted.", {"key": "plan"}),
    # --- sending domains
    "domain.verified": EventTypeInfo(
        "A sending domain's DNS records were all found right: it can send.",
        {
            "domain_id": _DOMAIN_ID,
            "name": "example.com",
            "status": "verified",
            "records": {"dkim:ss1-k2m9qa": "ok", "spf": "ok", "return_path_mx": "ok"},
        },
    ),
    "domain.verification_failed": EventTypeInfo(
        "A verified sending domain's check found a required record missing or wrong.",
        {
            "domain_id": _DOMAIN_ID,
            "name": "example.com",
            "status": "failed",
            "records": {"dkim:ss1-k2m9qa": "missing", "spf": "ok", "return_path_mx": "ok"},
        },
    ),
    # --- messages
    "message.queued": EventTypeInfo(
        "A message was accepted for sending (at once, or at `send_at`).",
        {
            "message_id": _MESSAGE_ID,
            "to": "ada@example.com",
            "from": "news@example.com",
            "stream": "transactional",
            "template_version_id": _VERSION_ID,
            "subject": None,
            "send_at": None,
            "tags": ["welcome"],
            "metadata": {"order_id": "A-1001"},
        },
    ),
    "message.sent": EventTypeInfo(
        "The receiving mail server accepted the message.",
        {
            "message_id": _MESSAGE_ID,
            "to": "ada@example.com",
            "attempt": 1,
            "smtp_code": 250,
            "enhanced": "2.0.0",
            "response": "250 2.0.0 OK queued as 4XyZ",
            "relay": "smtp.relay.example:587",
            "size_bytes": 18342,
            "sent_at": "2026-11-26T10:15:02.511+00:00",
        },
    ),
    "message.deferred": EventTypeInfo(
        "A temporary failure (4xx, network): Sendstream retries at `next_attempt_at`.",
        {
            "message_id": _MESSAGE_ID,
            "to": "ada@example.com",
            "attempt": 1,
            "smtp_code": 451,
            "enhanced": "4.7.1",
            "response": "451 4.7.1 Greylisted, try again later",
            "relay": "smtp.relay.example:587",
            "next_attempt_at": "2026-11-26T10:16:02.511+00:00",
            "uncertain": False,
        },
    ),
    "message.failed": EventTypeInfo(
        "The message will not be sent: rejected (5xx), refused before sending "
        "(`reason` says why), or retries ran out (`retries_exhausted`).",
        {
            "message_id": _MESSAGE_ID,
            "to": "ada@example.com",
            "attempt": 1,
            "smtp_code": 550,
            "enhanced": "5.1.1",
            "response": "550 5.1.1 No such user",
            "relay": "smtp.relay.example:587",
            "reason": "smtp",
            "code": "smtp_rejected",
        },
    ),
    "message.opened": EventTypeInfo(
        "The open pixel was loaded. `machine` is true when a scanner or a privacy "
        "proxy (not a person) loaded it, `reason` says which; `unique` marks a "
        "person's first open.",
        {
            "message_id": _MESSAGE_ID,
            "contact_id": _CONTACT_ID,
            "machine": False,
            "reason": None,
            "unique": True,
            "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
        },
    ),
    "message.clicked": EventTypeInfo(
        "A tracked link was followed; as `message.opened`, plus the `url`.",
        {
            "message_id": _MESSAGE_ID,
            "contact_id": _CONTACT_ID,
            "machine": False,
            "reason": None,
            "unique": True,
            "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0)",
            "url": "https://example.com/offer?utm_source=newsletter",
        },
    ),
    "message.unsubscribed": EventTypeInfo(
        "The recipient unsubscribed through the message's link or one-click header: "
        "from one list (`scope: list`) or everything (`scope: all`).",
        {
            "message_id": _MESSAGE_ID,
            "contact_id": _CONTACT_ID,
            "list_id": _LIST_ID,
            "scope": "list",
            "method": "one_click",
        },
    ),
    # --- bounces, complaints, auto-replies (bounces/service.py)
    "message.bounced": EventTypeInfo(
        "The message bounced for `recipient`: `hard` true (the address is dead; it "
        "is suppressed) or false (a soft bounce, counted toward the soft-bounce "
        "policy). `reason` is from the fixed taxonomy of docs/bounces.md, `status` "
        "the enhanced status code, `source` the channel (mx, imap, ses, sendgrid ...).",
        {
            "message_id": _MESSAGE_ID,
            "contact_id": _CONTACT_ID,
            "recipient": "ada@example.com",
            "hard": True,
            "reason": "user_unknown",
            "status": "5.1.1",
            "diagnostic": "550 5.1.1 <ada@example.com>: Recipient address rejected",
            "source": "mx",
        },
    ),
    "message.complained": EventTypeInfo(
        "The recipient reported the message as spam (an ARF feedback-loop report, or "
        "a provider's complaint event); the address is suppressed.",
        {
            "message_id": _MESSAGE_ID,
            "contact_id": _CONTACT_ID,
            "recipient": "ada@example.com",
            "feedback_type": "abuse",
            "source": "mx",
        },
    ),
    "message.delayed": EventTypeInfo(
        "A receiving server reported that it is still trying to deliver the message "
        "(a delayed-delivery notice); nothing else changes.",
        {
            "message_id": _MESSAGE_ID,
            "contact_id": _CONTACT_ID,
            "recipient": "ada@example.com",
            "reason": "network",
            "status": "4.4.7",
            "diagnostic": "Connection timed out",
            "source": "mx",
        },
    ),
    "message.auto_replied": EventTypeInfo(
        "The recipient's mailbox answered by itself: an out-of-office reply "
        "(`reason: vacation`) or a challenge to confirm the sender (`challenge`); "
        "never counted as a bounce.",
        {
            "message_id": _MESSAGE_ID,
            "contact_id": _CONTACT_ID,
            "recipient": "ada@example.com",
            "reason": "vacation",
            "status": None,
            "diagnostic": None,
            "source": "mx",
        },
    ),
    "message.delivered": EventTypeInfo(
        "The relaying provider reported the message delivered to the recipient's "
        "mailbox (ESP delivery events).",
        {
            "message_id": _MESSAGE_ID,
            "contact_id": _CONTACT_ID,
            "recipient": "ada@example.com",
            "diagnostic": "250 2.0.0 OK",
            "source": "ses",
        },
    ),
    # --- suppressions
    "suppression.added": EventTypeInfo(
        "An address (or, with `domain`, a whole domain) was put on the suppression "
        "list; `created` is false when a stronger reason replaced an existing entry.",
        {
            "address": "ada@example.com",
            "domain": None,
            "reason": "bounced",
            "source": "bounce",
            "created": True,
        },
    ),
    "suppression.removed": EventTypeInfo(
        "An address or domain was taken off the suppression list.",
        {"address": "ada@example.com", "domain": None, "reason": "manual"},
    ),
    # --- templates
    "template.created": EventTypeInfo(
        "A template (or layout, or partial) was created with its first version.",
        {
            "id": _TEMPLATE_ID,
            "key": "welcome",
            "name": "Welcome",
            "kind": "template",
            "version": {"id": _VERSION_ID, "number": 1},
        },
    ),
    "template.version_created": EventTypeInfo(
        "A new immutable version of a template was stored.",
        {
            "template_id": _TEMPLATE_ID,
            "key": "welcome",
            "id": _VERSION_ID,
            "number": 2,
            "active": False,
        },
    ),
    "template.version_activated": EventTypeInfo(
        "Another version became the one sends use.",
        {"template_id": _TEMPLATE_ID, "key": "welcome", "version_id": _VERSION_ID, "number": 2},
    ),
    "template.archived": EventTypeInfo(
        "A template was archived: it can no longer be sent.", {"id": _TEMPLATE_ID, "key": "welcome"}
    ),
    # --- webhooks
    "webhook.disabled": EventTypeInfo(
        "Delivery to a webhook endpoint stopped: it answered 410 Gone (`reason: gone`) "
        "or every attempt failed for too long (`reason: failing`). Re-enable it with "
        "POST /v1/webhooks/{id}/enable.",
        {
            "webhook_id": _WEBHOOK_ID,
            "url": "https://hooks.example.com/sendstream",
            "reason": "failing",
            "failing_since": "2026-11-21T10:00:00.000000+00:00",
            "disabled_at": "2026-11-26T10:00:00.000000+00:00",
        },
    ),
    # --- inbound mail (docs/bounces.md, "Receiving mail (inbound routing)")
    "inbound.received": EventTypeInfo(
        "Mail arrived for one of the workspace's inbound addresses and a route with action "
        "`webhook` took it (`route` names it, so receivers can filter). Bodies are cut at "
        "`bounces.inbound_event_body_chars` (`text_truncated` / `html_truncated`); the full "
        "mail, attachments and original MIME are at the API URLs given. `auth`: SPF, DKIM "
        "and DMARC results; `in_reply_to`: the sent message it answers, if any; "
        "`auto_submitted`: an auto-reply (RFC 3834), still routed.",
        {
            "id": "0193a5f0-5b6c-7d7e-8f80-910213243547",
            "route": {
                "id": "0193a5f0-1a2b-7c3d-8e4f-5a6b7c8d9e0f",
                "name": "support",
                "pattern": "support",
            },
            "mail_from": "ada@example.com",
            "recipients": ["support@in.example.net"],
            "from": {"address": "ada@example.com", "name": "Ada Lovelace"},
            "to": [{"address": "support@in.example.net", "name": None}],
            "cc": [],
            "reply_to": [],
            "subject": "Re: Your order",
            "message_id_header": "<CAF7x1@mail.example.com>",
            "text": "Thanks, it arrived.",
            "html": "<p>Thanks, it arrived.</p>",
            "text_truncated": False,
            "html_truncated": False,
            "attachments": [
                {
                    "id": "0193a5f0-6c7d-7e8f-9a0b-1c2d3e4f5061",
                    "filename": "receipt.pdf",
                    "content_type": "application/pdf",
                    "content_id": None,
                    "disposition": "attachment",
                    "size": 48213,
                    "sha256": _ADDRESS_HASH,
                    "omitted": False,
                    "url": "/v1/inbound-emails/0193a5f0-5b6c-7d7e-8f80-910213243547/"
                    "attachments/0193a5f0-6c7d-7e8f-9a0b-1c2d3e4f5061",
                }
            ],
            "headers": [["From", "Ada Lovelace <ada@example.com>"], ["Subject", "Re: Your order"]],
            "auth": {"spf": "pass", "dkim": "pass", "dmarc": "pass"},
            "auto_submitted": False,
            "in_reply_to": {"message_id": _MESSAGE_ID, "contact_id": _CONTACT_ID},
            "raw_url": "/v1/inbound-emails/0193a5f0-5b6c-7d7e-8f80-910213243547/raw",
        },
    ),
    "message.replied": EventTypeInfo(
        "Mail to an inbound address names this sent message in In-Reply-To or References "
        "(the reply is `inbound_email_id`; `auto_submitted` marks an auto-reply).",
        {
            "message_id": _MESSAGE_ID,
            "contact_id": _CONTACT_ID,
            "inbound_email_id": "0193a5f0-5b6c-7d7e-8f80-910213243547",
            "from": {"address": "ada@example.com", "name": "Ada Lovelace"},
            "subject": "Re: Your order",
            "auto_submitted": False,
        },
    ),
}

EXAMPLE_WORKSPACE_ID = "0193a590-5b6c-7d7e-8f80-910213243546"
EXAMPLE_POSITION = 1042
EXAMPLE_TIMESTAMP = "2026-11-26T10:15:00.123456Z"


def example_payload(event_type: str) -> dict[str, Any]:
    """The webhook body of the type's example: `data` plus the two fields
    every delivery adds (`workspace_id`, `event_position`)."""
    return {
        "type": event_type,
        "timestamp": EXAMPLE_TIMESTAMP,
        "data": {
            **EVENT_TYPES[event_type].example,
            "workspace_id": EXAMPLE_WORKSPACE_ID,
            "event_position": EXAMPLE_POSITION,
        },
    }


# Data fields the endpoint filters look at, per filter key.
FILTER_FIELDS = {"streams": "stream", "list_ids": "list_id", "tags": "tags"}


def is_pattern(value: str) -> bool:
    return value == "*" or value.endswith(".*")


def matches(patterns: Iterable[str], event_type: str) -> bool:
    """True when any pattern is `event_type`, `*`, or `prefix.*` with
    `event_type` starting `prefix.`."""
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def validate_patterns(patterns: Iterable[str]) -> list[str]:
    """`patterns` de-duplicated in order, or `UnknownEventType` naming the
    first that is not a catalogued type nor a pattern matching one."""
    kept: list[str] = []
    for pattern in patterns:
        if pattern in kept:
            continue
        if is_pattern(pattern):
            if not any(matches([pattern], known) for known in EVENT_TYPES):
                raise UnknownEventType(pattern)
        elif pattern not in EVENT_TYPES:
            raise UnknownEventType(pattern)
        kept.append(pattern)
    return kept


def passes_filters(filters: Mapping[str, Any], data: Mapping[str, Any]) -> bool:
    for key, field in FILTER_FIELDS.items():
        wanted = filters.get(key)
        if not wanted:
            continue
        value = data.get(field)
        values = set(value) if isinstance(value, list) else {value}
        if not values & {str(w) for w in wanted}:
            return False
    return True
