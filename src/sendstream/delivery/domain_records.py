"""What a sending domain publishes in DNS, computed from the domain and
`settings.delivery`, and the rules for domain names.

Each record has a stable `key` (`dkim:<selector>`, `spf`, `dmarc`,
`return_path_mx`, `return_path_spf`, `tracking`) under which its last check
result is stored. `required` records decide verification; DMARC is advice
and the tracking CNAME is needed only once tracking runs on the domain, so
both are `required=False` for now.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

import idna

from sendstream.core.settings import DeliverySettings
from sendstream.delivery.errors import InvalidDomainName
from sendstream.models.sending_domain import SendingDomain

RecordType = Literal["TXT", "MX", "CNAME"]
Purpose = Literal["dkim", "spf", "dmarc", "return_path", "tracking"]

MAX_NAME_LENGTH = 253
# One DNS character-string holds at most 255 bytes; longer TXT values are
# published as several strings, which receivers concatenate.
TXT_STRING_BYTES = 255
MX_PRIORITY = 10

_LDH_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_TLD = re.compile(r"^(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$")


@dataclass(frozen=True)
class DnsRecord:
    key: str
    type: RecordType
    # Fully qualified, lower case, no trailing dot.
    host: str
    value: str
    purpose: Purpose
    required: bool
    # MX only.
    priority: int | None = None


def normalize_domain_name(raw: str) -> str:
    """`raw` as the lower-case A-label sending domains are stored under, or
    `InvalidDomainName` saying what is wrong. Accepts Unicode names (IDNA
    2008 with UTS #46 mapping) and one trailing dot; refuses IP addresses,
    single labels, numeric top-level labels and non-hostname characters."""
    text = raw.strip()
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise InvalidDomainName(raw, "it is empty")
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        pass
    else:
        raise InvalidDomainName(raw, "it is an IP address; register a domain name")
    if text.isascii():
        name = text.lower()
        # Plain LDH labels need no IDNA processing; an `xn--` label must
        # decode, which idna checks below.
        if not any(label.startswith("xn--") for label in name.split(".")):
            return _checked(raw, name)
    try:
        name = idna.encode(text, uts46=True, transitional=False).decode("ascii").lower()
    except idna.IDNAError as exc:
        raise InvalidDomainName(
            raw, f"it is not a valid internationalised domain name ({exc})"
        ) from None
    except UnicodeError as exc:
        raise InvalidDomainName(raw, f"a label is empty or too long ({exc})") from None
    return _checked(raw, name)


def _checked(raw: str, name: str) -> str:
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidDomainName(raw, f"it is longer than {MAX_NAME_LENGTH} characters")
    labels = name.split(".")
    if len(labels) < 2:
        raise InvalidDomainName(raw, "it needs at least two labels, like example.com")
    for label in labels:
        if not _LDH_LABEL.match(label):
            raise InvalidDomainName(
                raw,
                f"the label {label[:70]!r} is not 1 to 63 letters, digits and inner hyphens",
            )
    if not _TLD.match(labels[-1]):
        raise InvalidDomainName(raw, f"{labels[-1]!r} is not a top-level domain")
    return name


def unicode_name(name: str) -> str:
    """The A-label `name` as people read it (`bücher.example`)."""
    try:
        return str(idna.decode(name))
    except (idna.IDNAError, UnicodeError):
        return name


def txt_strings(value: str) -> list[str]:
    """`value` cut into the <=255-byte strings a TXT record holds (values
    here are ASCII, so bytes and characters agree)."""
    return [value[i : i + TXT_STRING_BYTES] for i in range(0, len(value), TXT_STRING_BYTES)] or [""]


def dkim_value(algorithm: Literal["rsa", "ed25519"], public_key: str) -> str:
    return f"v=DKIM1; k={algorithm}; p={public_key}"


def spf_value(include: str) -> str:
    return f"v=spf1 include:{include} ~all"


def dmarc_value(settings: DeliverySettings) -> str:
    if settings.dmarc_rua:
        return f"v=DMARC1; p=none; rua=mailto:{settings.dmarc_rua}"
    return "v=DMARC1; p=none"


def return_path_host(domain: SendingDomain) -> str:
    """The envelope sender's (Return-Path) domain of mail from `domain`."""
    return f"{domain.return_path_subdomain}.{domain.name}"


def tracking_host(domain: SendingDomain) -> str:
    return f"{domain.tracking_subdomain}.{domain.name}"


def dkim_hosts(name: str, selectors: list[str]) -> list[str]:
    return [f"{selector}._domainkey.{name}" for selector in selectors]


def expected_records(domain: SendingDomain, settings: DeliverySettings) -> list[DnsRecord]:
    """Every record `domain` should publish, in the order people add them."""
    records = [
        DnsRecord(
            key=f"dkim:{domain.dkim_selector}",
            type="TXT",
            host=f"{domain.dkim_selector}._domainkey.{domain.name}",
            value=dkim_value("rsa", domain.dkim_public_key),
            purpose="dkim",
            required=True,
        )
    ]
    if domain.ed25519_selector and domain.ed25519_public_key:
        records.append(
            DnsRecord(
                key=f"dkim:{domain.ed25519_selector}",
                type="TXT",
                host=f"{domain.ed25519_selector}._domainkey.{domain.name}",
                value=dkim_value("ed25519", domain.ed25519_public_key),
                purpose="dkim",
                required=True,
            )
        )
    rp_host = return_path_host(domain)
    records += [
        DnsRecord(
            key="spf",
            type="TXT",
            host=domain.name,
            value=spf_value(settings.spf_include),
            purpose="spf",
            required=True,
        ),
        DnsRecord(
            key="return_path_mx",
            type="MX",
            host=rp_host,
            value=settings.bounce_domain.rstrip(".").lower(),
            purpose="return_path",
            required=True,
            priority=MX_PRIORITY,
        ),
        DnsRecord(
            key="return_path_spf",
            type="TXT",
            host=rp_host,
            value=spf_value(settings.spf_include),
            purpose="return_path",
            required=True,
        ),
        DnsRecord(
            key="dmarc",
            type="TXT",
            host=f"_dmarc.{domain.name}",
            value=dmarc_value(settings),
            purpose="dmarc",
            required=False,
        ),
        DnsRecord(
            key="tracking",
            type="CNAME",
            host=tracking_host(domain),
            value=settings.tracking_host.rstrip(".").lower(),
            purpose="tracking",
            required=False,
        ),
    ]
    return records


# --- SPF


def is_spf(txt: str) -> bool:
    """RFC 7208 section 4.5: a record is SPF when it starts with `v=spf1`
    followed by a space or nothing."""
    lowered = txt.lower()
    return lowered == "v=spf1" or lowered.startswith("v=spf1 ")


def _terms(record: str) -> list[str]:
    return record.split()[1:]


def _is_all_or_redirect(term: str) -> bool:
    lowered = term.lower()
    return lowered.lstrip("+-~?") == "all" or lowered.startswith("redirect=")


def spf_includes(record: str, include: str) -> bool:
    """True when `record` authorises `include` (a pass-qualified include)."""
    wanted = f"include:{include.rstrip('.').lower()}"
    return any(term.lower().removeprefix("+").rstrip(".") == wanted for term in _terms(record))


def spf_with_include(records: list[str], include: str) -> str:
    """One SPF record holding every mechanism of `records` plus our include,
    placed before the final `all` (or `redirect=`), which stays last: what
    to publish instead of the existing record(s)."""
    mechanisms: list[str] = []
    ending: list[str] = []
    for record in records:
        for term in _terms(record):
            if _is_all_or_redirect(term):
                if not ending:
                    ending.append(term)
            elif term.lower() not in {m.lower() for m in mechanisms}:
                mechanisms.append(term)
    ours = f"include:{include}"
    if not any(spf_includes(f"v=spf1 {m}", include) for m in mechanisms):
        mechanisms.append(ours)
    return " ".join(["v=spf1", *mechanisms, *(ending or ["~all"])])
