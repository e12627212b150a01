"""Group commit for the submission relay: messages accepted by concurrent
SMTP sessions are queued together, one transaction (one set of checks, one
insert, one commit) per group, through the send API's own
`message_service.send_batch`, so each message gets exactly the checks an API
send gets, and each client gets its reply only after the commit.

A group is whatever arrived while the previous group was being written (no
timer: a lone message is written at once), at most
`smtp.submission_batch_size` messages, the send API's rows-per-request and
content limits, and one credential check per group (a credential revoked
while its connection stays open sends nothing more).

Replies: 250 with the message ids; the API's refusal codes mapped to SMTP
codes (`refusal_reply`); 451 4.3.0 when the database is away (the client
retries; nothing was queued). A group that fails for another reason is
written again one message at a time, so one bad message cannot fail others.

Also here: `SuppressionLookup`, the RCPT-time suppression check, batched the
same way (one query per workspace per round).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
from sqlalchemy import exc as sa_exc

from sendstream.core.db import Database
from sendstream.core.loops import DATABASE_ERRORS
from sendstream.core.settings import Settings
from sendstream.delivery.message_schemas import BatchItemResult, MessageBatch
from sendstream.delivery.message_service import message_service
from sendstream.delivery.send_rules import suppressed_reasons
from sendstream.delivery.smtp_credential_service import SmtpLogin, smtp_credential_service
from sendstream.delivery.submission_parse import Submission, smtp_reply

log = structlog.get_logger("sendstream.delivery.submission")

UNAVAILABLE = smtp_reply(451, "4.3.0", "The database is not reachable; nothing was queued, retry.")
FAILED = smtp_reply(451, "4.3.0", "Internal error; nothing was queued, retry later.")
REVOKED = smtp_reply(
    554, "5.7.8", "The SMTP credential was revoked or has expired; nothing was queued."
)
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    *DATABASE_ERRORS,
    sa_exc.TimeoutError,
    TimeoutError,
)

# API refusal codes -> (SMTP code, enhanced status code). Anything else is a
# content fault: 554 5.6.0.
_REFUSALS: dict[str, tuple[int, str]] = {
    "recipient_suppressed": (550, "5.7.1"),
    "recipient_unsubscribed_from_list": (550, "5.7.1"),
    "unknown_sending_domain": (550, "5.7.1"),
    "domain_not_verified": (550, "5.7.1"),
    "from_required": (550, "5.7.1"),
    "invalid_address": (550, "5.1.3"),
    "attachment_too_large": (552, "5.3.4"),
    "request_too_large": (552, "5.3.4"),
    "data_too_large": (552, "5.3.4"),
    "too_many_messages": (452, "4.5.3"),
    "list_not_found": (550, "5.7.1"),
}


def refusal_reply(code: str | None, error: str | None) -> str:
    smtp_code, enhanced = _REFUSALS.get(code or "", (554, "5.6.0"))
    return smtp_reply(smtp_code, enhanced, f"{code}: {error or 'refused'}; nothing was queued.")


def queued_reply(result: BatchItemResult) -> str:
    ids = [str(m.id) for m in result.messages]
    text = "Queued as " + " ".join(ids)
    if len(text) > 400:
        text = f"Queued as {' '.join(ids[:8])} and {len(ids) - 8} more"
    return smtp_reply(250, "2.0.0", text)


@dataclass(slots=True)
class _Pending:
    login: SmtpLogin
    submission: Submission
    reply: asyncio.Future[str]


class SubmissionWriter:
    def __init__(self, settings: Settings, database: Database) -> None:
        self._settings = settings
        self._database = database
        self._queue: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        # Groups written and messages in them (the average group size says
        # how much the group commit saves).
        self.groups = 0
        self.messages = 0

    def start(self) -> None:
        for n in range(self._settings.smtp.submission_write_concurrency):
            self._tasks.append(asyncio.create_task(self._run(), name=f"submission-writer-{n}"))

    async def stop(self, grace: float = 10.0) -> None:
        """Write what is queued (for up to `grace` seconds), then stop."""
        self._stopping = True
        self._wake.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks.clear()
        log.info("submission.writer_stopped", groups=self.groups, messages=self.messages)
        while self._queue:
            item = self._queue.popleft()
            if not item.reply.done():
                item.reply.set_result(smtp_reply(421, "4.3.2", "Shutting down; retry."))

    def enqueue(self, login: SmtpLogin, submission: Submission) -> asyncio.Future[str]:
        """A future of the SMTP reply for the message, set once its group
        is committed (no task per message)."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        if self._stopping:
            future.set_result(smtp_reply(421, "4.3.2", "Shutting down; retry."))
            return future
        self._queue.append(_Pending(login, submission, future))
        self._wake.set()
        return future

    def _take(self) -> list[_Pending]:
        delivery = self._settings.delivery
        limit = self._settings.smtp.submission_batch_size
        rows = delivery.max_messages_per_request
        content = delivery.max_request_content_bytes
        group: list[_Pending] = []
        while self._queue and len(group) < limit:
            head = self._queue[0]
            cost = head.submission.size * head.submission.rows
            if group and (head.submission.rows > rows or cost > content):
                break
            rows -= head.submission.rows
            content -= cost
            group.append(self._queue.popleft())
        return group

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            group = self._take()
            self.groups += 1
            self.messages += len(group)
            replies = await self._write_group(group)
            for item, reply in zip(group, replies, strict=True):
                if not item.reply.done():
                    item.reply.set_result(reply)

    async def _write_group(self, group: Sequence[_Pending]) -> list[str]:
        try:
            return await self._write(group)
        except TRANSIENT_ERRORS as exc:
            log.warning("submission.database_unavailable", error=str(exc).splitlines()[0][:300])
            return [UNAVAILABLE] * len(group)
        except Exception:
            if len(group) == 1:
                log.exception("submission.write_failed")
                return [FAILED]
        # One bad message must not fail the rest: each on its own.
        return [(await self._write_group([item]))[0] for item in group]

    async def _write(self, group: Sequence[_Pending]) -> list[str]:
        replies: list[str | None] = [None] * len(group)
        by_workspace: dict[uuid.UUID, list[int]] = defaultdict(list)
        for index, item in enumerate(group):
            by_workspace[item.login.workspace_id].append(index)
        async with self._database.session() as session:
            for workspace_id, indexes in by_workspace.items():
                live = await smtp_credential_service.live_ids(
                    session, workspace_id, sorted({group[i].login.credential_id for i in indexes})
                )
                sendable = []
                for i in indexes:
                    if group[i].login.credential_id in live:
                        sendable.append(i)
                    else:
                        replies[i] = REVOKED
                if not sendable:
                    continue
                batch = MessageBatch.model_construct(
                    messages=[group[i].submission.body for i in sendable]
                )
                result = await message_service.send_batch(
                    session, workspace_id, batch, from_mime=True
                )
                for i, outcome in zip(sendable, result.results, strict=True):
                    replies[i] = (
                        queued_reply(outcome)
                        if outcome.status == "queued"
                        else refusal_reply(outcome.code, outcome.error)
                    )
        return [r if r is not None else FAILED for r in replies]


@dataclass(slots=True)
class _Lookup:
    keys: dict[str, list[asyncio.Future[str | None]]] = field(default_factory=dict)


# A round of suppression lookups waits this long (seconds) for the RCPTs of
# other sessions first: a round (a session, a query) costs far more CPU than
# a key in it, and 2 ms is nothing in an SMTP exchange.
LOOKUP_GATHER = 0.002


class SuppressionLookup:
    """`lookup(workspace, key)`: a future of the address's suppression
    reason, or None. Lookups that arrive within `LOOKUP_GATHER` or while one
    round runs share the next round."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._pending: dict[uuid.UUID, _Lookup] = defaultdict(_Lookup)
        self._runner: asyncio.Task[None] | None = None

    def lookup(self, workspace_id: uuid.UUID, key: str) -> asyncio.Future[str | None]:
        """A future of the key's suppression reason (None: not suppressed),
        answered by the next round."""
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._pending[workspace_id].keys.setdefault(key, []).append(future)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return future

    async def _run(self) -> None:
        await asyncio.sleep(LOOKUP_GATHER)
        while self._pending:
            pending, self._pending = self._pending, defaultdict(_Lookup)
            try:
                async with self._database.session() as session:
                    for workspace_id, lookup in pending.items():
                        found = await suppressed_reasons(session, workspace_id, sorted(lookup.keys))
                        for key, futures in lookup.keys.items():
                            for future in futures:
                                if not future.done():
                                    future.set_result(found.get(key))
            except Exception as exc:
                for lookup in pending.values():
                    for futures in lookup.keys.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)

    async def stop(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner
