"""One settings tree for every process role.

Values come from, highest first: keyword arguments (tests), `SENDSTREAM_*`
environment variables (nested groups with `__`, e.g.
`SENDSTREAM_API__RATE_LIMIT_PER_SECOND`), a TOML file named by
`SENDSTREAM_CONFIG` (default `./sendstream.toml` when present), then defaults.
"""

from __future__ import annotations

import os
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class DatabaseSettings(BaseModel):
    pool_size: int = 10
    max_overflow: int = 10
    # Seconds a request waits for a pooled connection before answering 503.
    pool_timeout: float = 5.0
    # Seconds a single statement may run before PostgreSQL cancels it.
    statement_timeout: float = 30.0
    connect_timeout: float = 5.0


class EmbeddedSettings(BaseModel):
    # Folder holding the embedded PostgreSQL data directory (`pg/`); relative
    # paths are resolved against the working directory.
    data_dir: Path = Path(".sendstream")
    database_name: str = "sendstream"


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    # Public base URL, used in links the API prints (docs, tracking later on).
    public_url: str | None = None
    # Largest accepted request body in bytes; larger bodies get 413.
    max_body_bytes: int = 1_048_576
    # Largest file upload (contact imports), for the routes that take files.
    max_upload_bytes: int = 1_073_741_824
    # Token bucket per API key: steady refill rate and burst size.
    rate_limit_per_second: float = 50.0
    rate_limit_burst: int = 100
    # Cursor pages: default and ceiling for `limit`.
    page_default_limit: int = 50
    page_max_limit: int = 500
    # How long a stored Idempotency-Key response is replayed.
    idempotency_ttl_hours: int = 24
    # Seconds clients are told to wait when the database is unreachable.
    unavailable_retry_after: int = 5


class JobSettings(BaseModel):
    # Jobs claimed per round trip by one worker process.
    batch_size: int = 200
    # Concurrent jobs one worker process runs at once.
    concurrency: int = 50
    # Seconds a claimed job stays leased; heartbeats extend it while it runs.
    lease_seconds: float = 30.0
    # Fallback wake-up when no NOTIFY arrives (scheduled jobs, lost notifies).
    poll_interval: float = 2.0
    default_max_attempts: int = 10
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 3600.0
    # Finished jobs (succeeded, cancelled, dead) are deleted after this long.
    retention_hours: int = 72
    # On SIGTERM, seconds running jobs get to finish before they are given back.
    shutdown_grace_seconds: float = 10.0


class LogSettings(BaseModel):
    level: str = "INFO"
    format: Literal["json", "console"] = "json"


class SecuritySettings(BaseModel):
    # Master key for secrets at rest (base64, 32 bytes). Older keys stay in
    # `previous_keys` so rotation never strands a stored secret.
    master_key: SecretStr | None = None
    previous_keys: list[SecretStr] = Field(default_factory=list)


class MailSettings(BaseModel):
    """The SMTP relay for mail the platform sends itself (double opt-in
    confirmations). The delivery domain replaces this with its own transports;
    until then one relay, reached with aiosmtplib, is all there is."""

    host: str = "127.0.0.1"
    port: int = 25
    username: str | None = None
    password: SecretStr | None = None
    # Upgrade the connection with STARTTLS (port 587); `use_tls` is implicit
    # TLS from the first byte (port 465). Both off: plain SMTP on loopback.
    starttls: bool = False
    use_tls: bool = False
    # Seconds one SMTP conversation may take before the job fails and retries.
    timeout: float = 30.0
    from_address: str = "Sendstream <no-reply@localhost>"
    # Base URL of links in mails (`https://mail.example.com`); falls back to
    # `api.public_url`, then to http://<api.host>:<api.port>.
    public_url: str | None = None
    # Hours a confirmation link stays valid.
    confirmation_ttl_hours: int = 72


class DomainLimit(BaseModel):
    """Limits for one destination domain (`delivery.domain_limits`); a field
    left unset takes the general `delivery.domain_*` value."""

    # SMTP transactions in flight to the domain at once.
    concurrency: int | None = Field(default=None, ge=1)
    # Messages per second to the domain, and the burst a quiet period allows.
    rate_per_second: float | None = Field(default=None, gt=0)
    burst: int | None = Field(default=None, ge=1)


class DeliverySettings(BaseModel):
    """Sending mail for workspaces. (Several people add to this class: append
    new fields at the end, each with its default.)"""

    # Our bounce domain: the host whose MX receives bounces. Each sending
    # domain's return-path subdomain publishes `MX 10 <bounce_domain>`.
    bounce_domain: str = "bounces.sendstream.localhost"
    # The SPF record every sending domain includes (`include:<spf_include>`):
    # it lists the addresses Sendstream sends from.
    spf_include: str = "spf.sendstream.localhost"
    # Where a sending domain's tracking subdomain points (CNAME target): the
    # host serving open pixels and click redirects.
    tracking_host: str = "track.sendstream.localhost"
    # Address for DMARC aggregate reports in the suggested DMARC record
    # (`rua=mailto:...`); None suggests a record without reports.
    dmarc_rua: str | None = None
    # Subdomain labels created under each new sending domain (kept per
    # domain: changing them affects domains registered afterwards).
    return_path_subdomain: str = "bounces"
    tracking_subdomain: str = "track"
    # Resolver for domain verification checks; an empty list uses the
    # system's (/etc/resolv.conf). `dns_timeout`: seconds one DNS question
    # may take, retries included, before its record is reported as `error`.
    dns_nameservers: list[str] = Field(default_factory=list)
    dns_port: int = 53
    dns_timeout: float = 5.0
    # Send from a domain that is registered but not verified, or (unsigned)
    # from one not registered at all. None: allowed only when `environment`
    # is "development", so local tries work and production refuses.
    allow_unverified_domains: bool | None = None
    # --- the send API and the delivery loop (docs/sending.md)
    # Largest attachment and largest total of a message's attachments, in
    # bytes once decoded; the send routes accept bodies big enough for them.
    max_attachment_bytes: int = 10_485_760
    max_attachments_total_bytes: int = 20_971_520
    # Message rows one send request may queue (each `to` address is a row),
    # and the bytes of content (inline subject/html/text and template data,
    # counted once per row) it may store; attachments are stored once and
    # not counted here. Per message, template data is limited too.
    max_messages_per_request: int = 1000
    max_request_content_bytes: int = 52_428_800
    max_data_bytes: int = 65_536
    # How far ahead `send_at` may schedule a message.
    max_schedule_days: int = 30
    # Messages one delivery process holds at once: claimed, in an SMTP
    # transaction, or sent with the outcome not yet written. After a crash
    # at most this many per process can be sent twice.
    worker_concurrency: int = 100
    # Messages claimed per round trip.
    worker_batch_size: int = 100
    # Seconds a claimed message stays leased; heartbeats extend it while the
    # worker lives, so only a dead worker's messages are taken over.
    lease_seconds: float = 60.0
    # Fallback wake-up when no NOTIFY arrives (scheduled messages come due).
    poll_interval: float = 2.0
    # Retries after a 4xx or a network error: the first after about this
    # many seconds, doubling up to `retry_max_seconds` (each +-20% jitter),
    # until `max_retry_hours` after the message was first due; then `failed`.
    retry_first_seconds: float = 60.0
    retry_max_seconds: float = 3600.0
    max_retry_hours: float = 72.0
    # Seconds a worker reuses a workspace's DKIM keys and a template
    # version's compiled renderer before asking the database again.
    signing_key_cache_seconds: float = 60.0
    renderer_cache_seconds: float = 30.0
    # On SIGTERM, seconds in-flight SMTP transactions get to finish.
    shutdown_grace_seconds: float = 30.0
    # --- the SMTP transport (docs/smtp-relays.md); the relays are `smtp_url`.
    # Seconds to open a connection and read the greeting (implicit TLS included).
    smtp_connect_timeout: float = 10.0
    # Seconds to wait for the reply to one command (EHLO, STARTTLS, AUTH,
    # MAIL, RCPT, DATA, RSET).
    smtp_command_timeout: float = 30.0
    # Seconds to wait for the reply after the message's final dot (the relay
    # may scan the message before it answers).
    smtp_data_timeout: float = 120.0
    # Connections per relay and worker process (a relay URL's
    # `max_connections` overrides it).
    smtp_max_connections: int = Field(default=10, ge=1)
    # Seconds an unused pooled connection stays open.
    smtp_idle_timeout: float = 30.0
    # Messages sent over one connection before it is closed and replaced.
    smtp_max_messages_per_connection: int = Field(default=1000, ge=1)
    # Seconds a relay that refused a connection or timed out is skipped;
    # doubled on each further failure in a row, up to the maximum.
    smtp_relay_backoff_seconds: float = 5.0
    smtp_relay_backoff_max_seconds: float = 300.0
    # Name given in EHLO; None: this host's fully qualified name.
    smtp_helo_name: str | None = None
    # Per destination (recipient) domain and worker process: SMTP
    # transactions in flight, and messages per second (None: no rate limit;
    # burst None: one second's worth). `domain_limits` overrides both per
    # domain, e.g. {"gmail.com": {"concurrency": 10, "rate_per_second": 50}};
    # an entry also covers the domain's subdomains.
    domain_concurrency: int = Field(default=20, ge=1)
    domain_rate_per_second: float | None = Field(default=None, gt=0)
    domain_burst: int | None = Field(default=None, ge=1)
    domain_limits: dict[str, DomainLimit] = Field(default_factory=dict)
    # Messages per second one workspace may send, per worker process (None:
    # unlimited; burst None: one second's worth).
    workspace_rate_per_second: float | None = Field(default=None, gt=0)
    workspace_burst: int | None = Field(default=None, ge=1)
    # Run the delivery loop in `sendstream worker` and `sendstream up`
    # processes (off: a worker that only runs jobs).
    delivery_loop: bool = True


class TemplateSettings(BaseModel):
    """Limits of template rendering (see docs/templates.md)."""

    # Milliseconds of CPU time one message's render (every part together)
    # may take; past it the render stops with `template_render_limit`. CPU
    # time, so a busy machine does not fail templates that are fine.
    render_timeout_ms: int = 200
    # Largest rendered part (subject, HTML or text), in bytes.
    max_output_bytes: int = 2_097_152
    # Largest source of one field (subject, html, text, mjml) a version may hold.
    max_source_bytes: int = 524_288
    # Largest `range()` a template may build.
    max_range: int = 10_000
    # Compiled templates kept per process (least recently used go first).
    cache_size: int = 256
    # Locale and zone of the date and money filters when the contact has none.
    default_locale: str = "en"
    default_timezone: str = "UTC"


class TrackingSettings(BaseModel):
    """Open and click tracking, unsubscribe links and the preference page
    (see docs/tracking.md)."""

    # Base URL of tracking and unsubscribe links (`https://track.example.com`);
    # falls back to `api.public_url`, then to http://<api.host>:<api.port>.
    # RFC 8058 one-click unsubscribe needs HTTPS in production.
    base_url: str | None = None
    # Domain of the `mailto:` address in List-Unsubscribe; None uses
    # `delivery.bounce_domain`.
    mailto_domain: str | None = None
    # Tracking (opens and clicks) for workspaces not named in `workspaces`.
    enabled: bool = True
    # Per-workspace switch by workspace id, e.g. {"<uuid>": false}: overrides `enabled`.
    workspaces: dict[uuid.UUID, bool] = Field(default_factory=dict)
    # Streams whose messages may be tracked; a message of another stream is
    # never rewritten, whatever its own flags say.
    streams: list[str] = Field(default_factory=lambda: ["transactional", "marketing"])
    # Seconds after `sent_at` within which a hit is taken for a machine
    # (security gateways fetch and follow everything on arrival).
    open_scanner_seconds: float = 2.0
    click_scanner_seconds: float = 10.0
    # Add a hidden link that only machines follow; a hit on it is labelled.
    trap_link: bool = True
    # Keep the client's IP address in open and click events (off: privacy).
    record_client_ip: bool = False
    # Networks (CIDR) and user-agent fragments (case-insensitive) to treat as
    # machines, on top of the bundled lists in tracking/bots.py.
    extra_scanner_networks: list[str] = Field(default_factory=list)
    extra_scanner_user_agents: list[str] = Field(default_factory=list)
    # Apple Mail Privacy Protection egress networks on top of the bundled
    # ones (Apple publishes its relay egress ranges).
    extra_apple_proxy_networks: list[str] = Field(default_factory=list)


class ImportSettings(BaseModel):
    """Contact imports (see docs/import-export.md)."""

    # A command-line import (no job runs it) that is queued or running with no
    # committed progress for this many minutes is shown as `stalled`: its
    # process most likely died; `sendstream contacts import FILE --resume ID`
    # continues it.
    stalled_after_minutes: float = 2.0


class WebhookSettings(BaseModel):
    """Outbound webhooks (see docs/webhooks.md). (Several people add to this
    class: append new fields at the end, each with its default.)"""

    # Accept `http://` endpoint URLs. None: only when `environment` is
    # "development", so production receivers always get TLS.
    allow_http: bool | None = None
    # Let every workspace reach loopback, private, link-local and other
    # internal addresses (the per-workspace switch is
    # `webhooks_allow_private_addresses`). Off: only receivers on the public
    # internet, so a webhook cannot be aimed at the network Sendstream runs in.
    allow_private_addresses: bool = False
    # Resolver for webhook hosts (on save and before each connection); an
    # empty list uses the system's (/etc/resolv.conf). `dns_timeout`: seconds
    # one lookup may take before the host counts as unresolvable.
    dns_nameservers: list[str] = Field(default_factory=list)
    dns_port: int = 53
    dns_timeout: float = 5.0
    # --- delivery (docs/webhooks.md, "Delivery" and "Retries")
    # Run the webhook sender and the fan-out of events into deliveries in
    # `sendstream worker` and `sendstream up` processes.
    delivery_loop: bool = True
    # Seconds to open a connection (TLS included), and to wait for each read
    # of the response (a receiver that hangs fails after this long).
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    # Retries after a timeout, a connection error, 408, 425, 429 or 5xx: the
    # n-th waits a random time up to min(retry_max_seconds,
    # retry_first_seconds * 2**(n-1)) (full jitter), until retry_for_seconds
    # after the delivery was created; then `failed`. A 429's Retry-After is
    # honoured up to retry_after_max_seconds.
    retry_first_seconds: float = 5.0
    retry_max_seconds: float = 3600.0
    retry_for_seconds: float = 259_200.0
    retry_after_max_seconds: float = 3600.0
    # An endpoint whose every attempt has failed for this long is disabled
    # (event `webhook.disabled`, reason `failing`).
    disable_after_seconds: float = 432_000.0
    # Deliveries one worker process holds at once (claimed or in a request),
    # and claimed per round trip. After a crash at most this many per process
    # are sent a second time (with the same webhook-id).
    worker_concurrency: int = Field(default=100, ge=1)
    worker_batch_size: int = Field(default=50, ge=1)
    # Seconds a claimed delivery stays leased; heartbeats extend it while the
    # worker lives, so only a dead worker's deliveries are taken over.
    lease_seconds: float = 60.0
    # Fallback wake-up when no NOTIFY arrives (retries coming due).
    poll_interval: float = 2.0
    # Events read from the outbox per fan-out transaction.
    dispatch_batch_size: int = Field(default=500, ge=1)
    # Keep-alive connections per worker process to all endpoints together
    # (webhooks/http_client.py; the pool also caps each origin at this).
    max_connections: int = Field(default=100, ge=1)
    # On SIGTERM, seconds in-flight requests get to finish.
    shutdown_grace_seconds: float = 10.0
    # Days a finished delivery (succeeded, failed, cancelled) and its attempts
    # are kept for the attempts API and replay-by-delivery; replay by time
    # range works from the events, which are kept longer.
    retention_days: float = Field(default=30.0, gt=0)


class SmtpSettings(BaseModel):
    """The `sendstream smtp` process role: the submission relay for
    applications (docs/smtp-relay.md) and the inbound MX. (Several people add
    to this class: append new fields at the end, each with its default.)"""

    # PEM certificate chain and private key for STARTTLS and implicit TLS.
    # Unset: no TLS (then AUTH works only where `submission_allow_plaintext_loopback`
    # allows it, and the implicit-TLS port is not opened).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Name in the greeting and EHLO reply; None: this host's fully qualified name.
    hostname: str | None = None
    # --- the submission relay (docs/smtp-relay.md)
    submission_enabled: bool = True
    submission_host: str = "127.0.0.1"
    # STARTTLS port (587 in production) and implicit-TLS port (465); 0 picks
    # a free port (tests); None leaves that port closed.
    submission_port: int | None = 2587
    submission_tls_port: int | None = 2465
    # Largest message (SIZE, advertised in EHLO); larger ones get 552 5.3.4.
    submission_max_message_bytes: int = Field(default=31_457_280, ge=1024)
    # Recipients one message may have (more get 452 4.5.3).
    submission_max_recipients: int = Field(default=500, ge=1, le=500)
    # Seconds a connection may stay idle before it is closed.
    submission_timeout: float = 300.0
    # AUTH over a plain connection from 127.0.0.0/8 or ::1 (local tries,
    # benchmarks). Off: AUTH only after STARTTLS or on the implicit-TLS port.
    submission_allow_plaintext_loopback: bool = False
    # Like Postfix's mynetworks: connections from these loopback networks
    # (CIDR) are taken as authenticated as the SMTP credential named by
    # `submission_trusted_username`, without AUTH, for programs that cannot
    # authenticate (smtp-source). Only loopback networks are accepted.
    submission_trusted_networks: list[str] = Field(default_factory=list)
    submission_trusted_username: str | None = None
    # Failed AUTH attempts one IP address may make within
    # `submission_auth_failure_window` seconds; past it AUTH is refused
    # (454 4.7.0, connection closed) until the window has passed.
    submission_auth_failure_limit: int = Field(default=5, ge=1)
    submission_auth_failure_window: float = 300.0
    # Accepted messages are written in groups: one transaction (one commit,
    # one set of checks) per group of messages that arrive together, at most
    # this many messages; each client gets its 250 only after the commit.
    submission_batch_size: int = Field(default=200, ge=1, le=500)
    # Group transactions in flight at once (more make smaller groups).
    submission_write_concurrency: int = Field(default=1, ge=1)
    # Open the ports with SO_REUSEPORT, so several `sendstream smtp`
    # processes on one host share them (the kernel spreads connections).
    submission_reuse_port: bool = False
    # --- the inbound MX (docs/bounces.md, "Setting up the bounce domain")
    # Run the MX in `sendstream smtp`, and in `sendstream up` (where a port
    # already taken is reported and the rest runs on).
    mx_enabled: bool = True
    mx_host: str = "127.0.0.1"
    # 2525: unprivileged; the bounce domain's MX must reach it on port 25
    # (a firewall redirect, or run with CAP_NET_BIND_SERVICE and set 25).
    # 0 picks a free port (tests).
    mx_port: int = 2525
    # Largest message accepted; larger ones get 552 5.3.4 (SIZE is
    # advertised, and DATA past it is read and thrown away, never buffered).
    mx_max_message_bytes: int = Field(default=26_214_400, ge=1024)
    # Connections open at once; one more gets 421 4.7.0 and is closed.
    mx_max_connections: int = Field(default=200, ge=1)
    # Recipients one message may name (more get 452 4.5.3).
    mx_max_recipients: int = Field(default=100, ge=1)
    # Seconds a connection may stay idle between commands before it is closed.
    mx_timeout: float = Field(default=300.0, gt=0)


class ProviderWebhookSettings(BaseModel):
    """Receiving ESP webhooks: SES via SNS, SendGrid, Postmark, Mailgun (see
    docs/bounces.md, "ESP webhooks")."""

    # Hosts (regular expressions matched against the whole host name) that an
    # SNS message's SigningCertURL and SubscribeURL may name; only https
    # unless `sns_allow_http`. Anything else is refused before any request.
    sns_hosts: list[str] = Field(
        default_factory=lambda: [r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"]
    )
    # Accept http:// SigningCertURL/SubscribeURL on `sns_hosts` (tests on loopback only).
    sns_allow_http: bool = False
    # Seconds a fetched SNS signing certificate is reused; seconds to fetch one
    # or to visit a SubscribeURL.
    sns_cert_cache_seconds: float = 86_400.0
    sns_fetch_timeout: float = 10.0
    # How old a signed request (SNS Timestamp, SendGrid and Mailgun signature
    # timestamps) may be. Generous: a provider's retry may carry its first
    # attempt's signature (SNS retries up to an hour, Mailgun 8 hours, SendGrid
    # 24 hours); replays inside the window are caught by remembering what was seen.
    sns_max_age_seconds: float = 7_200.0
    sendgrid_max_age_seconds: float = 90_000.0
    mailgun_max_age_seconds: float = 32_400.0
    # Seconds a signed request may claim to come from the future (clock skew).
    max_clock_skew_seconds: float = 300.0


class BounceSettings(BaseModel):
    """What bounces and complaints do (docs/bounces.md, "What happens to a
    bounce"). (Several people add to this class: append new fields at the
    end, each with its default.)"""

    # Soft bounces (mailbox full, rate limited ...) of one address within
    # `soft_bounce_window_days` that suppress it (reason `bounced`, source
    # `soft_bounce_policy`); 0 never suppresses on soft bounces.
    soft_bounce_limit: int = Field(default=3, ge=0)
    soft_bounce_window_days: float = Field(default=15.0, gt=0)
    # Days processed inbound mail (the raw bytes) is kept for inspection;
    # what it led to (bounce records, events) stays. Failed and ignored mail
    # is kept as long.
    inbound_retention_days: float = Field(default=30.0, gt=0)
    # --- IMAP bounce mailboxes (docs/bounces.md, "An IMAP bounce mailbox")
    # Run one loop per enabled mailbox inside `sendstream worker` and `up`.
    imap_enabled: bool = True
    # Larger messages are not read: recorded as `oversized` and left in place.
    imap_max_message_bytes: int = Field(default=26_214_400, ge=1024)
    # An IDLE is ended and re-issued after this many seconds (RFC 2177: the
    # server may log a client out after 30 idle minutes).
    imap_idle_seconds: float = Field(default=1500.0, gt=0, le=1740)
    # Seconds one IMAP command (or the connection) may take before the
    # connection is given up and made again.
    imap_command_timeout: float = Field(default=60.0, gt=0)
    # Reconnection backoff after a failure: from 1 s, doubling, up to this.
    imap_max_backoff_seconds: float = Field(default=300.0, gt=0)
    # Seconds between reloads of the mailbox list (new, changed, disabled).
    imap_reload_seconds: float = Field(default=30.0, gt=0)
    # Let mailboxes name hosts that are or resolve to loopback, private or
    # link-local addresses (a self-run server on the LAN, tests).
    imap_allow_private_hosts: bool = False
    # --- inbound routing (docs/bounces.md, "Receiving mail (inbound routing)")
    # The host an inbound domain's MX record must name to verify; None: the
    # bounce domain (`delivery.bounce_domain`), whose MX is this server.
    inbound_mx_host: str | None = None
    # Take mail for inbound domains that are registered but not verified.
    # None: only when `environment` is "development".
    inbound_allow_unverified: bool | None = None
    # Characters of the text and of the HTML body kept per mail (the rest is
    # cut, `text_truncated` / `html_truncated` say so), and put in the
    # `inbound.received` event (the API serves what is kept).
    inbound_max_body_chars: int = Field(default=1_048_576, ge=1024)
    inbound_event_body_chars: int = Field(default=65_536, ge=0)
    # Attachments larger than this, or past the total per mail, are recorded
    # (name, type, size, sha256) with their content omitted.
    inbound_max_attachment_bytes: int = Field(default=10_485_760, ge=0)
    inbound_max_attachments_total_bytes: int = Field(default=26_214_400, ge=0)
    # MIME parts looked at per mail; the rest is skipped (and noted).
    inbound_max_parts: int = Field(default=200, ge=1)
    # Verify SPF, DKIM and DMARC of inbound mail (DNS through the resolver of
    # `delivery.dns_nameservers`); off records `none` for each.
    inbound_verify_auth: bool = True


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SENDSTREAM_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    environment: Literal["development", "production", "test"] = "development"
    # PostgreSQL URL; when unset, an embedded server is started under
    # `embedded.data_dir`.
    database_url: str | None = None
    # Redis URL; when set, rate limit buckets are shared by every server process.
    redis_url: str | None = None
    # SMTP relays for workspace mail: one or more comma-separated
    # `smtp://user:pass@host:587?starttls=true` / `smtps://...` URLs (see
    # docs/smtp-relays.md). Unset: the capture transport keeps every message
    # instead of sending it (local development).
    smtp_url: str | None = None

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    embedded: EmbeddedSettings = Field(default_factory=EmbeddedSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    templates: TemplateSettings = Field(default_factory=TemplateSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    imports: ImportSettings = Field(default_factory=ImportSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    provider_webhooks: ProviderWebhookSettings = Field(default_factory=ProviderWebhookSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    bounces: BounceSettings = Field(default_factory=BounceSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("SENDSTREAM_CONFIG", "sendstream.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)


_override: list[Settings] = []


@lru_cache(maxsize=1)
def _from_environment() -> Settings:
    return Settings()


def get_settings() -> Settings:
    """The process-wide settings: an override if one is installed, else the environment."""
    return _override[0] if _override else _from_environment()


def override_settings(settings: Settings | None) -> None:
    """Install settings for this process (tests, child processes); None goes back
    to reading the environment afresh."""
    _override.clear()
    _from_environment.cache_clear()
    if settings is not None:
        _override.append(settings)
