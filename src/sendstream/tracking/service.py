"""Opens and clicks: what a hit on the pixel or a click link records.

* A hit is verified (tokens.py) before anything is read; a forged or foreign
  token changes nothing.
* Every hit on a tracked message becomes an event, `message.opened` or
  `message.clicked` (subject: the message), labelled `machine: true|false`
  with a `reason` (bots.py), in the request's transaction.
* Only human hits move the message's counters: `opens`/`clicks` (totals) and
  `first_opened_at`/`first_clicked_at`. The first human open (click) of a
  message is its unique one; its event says `unique: true`.
* Nothing is recorded when the message is gone, when its own flag is off, or
  when tracking is switched off for its workspace or stream; the pixel still
  answers and the click still leads to its URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.outbox import emit
from sendstream.core.settings import Settings, get_settings
from sendstream.tracking import bots, tokens
from sendstream.tracking.links import tracking_enabled
from sendstream.tracking.repository import MessageView, tracking_repository
from sendstream.tracking.tokens import Claim, Kind

# User agents are kept in events up to this many characters.
MAX_USER_AGENT = 300


@dataclass(frozen=True, slots=True)
class HitContext:
    """Who asked, as the HTTP request says."""

    method: str
    ip: str | None
    user_agent: str | None
    now: datetime


@dataclass(frozen=True, slots=True)
class Click:
    # Where to send the reader; None for the trap link.
    url: str | None
    recorded: bool


def hit_context(method: str, ip: str | None, user_agent: str | None) -> HitContext:
    return HitContext(method, ip, user_agent, datetime.now(UTC))


class EngagementService:
    async def record_open(self, session: AsyncSession, token: str, hit: HitContext) -> bool:
        """Record an open of the token's message; False when nothing was
        recorded. Raises `TrackingLinkInvalid` for a token that is not ours."""
        claim = tokens.read_token(token, Kind.OPEN)
        settings = get_settings()
        message = await self._tracked(session, claim, settings)
        if message is None or not message.track_opens:
            return False
        await self._count_and_announce(session, claim, message, "open", hit, settings)
        return True

    async def record_click(self, session: AsyncSession, token: str, hit: HitContext) -> Click:
        """Record a click and say where it leads: always the URL the token
        carries (signed, so it was the message's own link), or nowhere for
        the trap link. Raises `TrackingLinkInvalid` for a token that is not ours."""
        claim = tokens.read_token(token, Kind.CLICK, Kind.TRAP)
        settings = get_settings()
        message = await self._tracked(session, claim, settings)
        if message is None or not message.track_clicks:
            return Click(claim.url, recorded=False)
        await self._count_and_announce(session, claim, message, "click", hit, settings)
        return Click(claim.url, recorded=True)

    async def _count_and_announce(
        self,
        session: AsyncSession,
        claim: Claim,
        message: MessageView,
        kind: Literal["open", "click"],
        hit: HitContext,
        settings: Settings,
    ) -> None:
        """Label the hit human or machine, count it when human, and write
        `message.opened` / `message.clicked` (with the URL for clicks)."""
        verdict = bots.classify(
            "trap" if claim.kind is Kind.TRAP else kind,
            method=hit.method,
            ip=hit.ip,
            user_agent=hit.user_agent,
            sent_at=message.sent_at,
            now=hit.now,
            settings=settings.tracking,
        )
        unique = False
        if not verdict.machine:
            unique = await tracking_repository.count_human(
                session, claim.workspace_id, claim.message_id, hit.now, kind
            )
        data = _event_data(message, verdict, unique, hit, settings)
        if kind == "click":
            data["url"] = claim.url
        emit(
            session,
            claim.workspace_id,
            "message.opened" if kind == "open" else "message.clicked",
            data,
            subject_type="message",
            subject_id=message.id,
            occurred_at=hit.now,
        )

    async def _tracked(
        self, session: AsyncSession, claim: Claim, settings: Settings
    ) -> MessageView | None:
        message = await tracking_repository.find_message(
            session, claim.workspace_id, claim.message_id
        )
        if message is None or not tracking_enabled(message.workspace_id, message.stream, settings):
            return None
        return message


def _event_data(
    message: MessageView,
    verdict: bots.Verdict,
    unique: bool,
    hit: HitContext,
    settings: Settings,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "message_id": message.id,
        "contact_id": message.contact_id,
        "machine": verdict.machine,
        "reason": verdict.reason,
        "unique": unique,
        "user_agent": (hit.user_agent or "")[:MAX_USER_AGENT] or None,
    }
    if settings.tracking.record_client_ip:
        data["ip"] = hit.ip
    return data


engagement_service = EngagementService()
