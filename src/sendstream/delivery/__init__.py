"""Delivery: turning a message row into signed bytes on an SMTP connection.

- `mime.build(MessageParts) -> bytes` writes the wire form directly (no
  `EmailMessage`): CRLF everywhere, lines within 998 octets (headers within
  78 where the text allows), ASCII-only headers (RFC 2047 encoded-words, IDNA
  domains; a non-ASCII local part is refused until SMTPUTF8 exists). CR, LF
  or NUL in any header input raises `mime.HeaderInjection`; every builder
  error is a `mime.MimeError` (a `ValueError`) whose text says what and where.
- `dkim.sign(message, keys) -> bytes` prepends one DKIM-Signature per key
  (RSA-SHA256 and/or Ed25519-SHA256), relaxed/relaxed, no `l=`, with From,
  Subject and List-Unsubscribe(-Post) oversigned; the body is hashed once
  for all keys. Sign the exact bytes that go to SMTP: any later change to a
  signed field or the body breaks the signature.
- `dkim.generate_rsa_key()` / `dkim.generate_ed25519_key()` return
  (PKCS#8 PEM, DNS `p=` value); `DkimKey.from_pem` loads the PEM back.
- Sending domains (`domain_*.py`, `dns_check.py`, /v1/domains): names are
  stored as lower-case A-labels, unique per workspace; private keys only as
  `core.secrets` tokens bound to `sending_domains.<column>:<id>`, never in an
  answer. `verify_domain` asks DNS now: all required records `ok` ->
  `verified`, any `missing`/`wrong` -> `failed`, DNS `error`s alone change
  nothing; it emits `domain.verified` / `domain.verification_failed`.
- Before signing, the pipeline calls `domain_service.signing_keys(session,
  workspace_id, from_domain)`: the `DkimKey`s of the closest registered domain
  covering it (subdomains sign with the parent's d=), or `DomainNotVerified` /
  `UnknownSendingDomain` (422) unless `delivery.allow_unverified_domains`
  (default: development only), which signs unverified domains and returns []
  (send unsigned) for unregistered ones.
"""
