"""The capture transport: what runs when no SMTP relay is configured
(`SENDSTREAM_SMTP_URL` unset, as in `make run`). Every recipient is "sent"
(250) and the envelope goes to the capture sink, which keeps it in
`captured_messages` for the API and the dashboard to show; nothing leaves
the machine."""

from __future__ import annotations

import structlog

from sendstream.delivery.transport import (
    CaptureSink,
    DeliveryResult,
    Envelope,
    RecipientResult,
)

log = structlog.get_logger("sendstream.delivery.capture")

CAPTURE_RELAY = "capture"
_REPLY = "2.0.0 kept by the capture transport (no SMTP relay configured)"


class CaptureTransport:
    def __init__(self, sink: CaptureSink | None) -> None:
        # Without a sink the messages are only counted (tests, benchmarks).
        self._sink = sink
        self.captured = 0

    async def send(self, envelope: Envelope) -> DeliveryResult:
        if self._sink is not None:
            await self._sink(envelope)
        self.captured += 1
        return DeliveryResult(
            results=tuple(
                RecipientResult(
                    recipient=r, outcome="sent", code=250, enhanced="2.0.0", response=_REPLY
                )
                for r in envelope.recipients
            ),
            relay=CAPTURE_RELAY,
        )

    async def aclose(self) -> None:
        log.debug("capture.closed", captured=self.captured)
