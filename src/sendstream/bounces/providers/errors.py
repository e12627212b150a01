"""Errors of provider webhooks, each with its stable problem+json `code`."""

from __future__ import annotations

import uuid

from sendstream.core.errors import InvalidInput, NotFound, SendstreamError, ServiceUnavailable


class ProviderWebhookNotFound(NotFound):
    code = "provider_webhook_not_found"

    def __init__(self, webhook_id: uuid.UUID | str) -> None:
        super().__init__(f"No provider webhook {webhook_id} in this workspace.")


class InvalidProviderWebhook(InvalidInput):
    code = "invalid_provider_webhook"

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}.")


class ProviderSignatureInvalid(SendstreamError):
    """The request is not proven to come from the provider: nothing was
    recorded. 401 so the provider's dashboard shows an authentication
    failure rather than an outage."""

    code = "provider_signature_invalid"
    status = 401
    title = "Authentication required"

    def __init__(self, why: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"The request's signature does not verify: {why}.", headers=headers)


class ProviderRequestStale(ProviderSignatureInvalid):
    code = "provider_request_stale"

    def __init__(self, age_seconds: float, limit: float) -> None:
        SendstreamError.__init__(
            self,
            f"The request was signed {age_seconds:.0f} s from now; at most {limit:.0f} s in "
            "the past (and a few minutes in the future) are accepted.",
        )


class ProviderSourceNotAllowed(SendstreamError):
    """Signed, but from somewhere this webhook does not take events from (an
    SNS topic it was not told about, a signing certificate off the allow-list)."""

    code = "provider_source_not_allowed"
    status = 403
    title = "Forbidden"


class ProviderReplay(SendstreamError):
    """A Mailgun token seen before. 406: Mailgun's documented "rejected, do
    not retry" (its retry of a request already processed needs no retry either)."""

    code = "provider_replay"
    status = 406
    title = "Not acceptable"

    def __init__(self) -> None:
        super().__init__("This request's token was seen before: a replay is not processed again.")


class MalformedProviderPayload(SendstreamError):
    code = "malformed_payload"
    status = 400
    title = "Malformed payload"

    def __init__(self, why: str) -> None:
        super().__init__(f"The body is not a payload this webhook understands: {why}.")


class ProviderUpstreamUnavailable(ServiceUnavailable):
    """SNS's certificate or subscription URL did not answer: the provider
    should retry later."""

    code = "provider_upstream_unavailable"

    def __init__(self, why: str) -> None:
        super().__init__(
            f"Could not reach Amazon SNS to verify the message: {why}.",
            headers={"Retry-After": "60"},
        )
