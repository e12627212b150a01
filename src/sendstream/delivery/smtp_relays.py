"""The relays mail goes out through: parsed from `SENDSTREAM_SMTP_URL`, chosen
by weight for each message, and skipped for a while when they fail.

    smtp://user:pass@smtp.example.com:587?starttls=true&weight=2&max_connections=20,
    smtps://user:pass@backup.example.com?verify=false

- `smtp://` is plain SMTP (port 25 by default) upgraded with STARTTLS when
  the relay offers it (`starttls=auto`, the default), always (`true`: a relay
  without STARTTLS is not used) or never (`false`). `smtps://` is TLS from the
  first byte (port 465 by default).
- Credentials are percent-decoded (`%40` for `@`, `%2C` for a comma); they
  are sent only over TLS, or to a relay on loopback.
- Options: `weight` (share of messages, default 1), `max_connections` (pool
  size per worker process), `verify=false` (accept any certificate: test
  relays only), `auth=plain|login|cram-md5` (force one AUTH mechanism).

A URL that cannot be used raises `InvalidSmtpUrl`, naming the relay (with its
password masked) and the part that is wrong.
"""

from __future__ import annotations

import ipaddress
import random
import re
import ssl
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from sendstream.core.settings import DeliverySettings

StartTls = Literal["auto", "always", "never"]
AUTH_MECHANISMS = ("plain", "login", "cram-md5")
_OPTIONS = ("starttls", "verify", "weight", "max_connections", "auth")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class InvalidSmtpUrl(ValueError):
    """`SENDSTREAM_SMTP_URL` names a relay that cannot be used."""


@dataclass(frozen=True, slots=True)
class RelayConfig:
    host: str
    port: int
    implicit_tls: bool
    starttls: StartTls
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    verify: bool = True
    weight: float = 1.0
    max_connections: int = 10
    # Force one AUTH mechanism; None tries what the relay offers.
    auth: str | None = None

    @property
    def name(self) -> str:
        """The relay as results and logs name it: "host:port"."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def on_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def tls_context(self) -> ssl.SSLContext:
        """Built once per relay (not per connection: loading the system's CA
        store costs milliseconds)."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def mask_password(url: str) -> str:
    """The URL with the password (if any) replaced by ***, for messages."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)(.*)$", url, re.DOTALL)
    if match is None:
        return re.sub(r":[^:@/]*@", ":***@", url)
    scheme, netloc, rest = match.groups()
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{scheme}{userinfo}{at}{hostport}{rest}"


def parse_smtp_urls(value: str, settings: DeliverySettings) -> list[RelayConfig]:
    """Every relay in a comma-separated `SENDSTREAM_SMTP_URL`."""
    urls = [part.strip() for part in value.split(",")]
    urls = [u for u in urls if u]
    if not urls:
        raise InvalidSmtpUrl("SENDSTREAM_SMTP_URL is set but names no relay.")
    relays: list[RelayConfig] = []
    for number, url in enumerate(urls, start=1):
        where = f"SENDSTREAM_SMTP_URL, relay {number} ({mask_password(url)})"
        relays.append(_parse_one(url, where, settings))
    return relays


def _parse_one(url: str, where: str, settings: DeliverySettings) -> RelayConfig:
    def bad(what: str) -> InvalidSmtpUrl:
        return InvalidSmtpUrl(f"{where}: {what}.")

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps"):
        shown = f"{parts.scheme}:" if parts.scheme else "(none)"
        raise bad(f"the scheme {shown} is not smtp: or smtps:")
    host = parts.hostname
    if not host:
        raise bad("no host name")
    try:
        port = parts.port
    except ValueError:
        raw = parts.netloc.rpartition("@")[2].rpartition(":")[2]
        raise bad(f"the port {raw!r} is not a number from 1 to 65535") from None
    if port == 0:
        raise bad("the port 0 is not a number from 1 to 65535")
    if parts.path not in ("", "/"):
        raise bad(f"unexpected path {parts.path!r} (options go after '?')")
    if parts.fragment:
        raise bad(f"unexpected fragment '#{parts.fragment}'")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if username == "":
        if password:
            raise bad("a password without a user name")
        username = password = None

    options: dict[str, str] = {}
    for key, val in parse_qsl(parts.query, keep_blank_values=True):
        name = key.lower()
        if name not in _OPTIONS:
            raise bad(f"unknown option {key!r} (known: {', '.join(_OPTIONS)})")
        if name in options:
            raise bad(f"the option {key!r} is given twice")
        options[name] = val.strip()

    implicit_tls = scheme == "smtps"
    starttls: StartTls = "never" if implicit_tls else "auto"
    if "starttls" in options:
        raw = options["starttls"].lower()
        if raw == "auto":
            chosen: StartTls = "auto"
        elif raw in _TRUE:
            chosen = "always"
        elif raw in _FALSE:
            chosen = "never"
        else:
            raise bad(f"starttls={options['starttls']!r} is not true, false or auto")
        if implicit_tls and chosen != "never":
            raise bad("starttls does not apply to smtps: (TLS from the first byte)")
        starttls = chosen
    verify = True
    if "verify" in options:
        raw = options["verify"].lower()
        if raw not in _TRUE | _FALSE:
            raise bad(f"verify={options['verify']!r} is not true or false")
        verify = raw in _TRUE
    weight = 1.0
    if "weight" in options:
        try:
            weight = float(options["weight"])
        except ValueError:
            weight = -1.0
        if not weight > 0 or weight == float("inf"):
            raise bad(f"weight={options['weight']!r} is not a positive number")
    max_connections = settings.smtp_max_connections
    if "max_connections" in options:
        raw = options["max_connections"]
        if not raw.isdigit() or int(raw) < 1:
            raise bad(f"max_connections={raw!r} is not a whole number of at least 1")
        max_connections = int(raw)
    auth = None
    if "auth" in options:
        auth = options["auth"].lower()
        if auth not in AUTH_MECHANISMS:
            raise bad(f"auth={options['auth']!r} is not one of {', '.join(AUTH_MECHANISMS)}")
        if username is None:
            raise bad("auth= is given but the URL has no user name")
    return RelayConfig(
        host=host,
        port=port or (465 if implicit_tls else 25),
        implicit_tls=implicit_tls,
        starttls=starttls,
        username=username,
        password=password,
        verify=verify,
        weight=weight,
        max_connections=max_connections,
        auth=auth,
    )


class RelayHealth:
    """Whether a relay is worth trying now. A relay that refused a
    connection, timed out or could not be logged into is skipped for a
    back-off that doubles with each further failure in a row; the first
    transaction it completes resets it."""

    __slots__ = ("_base", "_max", "down_until", "failures", "last_error")

    def __init__(self, *, backoff: float, backoff_max: float) -> None:
        self._base = backoff
        self._max = backoff_max
        self.down_until = 0.0
        self.failures = 0
        self.last_error: str | None = None

    def available(self, now: float) -> bool:
        return now >= self.down_until

    def mark_down(self, now: float, reason: str) -> float:
        """Record a failure; returns the seconds the relay is now skipped, or 0
        when it was already down (messages that were in flight when it went
        down do not stretch the back-off)."""
        self.last_error = reason
        if now < self.down_until:
            return 0.0
        self.failures += 1
        backoff: float = min(self._max, self._base * 2.0 ** min(self.failures - 1, 30))
        self.down_until = now + backoff
        return backoff

    def mark_up(self) -> None:
        if self.failures:
            self.failures = 0
            self.down_until = 0.0


def weighted_order(weights: list[float], rng: random.Random) -> list[int]:
    """Indices of `weights` in a random order where each comes first with a
    probability proportional to its weight (Efraimidis-Spirakis: sort by
    u ** (1 / w)); the rest is the failover order."""
    if len(weights) == 1:
        return [0]
    keys: list[float] = [rng.random() ** (1.0 / w) for w in weights]
    return sorted(range(len(weights)), key=keys.__getitem__, reverse=True)
