"""Checks a sending domain's DNS records against what it should publish.

Every question goes out at once through dnspython's async resolver (the
nameservers, port and timeout of `settings.delivery`; no cache, so a check
sees DNS as it is now). Each record ends `ok`, `missing` (no such record),
`wrong` (a record is there with another value: `found` shows it) or
`error` (timeout, SERVFAIL, unreachable resolver: nothing is known, and the
message says why). An answer too large for UDP is fetched again over TCP.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.TXT import TXT

from sendstream.core.settings import DeliverySettings
from sendstream.delivery.domain_records import (
    DnsRecord,
    is_spf,
    spf_includes,
    spf_with_include,
)

CheckStatus = Literal["ok", "missing", "wrong", "error"]
# Large enough for a 2048-bit DKIM record and its neighbours in one UDP
# datagram, small enough to avoid IP fragmentation (the DNS flag day value).
EDNS_PAYLOAD = 1232


@dataclass(frozen=True)
class RecordCheck:
    status: CheckStatus
    # The values found at the record's host and type (TXT strings joined).
    found: list[str] = field(default_factory=list)
    message: str | None = None
    # What to publish instead of `DnsRecord.value`, when that depends on
    # what is there (an existing SPF record gets our include added).
    suggested_value: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "found": self.found,
            "message": self.message,
            "suggested_value": self.suggested_value,
        }


@dataclass(frozen=True)
class _Lookup:
    values: list[str]
    error: str | None = None


def _resolver(settings: DeliverySettings) -> dns.asyncresolver.Resolver:
    if settings.dns_nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = list(settings.dns_nameservers)
    else:
        resolver = dns.asyncresolver.Resolver()
    resolver.port = settings.dns_port
    resolver.timeout = settings.dns_timeout
    resolver.lifetime = settings.dns_timeout
    resolver.use_edns(0, 0, EDNS_PAYLOAD)
    resolver.cache = None
    return resolver


def _text(rdata: Any) -> str:
    if isinstance(rdata, TXT):
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if isinstance(rdata, MX):
        return f"{rdata.preference} {rdata.exchange.to_text(omit_final_dot=True).lower()}"
    if isinstance(rdata, CNAME):
        return rdata.target.to_text(omit_final_dot=True).lower()
    return str(rdata.to_text())


async def _lookup(
    resolver: dns.asyncresolver.Resolver, host: str, rdtype: str, seconds: float
) -> _Lookup:
    """The values of `host`'s `rdtype` records; no values when the name or
    the type does not exist; `error` when DNS could not say."""
    try:
        answer = await resolver.resolve(
            dns.name.from_text(host), rdtype, raise_on_no_answer=False, search=False
        )
    except dns.resolver.NXDOMAIN:
        return _Lookup([])
    except dns.exception.Timeout:
        return _Lookup([], f"no answer within {seconds:g} s for {rdtype} {host}")
    except dns.resolver.NoNameservers as exc:
        # SERVFAIL, REFUSED or unreachable from every nameserver.
        return _Lookup([], f"the resolver could not answer {rdtype} {host}: {exc}")
    except dns.exception.DNSException as exc:
        return _Lookup([], f"DNS lookup of {rdtype} {host} failed: {exc}")
    if answer.rrset is None:
        return _Lookup([])
    wanted = dns.rdatatype.from_text(rdtype)
    return _Lookup([_text(rdata) for rdata in answer.rrset if rdata.rdtype == wanted])


_TAG = re.compile(r"^\s*([a-zA-Z][a-zA-Z0-9_]*)\s*=(.*)$")


def _dkim_tags(txt: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in txt.split(";"):
        matched = _TAG.match(part)
        if matched:
            tags[matched.group(1).lower()] = re.sub(r"\s+", "", matched.group(2))
    return tags


def _check_dkim(record: DnsRecord, found: list[str]) -> RecordCheck:
    if not found:
        return RecordCheck("missing", message=f"no TXT record at {record.host}")
    expected = _dkim_tags(record.value)
    for txt in found:
        tags = _dkim_tags(txt)
        if tags.get("p") == expected["p"] and tags.get("k", "rsa").lower() == expected["k"]:
            return RecordCheck("ok", found)
    return RecordCheck(
        "wrong",
        found,
        f"the TXT record at {record.host} holds another key; publish the value shown "
        "(one TXT record, replacing the one found)",
    )


def _check_spf(record: DnsRecord, found: list[str], include: str) -> RecordCheck:
    spf = [txt for txt in found if is_spf(txt)]
    if not spf:
        return RecordCheck("missing", found, f"no SPF record (v=spf1) at {record.host}")
    if len(spf) > 1:
        return RecordCheck(
            "wrong",
            spf,
            f"{len(spf)} SPF records at {record.host}: receivers treat more than one as a "
            "permanent error (RFC 7208 section 4.5), so SPF fails for all mail; replace them "
            "with the one record shown",
            suggested_value=spf_with_include(spf, include),
        )
    if spf_includes(spf[0], include):
        return RecordCheck("ok", spf)
    return RecordCheck(
        "wrong",
        spf,
        f"the SPF record at {record.host} does not include {include}; change it to the "
        "value shown (your record with our include added)",
        suggested_value=spf_with_include(spf, include),
    )


def _check_equal(record: DnsRecord, found: list[str]) -> RecordCheck:
    """MX and CNAME: one of the found targets must be ours."""
    if not found:
        return RecordCheck("missing", message=f"no {record.type} record at {record.host}")
    targets = [value.split()[-1] for value in found]
    if record.value in targets:
        return RecordCheck("ok", found)
    return RecordCheck(
        "wrong",
        found,
        f"the {record.type} record at {record.host} points elsewhere; make it point at "
        f"{record.value}",
    )


def _check_dmarc(record: DnsRecord, found: list[str]) -> RecordCheck:
    dmarc = [txt for txt in found if txt.replace(" ", "").upper().startswith("V=DMARC1")]
    if not dmarc:
        return RecordCheck(
            "missing",
            found,
            f"no DMARC record at {record.host}; the value shown is a start that only "
            "collects reports (p=none). This does not block verification.",
        )
    return RecordCheck("ok", dmarc)


def _judge(record: DnsRecord, lookup: _Lookup, settings: DeliverySettings) -> RecordCheck:
    if lookup.error is not None:
        return RecordCheck("error", message=lookup.error)
    found = lookup.values
    if record.purpose == "dkim":
        return _check_dkim(record, found)
    if record.purpose == "dmarc":
        return _check_dmarc(record, found)
    if record.type == "TXT":  # spf and return_path_spf
        return _check_spf(record, found, settings.spf_include.rstrip("."))
    return _check_equal(record, found)


async def check_records(
    records: Sequence[DnsRecord], settings: DeliverySettings
) -> dict[str, RecordCheck]:
    """The check of each record, by record key; never raises for DNS
    trouble (it becomes `error` results)."""
    try:
        resolver = _resolver(settings)
    except (dns.exception.DNSException, ValueError, OSError) as exc:
        message = f"no usable DNS resolver (delivery.dns_nameservers, /etc/resolv.conf): {exc}"
        return {record.key: RecordCheck("error", message=message) for record in records}
    # One question per (host, type): the domain's SPF and other TXT records
    # share one lookup.
    questions = sorted({(record.host, record.type) for record in records})
    answers = await asyncio.gather(
        *(_lookup(resolver, host, rdtype, settings.dns_timeout) for host, rdtype in questions)
    )
    by_question = dict(zip(questions, answers, strict=True))
    return {
        record.key: _judge(record, by_question[(record.host, record.type)], settings)
        for record in records
    }
