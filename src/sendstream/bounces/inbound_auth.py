"""SPF (RFC 7208), DKIM (RFC 6376, dkimpy) and DMARC (RFC 7489) of inbound mail.

Every DNS question goes to the resolver of `delivery.dns_nameservers` /
`dns_port` / `dns_timeout` (the one domain checks use; tests point it at a
loopback server). A DNS failure never drops mail: the check says
`temperror` and processing goes on.

Results: `pass`, `fail`, `softfail`, `neutral`, `none`, `temperror`,
`permerror`. SPF evaluates `ip4`, `ip6`, `a`, `mx`, `include`, `exists`,
`all` and `redirect=` with the 10-lookup limit; a term with macros (`%{`)
or `ptr` never matches (noted). DMARC's organizational domain is
approximated without the Public Suffix List (the last two labels, three
under `co.uk`-style second levels), which can only make relaxed alignment
stricter, never looser.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Final

import dkim  # type: ignore[import-untyped]
import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver

from sendstream.core.settings import DeliverySettings

SPF_LOOKUP_LIMIT: Final = 10
_SECOND_LEVELS: Final = frozenset({"co", "com", "org", "net", "ac", "gov", "edu", "ne", "or"})
_QUALIFIERS: Final = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}


class _TempError(Exception):
    pass


class _PermError(Exception):
    pass


@dataclass
class AuthResults:
    spf: str = "none"
    dkim: str = "none"
    dmarc: str = "none"
    details: dict[str, Any] = field(default_factory=dict)


def _resolver(settings: DeliverySettings) -> dns.asyncresolver.Resolver:
    if settings.dns_nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = list(settings.dns_nameservers)
    else:
        resolver = dns.asyncresolver.Resolver()
    resolver.port = settings.dns_port
    resolver.timeout = settings.dns_timeout
    resolver.lifetime = settings.dns_timeout
    resolver.use_edns(0, 0, 1232)
    return resolver


def _sync_resolver(settings: DeliverySettings) -> dns.resolver.Resolver:
    if settings.dns_nameservers:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = list(settings.dns_nameservers)
    else:
        resolver = dns.resolver.Resolver()
    resolver.port = settings.dns_port
    resolver.timeout = settings.dns_timeout
    resolver.lifetime = settings.dns_timeout
    resolver.use_edns(0, 0, 1232)
    return resolver


async def _query(resolver: dns.asyncresolver.Resolver, name: str, rdtype: str) -> list[str]:
    """Values of `name`'s records ([] for NXDOMAIN / no data), or _TempError."""
    try:
        answer = await resolver.resolve(
            dns.name.from_text(name), rdtype, raise_on_no_answer=False, search=False
        )
    except dns.resolver.NXDOMAIN:
        return []
    except (dns.exception.DNSException, OSError, ValueError) as exc:
        raise _TempError(f"{rdtype} {name}: {type(exc).__name__}") from exc
    if answer.rrset is None:
        return []
    values: list[str] = []
    for rdata in answer.rrset:
        if rdtype == "TXT":
            values.append(b"".join(rdata.strings).decode("utf-8", "replace"))
        elif rdtype == "MX":
            values.append(rdata.exchange.to_text(omit_final_dot=True))
        else:
            values.append(rdata.to_text())
    return values


def organizational_domain(domain: str) -> str:
    labels = domain.lower().rstrip(".").split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVELS:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _aligned(a: str, b: str, mode: str) -> bool:
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if mode == "s":
        return a == b
    return organizational_domain(a) == organizational_domain(b)


# --- SPF


class _Spf:
    def __init__(self, resolver: dns.asyncresolver.Resolver, ip: str) -> None:
        self.resolver = resolver
        self.ip = ipaddress.ip_address(ip)
        self.lookups = 0
        self.notes: list[str] = []

    def _count(self) -> None:
        self.lookups += 1
        if self.lookups > SPF_LOOKUP_LIMIT:
            raise _PermError("more than 10 DNS lookups")

    async def check(self, domain: str, depth: int = 0) -> str:
        if depth > SPF_LOOKUP_LIMIT:
            raise _PermError("include/redirect loop")
        records = [
            t
            for t in await _query(self.resolver, domain, "TXT")
            if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")
        ]
        if not records:
            return "none"
        if len(records) > 1:
            raise _PermError(f"{len(records)} SPF records at {domain}")
        redirect: str | None = None
        for term in records[0].split()[1:]:
            if "=" in term and ":" not in term.split("=", 1)[0]:
                name, value = term.split("=", 1)
                if name.lower() == "redirect":
                    redirect = value
                continue
            qualifier = "+"
            if term[0] in _QUALIFIERS:
                qualifier, term = term[0], term[1:]
            if await self._matches(term, domain, depth):
                return _QUALIFIERS[qualifier]
        if redirect is not None:
            self._count()
            result = await self.check(redirect, depth + 1)
            if result == "none":
                raise _PermError(f"redirect to {redirect} without an SPF record")
            return result
        return "neutral"

    async def _matches(self, term: str, domain: str, depth: int) -> bool:
        mechanism, _, argument = term.partition(":")
        mechanism = mechanism.lower()
        if "%{" in argument:
            self.notes.append(f"SPF macros are not expanded: {term[:80]!r} never matches")
            return False
        cidr: str | None = None
        if "/" in mechanism:
            mechanism, cidr = mechanism.split("/", 1)
        elif "/" in argument and mechanism in ("a", "mx"):
            argument, cidr = argument.split("/", 1)
        if mechanism == "all":
            return True
        if mechanism in ("ip4", "ip6"):
            try:
                return self.ip in ipaddress.ip_network(argument, strict=False)
            except ValueError as exc:
                raise _PermError(f"bad {mechanism}: {argument[:80]}") from exc
        if mechanism == "include":
            self._count()
            result = await self.check(argument, depth + 1)
            if result == "none":
                raise _PermError(f"include of {argument} without an SPF record")
            if result in ("temperror", "permerror"):
                raise _TempError(result)
            return result == "pass"
        if mechanism in ("a", "mx", "exists"):
            self._count()
            target = argument or domain
            hosts = [target]
            if mechanism == "mx":
                hosts = (await _query(self.resolver, target, "MX"))[:10]
            rdtypes = ("A",) if mechanism == "exists" else ("A", "AAAA")
            for host in hosts:
                for rdtype in rdtypes:
                    for value in await _query(self.resolver, host, rdtype):
                        if mechanism == "exists":
                            return True
                        if self._in(value, cidr):
                            return True
            return False
        if mechanism == "ptr":
            self.notes.append("SPF `ptr` is not evaluated (RFC 7208 5.5: do not use)")
            return False
        raise _PermError(f"unknown SPF mechanism {mechanism[:40]!r}")

    def _in(self, value: str, cidr: str | None) -> bool:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return False
        if address.version != self.ip.version:
            return False
        bits = cidr.split("//")[0] if cidr else None
        prefix = int(bits) if bits and bits.isdigit() else address.max_prefixlen
        network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
        return self.ip in network


async def check_spf(
    resolver: dns.asyncresolver.Resolver, ip: str | None, domain: str | None
) -> tuple[str, list[str]]:
    if not ip or not domain:
        return "none", ["no client address or sender domain to check"]
    try:
        spf = _Spf(resolver, ip)
    except ValueError:
        return "none", [f"client address {ip[:60]!r} is not an IP address"]
    try:
        return await spf.check(domain), spf.notes
    except _TempError as exc:
        return "temperror", [*spf.notes, str(exc)]
    except _PermError as exc:
        return "permerror", [*spf.notes, str(exc)]


# --- DKIM


def _verify_dkim(raw: bytes, settings: DeliverySettings) -> tuple[str, list[str], list[str]]:
    """(result, passing signing domains, notes); runs in a thread (dkimpy is
    synchronous)."""
    count = len(re.findall(rb"(?im)^dkim-signature\s*:", raw.split(b"\r\n\r\n", 1)[0]))
    if count == 0:
        count = len(re.findall(rb"(?im)^dkim-signature\s*:", raw.split(b"\n\n", 1)[0]))
    if count == 0:
        return "none", [], []
    resolver = _sync_resolver(settings)
    dns_failed: list[str] = []

    def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
        host = name.decode() if isinstance(name, bytes) else name
        try:
            answer = resolver.resolve(host, "TXT", raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return None
        except (dns.exception.DNSException, OSError) as exc:
            dns_failed.append(f"TXT {host}: {type(exc).__name__}")
            return None
        if answer.rrset is None:
            return None
        for rdata in answer.rrset:
            return b"".join(rdata.strings)
        return None

    passed: list[str] = []
    notes: list[str] = []
    for index in range(min(count, 5)):
        verifier = dkim.DKIM(raw)
        try:
            ok = verifier.verify(idx=index, dnsfunc=dnsfunc)
        except Exception as exc:  # dkimpy raises several kinds for bad signatures
            notes.append(f"signature {index}: {type(exc).__name__}: {str(exc)[:200]}")
            ok = False
        domain = verifier.domain.decode("ascii", "replace") if verifier.domain else None
        if ok and domain:
            passed.append(domain.lower())
        elif domain:
            notes.append(f"signature {index} (d={domain}) did not verify")
    if passed:
        return "pass", passed, notes
    if dns_failed:
        return "temperror", [], [*notes, *dns_failed]
    return "fail", [], notes


# --- DMARC


def _dmarc_tags(record: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in record.split(";"):
        name, eq, value = part.partition("=")
        if eq:
            tags[name.strip().lower()] = value.strip()
    return tags


async def check_dmarc(
    resolver: dns.asyncresolver.Resolver,
    from_domain: str | None,
    spf: tuple[str, str | None],
    dkim_domains: list[str],
) -> tuple[str, dict[str, Any]]:
    if not from_domain:
        return "none", {"reason": "no single From domain"}
    policy_domain = from_domain
    try:
        records = [
            t for t in await _query(resolver, f"_dmarc.{from_domain}", "TXT") if _is_dmarc(t)
        ]
        org = organizational_domain(from_domain)
        if not records and org != from_domain:
            policy_domain = org
            records = [t for t in await _query(resolver, f"_dmarc.{org}", "TXT") if _is_dmarc(t)]
    except _TempError as exc:
        return "temperror", {"reason": str(exc)}
    if len(records) != 1:
        return "none", {"reason": "no DMARC record" if not records else "several DMARC records"}
    tags = _dmarc_tags(records[0])
    policy = tags.get("p", "none").lower()
    if policy_domain != from_domain:
        policy = tags.get("sp", policy).lower()
    spf_result, spf_domain = spf
    spf_aligned = (
        spf_result == "pass"
        and spf_domain is not None
        and _aligned(spf_domain, from_domain, tags.get("aspf", "r").lower())
    )
    dkim_aligned = any(
        _aligned(d, from_domain, tags.get("adkim", "r").lower()) for d in dkim_domains
    )
    result = "pass" if spf_aligned or dkim_aligned else "fail"
    return result, {
        "policy": policy,
        "policy_domain": policy_domain,
        "spf_aligned": spf_aligned,
        "dkim_aligned": dkim_aligned,
    }


def _is_dmarc(txt: str) -> bool:
    return txt.replace(" ", "").upper().startswith("V=DMARC1")


async def authenticate(
    raw: bytes,
    *,
    client_ip: str | None,
    helo: str | None,
    mail_from: str | None,
    from_domain: str | None,
    settings: DeliverySettings,
) -> AuthResults:
    """SPF of the envelope (MAIL FROM's domain, or the HELO name for the
    null sender), every DKIM signature, and DMARC of the From domain."""
    results = AuthResults()
    try:
        resolver = _resolver(settings)
    except (dns.exception.DNSException, ValueError, OSError) as exc:
        note = f"no usable DNS resolver: {exc}"
        return AuthResults("temperror", "temperror", "temperror", {"error": note})
    spf_domain = mail_from.rpartition("@")[2].lower() if mail_from and "@" in mail_from else None
    spf_domain = spf_domain or (helo.lower() if helo else None)
    results.spf, spf_notes = await check_spf(resolver, client_ip, spf_domain)
    results.dkim, dkim_domains, dkim_notes = await asyncio.to_thread(_verify_dkim, raw, settings)
    results.dmarc, dmarc_details = await check_dmarc(
        resolver, from_domain, (results.spf, spf_domain), dkim_domains
    )
    results.details = {
        "spf": {"domain": spf_domain, "client_ip": client_ip, "notes": spf_notes},
        "dkim": {"domains": dkim_domains, "notes": dkim_notes},
        "dmarc": {"domain": from_domain, **dmarc_details},
    }
    return results
