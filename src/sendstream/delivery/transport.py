"""What the delivery pipeline hands a transport and what it gets back.

A transport takes one SMTP envelope (return path, recipients, the signed
bytes) and answers with one outcome per recipient, by the SMTP reply that
decided it:

- 2xx -> `sent`; 4xx, or no reply at all (refused, timed out, reset) ->
  `deferred` (try again later); 5xx -> `failed` (do not retry).
- A recipient refused at RCPT gets that refusal; the others go on.
- `uncertain=True`: the connection broke after the message was handed over
  and before the relay's final reply, so the relay may have taken it. The
  recipients are `deferred`; a retry may deliver a second copy.

`transport_from_settings` picks the SMTP transport when `smtp_url` is set and
the capture transport (local development: nothing leaves the machine)
otherwise. A transport is made once per worker process and shared by every
concurrent `send`; `aclose()` at shutdown.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from sendstream.core.settings import Settings

Outcome = Literal["sent", "deferred", "failed"]


@dataclass(frozen=True, slots=True)
class Envelope:
    # VERP return path (MAIL FROM); "" sends the null reverse-path `<>`.
    mail_from: str
    recipients: tuple[str, ...]
    # The signed MIME message, CRLF line ends; dot-stuffing is the transport's job.
    data: bytes
    workspace_id: uuid.UUID
    message_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class RecipientResult:
    recipient: str
    outcome: Outcome
    # SMTP reply code; None when no reply decided it (network error, a relay
    # that could not be used, an address refused before sending).
    code: int | None
    # RFC 3463 enhanced status code from the reply text ("5.1.1"), if given.
    enhanced: str | None
    # Reply text (without the code) or what went wrong.
    response: str


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    results: tuple[RecipientResult, ...]
    # "host:port" of the relay that answered; "capture" for the capture
    # transport; None when no relay could be used.
    relay: str | None
    # True when the connection broke after the message data was sent and
    # before the final reply: the message may have been delivered.
    uncertain: bool = False


class Transport(Protocol):
    async def send(self, envelope: Envelope) -> DeliveryResult: ...

    async def aclose(self) -> None: ...


# Stores what the capture transport "sent" (the pipeline writes it to
# `captured_messages`).
CaptureSink = Callable[[Envelope], Awaitable[None]]


def transport_from_settings(settings: Settings, *, capture_sink: CaptureSink | None) -> Transport:
    """The SMTP transport for `settings.smtp_url`, or the capture transport
    when it is unset. Raises `smtp_relays.InvalidSmtpUrl` (a ValueError naming
    the bad part) for a URL that cannot be used."""
    if settings.smtp_url is None or not settings.smtp_url.strip():
        from sendstream.delivery.capture import CaptureTransport

        return CaptureTransport(capture_sink)
    from sendstream.delivery.smtp import SmtpTransport
    from sendstream.delivery.smtp_relays import parse_smtp_urls

    return SmtpTransport(parse_smtp_urls(settings.smtp_url, settings.delivery), settings.delivery)
