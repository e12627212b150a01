"""Telling machine activity from people: a heuristic, documented as one.

Opens and clicks that machines make are recorded (labelled `machine: true`
with a `reason`) but never counted as human engagement. What is taken for a
machine, first rule that fits:

* `trap_link`: the hidden link in the HTML (links.py) that no person can see
  or reach; only link scanners follow it.
* `head_request`: a HEAD request. Browsers GET; checkers and scanners HEAD.
* `apple_mpp` (opens only): Apple Mail Privacy Protection fetches every
  image through Apple's proxies when mail arrives, opened or not. Its
  requests come from Apple's networks (the bundled `APPLE_PROXY_NETWORKS`
  and `tracking.extra_apple_proxy_networks`, where operators can load the
  egress list Apple publishes) or carry the bare user agent `Mozilla/5.0`
  the proxy sends. Clicks from those networks are people (iCloud Private
  Relay users browse through them), so the rule is for opens only.
* `scanner_network`: mail security gateways' published networks
  (`SCANNER_NETWORKS`, `tracking.extra_scanner_networks`).
* `scanner_user_agent`: user agents of scanners, link previewers, HTTP
  libraries and headless browsers (`SCANNER_USER_AGENTS`,
  `tracking.extra_scanner_user_agents`), or no user agent at all.
* `too_soon`: a hit within `tracking.open_scanner_seconds` /
  `click_scanner_seconds` of the message's `sent_at`: gateways fetch on
  arrival, faster than anyone reads.

Anything else is a person. Gmail's image proxy (`GoogleImageProxy`) fetches
when the reader opens the mail, so its opens count as human.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Final, Literal

from sendstream.core.settings import TrackingSettings

Hit = Literal["open", "click", "trap"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Apple's own allocation; Apple Mail Privacy Protection proxies egress from
# it (among the relay networks Apple publishes).
APPLE_PROXY_NETWORKS: Final = ("17.0.0.0/8",)
# The proxy's user agent: no product, no platform, just this.
APPLE_PROXY_USER_AGENT: Final = "Mozilla/5.0"

# Inbound mail relays of large security gateways, from the ranges their
# vendors publish for customers' firewalls and SPF records (Microsoft
# Exchange Online Protection, Proofpoint, Mimecast, Barracuda). Link
# checks of these services run from these networks or from clouds; a small,
# conservative list: extend it in settings.
SCANNER_NETWORKS: Final = (
    "40.92.0.0/15",
    "40.107.0.0/16",
    "52.100.0.0/14",
    "104.47.0.0/17",
    "148.163.128.0/19",
    "205.139.110.0/24",
    "207.211.30.0/24",
    "216.205.24.0/24",
    "64.235.144.0/20",
    "209.222.80.0/21",
)

# Lower-case fragments of user agents that are machines. Not a bare "bot":
# some phones' model names end in it.
SCANNER_USER_AGENTS: Final = (
    "bot/",
    "+http",
    "googlebot",
    "bingbot",
    "slackbot",
    "twitterbot",
    "linkedinbot",
    "discordbot",
    "telegrambot",
    "applebot",
    "spider",
    "crawler",
    "scanner",
    "bingpreview",
    "skypeuripreview",
    "barracuda",
    "mimecast",
    "proofpoint",
    "urldefense",
    "safelinks",
    "trendmicro",
    "forcepoint",
    "fortiguard",
    "sophos",
    "symantec",
    "ironport",
    "zscaler",
    "google-safety",
    "facebookexternalhit",
    "whatsapp",
    "headlesschrome",
    "phantomjs",
    "python-requests",
    "python-urllib",
    "python-httpx",
    "aiohttp",
    "go-http-client",
    "okhttp",
    "java/",
    "libwww-perl",
    "curl/",
    "wget/",
)


@dataclass(frozen=True, slots=True)
class Verdict:
    machine: bool
    # Why it was taken for a machine (see the module docstring); None for people.
    reason: str | None


HUMAN: Final = Verdict(False, None)


@lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    found = []
    for cidr in cidrs:
        try:
            found.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            continue  # a typo in settings must not break tracking
    return tuple(found)


def _in(ip: str | None, cidrs: tuple[str, ...]) -> bool:
    if not ip:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in _networks(cidrs))


def _scanner_agent(user_agent: str, extra: tuple[str, ...]) -> bool:
    agent = user_agent.lower()
    return any(fragment in agent for fragment in SCANNER_USER_AGENTS) or any(
        fragment.lower() in agent for fragment in extra if fragment
    )


def classify(
    hit: Hit,
    *,
    method: str,
    ip: str | None,
    user_agent: str | None,
    sent_at: datetime | None,
    now: datetime,
    settings: TrackingSettings,
) -> Verdict:
    """Whether an open, click or trap hit was a machine's, and why."""
    if hit == "trap":
        return Verdict(True, "trap_link")
    if method.upper() == "HEAD":
        return Verdict(True, "head_request")
    agent = (user_agent or "").strip()
    if hit == "open" and (
        agent == APPLE_PROXY_USER_AGENT
        or _in(ip, (*APPLE_PROXY_NETWORKS, *settings.extra_apple_proxy_networks))
    ):
        return Verdict(True, "apple_mpp")
    if _in(ip, (*SCANNER_NETWORKS, *settings.extra_scanner_networks)):
        return Verdict(True, "scanner_network")
    if not agent or _scanner_agent(agent, tuple(settings.extra_scanner_user_agents)):
        return Verdict(True, "scanner_user_agent")
    if sent_at is not None:
        window = settings.open_scanner_seconds if hit == "open" else settings.click_scanner_seconds
        if (now - sent_at).total_seconds() < window:
            return Verdict(True, "too_soon")
    return HUMAN
