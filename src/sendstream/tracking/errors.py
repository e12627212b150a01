"""Errors of the tracking domain, each with its stable problem+json `code`."""

from __future__ import annotations

from sendstream.core.errors import NotFound


class TrackingLinkInvalid(NotFound):
    """A tracking or unsubscribe token that is malformed, tampered with, made
    for another use, or signed under a key this server does not hold. It is a
    404 on purpose: a forged link must look exactly like a link to nothing."""

    code = "tracking_link_invalid"

    def __init__(self) -> None:
        super().__init__("This link is not valid: it was changed or is not one of ours.")
