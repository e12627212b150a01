"""Inbound mail for the bounce domain: accepted durably, processed once.

`inbound_service.accept` stores the raw mail and queues `bounces.process` in
the caller's transaction; the MX answers 250 only after that commits, so
nothing accepted is ever lost (a crash before processing leaves the job,
which runs after the restart). `process` then, in the job's transaction:

1. mail to a List-Unsubscribe mailto address is an unsubscribe request
   (`unsubscribe_service.by_mailto`, which checks its MAC);
2. everything else is classified (`parse.classify_message`), and our
   message found by the first return path whose VERP token verifies (the
   envelope recipients first, then what the report quotes of the returned
   message); failing that, by the returned message's Message-ID, but only
   within the workspace the mailbox belongs to;
3. each recipient verdict is acted on (`bounce_service.act`).

A VERP token binds the workspace and the message together (HMAC), so a
report can only ever act in the workspace that sent the message; mail to a
workspace's own mailbox that names another workspace's message is kept as
`ignored`. Processing is idempotent: a processed row is never processed
again, and each verdict's record is unique (service.py).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.bounces.inbound_mail import inbound_mail_service
from sendstream.bounces.parse import classify_message
from sendstream.bounces.repository import MessageFacts, bounce_repository, inbound_repository
from sendstream.bounces.service import bounce_service
from sendstream.bounces.verdict import Report
from sendstream.core.jobs import enqueue
from sendstream.core.settings import get_settings
from sendstream.delivery.verp import parse_verp
from sendstream.models.inbound_message import InboundMessage
from sendstream.tracking.links import mailto_domain
from sendstream.tracking.service import HitContext
from sendstream.tracking.tokens import read_mailto_local_part
from sendstream.tracking.unsubscribe import unsubscribe_service

PROCESS: Final = "bounces.process"
# Mail for a workspace's inbound domain (inbound routing): never classified
# as a bounce; parsed and delivered as `inbound.received` (inbound_mail.py).
PROCESS_ROUTED: Final = "inbound.process"
ROUTED_SOURCE: Final = "inbound"
_SOURCE = re.compile(r"^[a-z][a-z0-9_]{0,15}$")
# Longest envelope sender kept (RFC 5321 allows 256 octets for a path).
MAX_MAIL_FROM: Final = 512


class InboundService:
    async def accept(
        self,
        session: AsyncSession,
        raw: bytes,
        *,
        source: str,
        mail_from: str | None,
        rcpt_to: Sequence[str],
        workspace_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """Store one received mail and queue its processing, in the caller's
        transaction (no commit). `source` names the channel (`mx`, `imap`);
        `workspace_id` is given only by a workspace's own mailbox (IMAP): it
        limits what the mail may act on to that workspace. `mail_from` None
        (or `<>`) is the null sender of DSNs."""
        if not _SOURCE.match(source):
            raise ValueError(f"source must be a short lower-case name, not {source!r}")
        sender = None if mail_from in (None, "", "<>") else mail_from.replace("\x00", "")
        inbound_id = await inbound_repository.insert(
            session,
            workspace_id=workspace_id,
            source=source,
            mail_from=sender[:MAX_MAIL_FROM] if sender is not None else None,
            rcpt_to=list(rcpt_to),
            raw=raw,
        )
        await enqueue(
            session,
            PROCESS,
            {"inbound_message_id": str(inbound_id)},
            workspace_id=workspace_id,
            unique_key=f"{PROCESS}:{inbound_id}",
        )
        return inbound_id

    async def accept_routed(
        self,
        session: AsyncSession,
        raw: bytes,
        *,
        mail_from: str | None,
        rcpt_to: Sequence[str],
        workspace_id: uuid.UUID,
    ) -> uuid.UUID:
        """Store mail for one workspace's inbound addresses (source `inbound`)
        and queue `inbound.process`, in the caller's transaction."""
        sender = None if mail_from in (None, "", "<>") else mail_from.replace("\x00", "")
        inbound_id = await inbound_repository.insert(
            session,
            workspace_id=workspace_id,
            source=ROUTED_SOURCE,
            mail_from=sender[:MAX_MAIL_FROM] if sender is not None else None,
            rcpt_to=list(rcpt_to),
            raw=raw,
        )
        await enqueue(
            session,
            PROCESS_ROUTED,
            {"inbound_message_id": str(inbound_id)},
            workspace_id=workspace_id,
            unique_key=f"{PROCESS_ROUTED}:{inbound_id}",
        )
        return inbound_id

    async def process_routed(self, session: AsyncSession, inbound_id: uuid.UUID) -> str | None:
        """Parse routed mail into an inbound email and its events; returns
        the row's new status (None: unknown id, or done already)."""
        inbound = await inbound_repository.lock(session, inbound_id)
        if inbound is None or inbound.status != "received":
            return None
        status, note = await inbound_mail_service.receive(session, inbound)
        await inbound_repository.finish(
            session, inbound.id, status=status, workspace_id=inbound.workspace_id, error=note
        )
        return status

    async def process(self, session: AsyncSession, inbound_id: uuid.UUID) -> str | None:
        """Classify the mail and act on it; returns its new status (None when
        there is nothing to do: unknown id, or processed already)."""
        inbound = await inbound_repository.lock(session, inbound_id)
        if inbound is None or inbound.status != "received":
            return None
        status, workspace_id, note = await self._process(session, inbound)
        await inbound_repository.finish(
            session, inbound.id, status=status, workspace_id=workspace_id, error=note
        )
        return status

    async def fail(self, session: AsyncSession, inbound_id: uuid.UUID, error: str) -> None:
        """Keep mail that processing cannot handle, with why, for inspection."""
        await inbound_repository.finish(
            session, inbound_id, status="failed", workspace_id=None, error=error[:4000]
        )

    async def prune(self, session: AsyncSession, *, older_than_seconds: float, limit: int) -> int:
        return await inbound_repository.prune(
            session, older_than_seconds=older_than_seconds, limit=limit
        )

    async def _process(
        self, session: AsyncSession, inbound: InboundMessage
    ) -> tuple[str, uuid.UUID | None, str | None]:
        """(status, workspace found, note)."""
        settings = get_settings()
        unsubscribe_domain = mailto_domain(settings).lower()
        requests: list[str] = []
        others: list[str] = []
        for rcpt in inbound.rcpt_to:
            local, _, domain = rcpt.rpartition("@")
            if domain.lower() == unsubscribe_domain and read_mailto_local_part(local) is not None:
                requests.append(local)
            else:
                others.append(rcpt)
        notes: list[str] = []
        if requests:
            hit = HitContext("MAIL", None, None, inbound.received_at)
            for local in requests:
                changed = await unsubscribe_service.by_mailto(session, local, hit)
                notes.append(
                    f"unsubscribe request {local}: {'applied' if changed else 'no change'}"
                )
            if not others:
                return "processed", None, "; ".join(notes)

        report = classify_message(inbound.raw, envelope_to=others)
        notes.extend(report.notes)
        found = self._return_path(inbound, others, report)
        if isinstance(found, str):
            return "ignored", inbound.workspace_id, "; ".join([found, *notes])
        workspace_id, message_id = found
        message: MessageFacts | None = None
        if message_id is not None:
            message = await bounce_repository.find_message(session, workspace_id, message_id)
        if message is None and report.original_message_id:
            message = await bounce_repository.find_message_by_header(
                session, workspace_id, _angle(report.original_message_id)
            )
        # `other`: mail the classifier could not read as any kind of report
        # (a person's reply, spam to the return path): kept, not acted on.
        verdicts = [v for v in report.verdicts if v.kind != "other"]
        if not verdicts:
            notes.insert(0, "nothing to act on: the classifier found no recipient verdict")
            return "ignored", workspace_id, "; ".join(notes)
        sole = len(verdicts) == 1
        for verdict in verdicts:
            await bounce_service.act(
                session,
                workspace_id,
                verdict,
                message=message,
                source=inbound.source,
                inbound_message_id=inbound.id,
                occurred_at=inbound.received_at,
                sole=sole,
                feedback_type=report.feedback_type,
            )
        return "processed", workspace_id, "; ".join(notes) or None

    def _return_path(
        self, inbound: InboundMessage, envelope: Sequence[str], report: Report
    ) -> tuple[uuid.UUID, uuid.UUID | None] | str:
        """(workspace, message id or None), or why the mail is not ours."""
        foreign = False
        for candidate in [*envelope, *report.return_paths]:
            parsed = parse_verp(candidate.strip().strip("<>"))
            if parsed is None:
                continue
            if inbound.workspace_id is not None and parsed[0] != inbound.workspace_id:
                foreign = True  # names another workspace's message: never act on it
                continue
            return parsed
        if foreign:
            return "the return path names a message of another workspace than the mailbox's"
        if inbound.workspace_id is not None:
            return inbound.workspace_id, None
        return "no verified return path: not a report about a message Sendstream sent"


def _angle(message_id: str) -> str:
    text = message_id.strip()
    return text if text.startswith("<") else f"<{text.strip('<>')}>"


inbound_service = InboundService()
