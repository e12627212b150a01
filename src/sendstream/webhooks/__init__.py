"""Webhooks: events delivered over HTTP to receivers, on the Standard
Webhooks specification (https://www.standardwebhooks.com).

- Endpoints (`endpoint_*.py`, /v1/webhooks): URL, wanted event types
  (exact or `prefix.*` / `*`, checked against `catalogue.EVENT_TYPES`),
  filters, custom headers (encrypted), delivery options; the `whsec_`
  secret is shown once, rotated with an overlap in which both secrets sign.
- `catalogue.py`: every event type with its meaning and an example `data`;
  the documentation and the validation both read it.
- `signing.py`: the `webhook-signature` header (`v1` HMAC-SHA256, `v1a`
  Ed25519) over `{webhook-id}.{webhook-timestamp}.{body}`.
- `ssrf.py`: an endpoint's host must resolve only to public addresses
  (unless the workspace allows private ones), on save and again before
  every connection, which goes to the vetted address.
"""
