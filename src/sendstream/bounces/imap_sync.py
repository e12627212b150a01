"""One pass over a mailbox's folder: every message past the stored position
is handed to the inbound intake once, then moved, flagged or deleted.

Order, so that a crash anywhere costs at most a re-fetch:

1. SELECT; a UIDVALIDITY other than the stored one starts over from UID 0.
2. For each batch of new UIDs: size and Message-ID/Date first.
3. Each message, in its own transaction: claim (mailbox, UIDVALIDITY, UID)
   in imap_messages, then `inbound_service.accept`, then commit. A claim
   that exists already (a re-fetch after a crash) skips the intake; a mail
   whose key (Message-ID + Date + size) this mailbox has seen under another
   UIDVALIDITY is recorded `duplicate` and not handed over again; one over
   `bounces.imap_max_message_bytes` is recorded `oversized`, not read, and
   left where it is.
4. Only then the processed action on the server, and after it the new
   position (`last_uid`) is saved.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from typing import Final

import structlog

from sendstream.bounces.imap_client import ImapClient, ImapCommandFailed
from sendstream.bounces.imap_repository import imap_repository
from sendstream.bounces.imap_session import MailboxConfig
from sendstream.bounces.intake import inbound_service
from sendstream.core.db import Database
from sendstream.core.settings import Settings

log = structlog.get_logger("sendstream.bounces.imap")

# UIDs looked at per round trip (sizes and headers), then one fetch each.
BATCH: Final = 100
# Recipient headers read for rcpt_to, most specific first; at most this many addresses.
RCPT_HEADERS: Final = ("Delivered-To", "X-Original-To", "To")
MAX_RCPTS: Final = 50
_META = "UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE)]"


@dataclass
class SyncResult:
    accepted: int = 0
    duplicates: int = 0
    oversized: int = 0
    # Re-fetched after an interruption: only the action was applied again.
    reapplied: int = 0


def message_key(header_block: bytes, size: int | None) -> str | None:
    """Same mail, same key, whatever its UID: SHA-256 of Message-ID, Date
    and size; None without a Message-ID."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(header_block)
    mid = str(headers.get("Message-ID") or "").strip()
    if not mid:
        return None
    date = str(headers.get("Date") or "").strip()
    return hashlib.sha256(f"{mid}\n{date}\n{size}".encode(errors="replace")).hexdigest()


def envelope_of(raw: bytes) -> tuple[str | None, list[str]]:
    """(mail_from, rcpt_to) as the mail's headers tell them: Return-Path
    (`<>` for DSNs: None), and the addresses of the first of Delivered-To,
    X-Original-To and To that is present (the VERP address is usually
    there)."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    return_path = str(headers.get("Return-Path") or "").strip().strip("<>").strip() or None
    for name in RCPT_HEADERS:
        values = [str(v) for v in headers.get_all(name) or []]
        if values:
            found: list[str] = []
            for _, address in getaddresses(values):
                address = address.strip()
                if "@" in address and address not in found:
                    found.append(address[:320])
            if found:
                return return_path, found[:MAX_RCPTS]
    return return_path, []


def _uid_set(uids: Sequence[int]) -> str:
    return ",".join(str(u) for u in uids)


class MailboxSync:
    def __init__(
        self, client: ImapClient, config: MailboxConfig, database: Database, settings: Settings
    ) -> None:
        self.client = client
        self.config = config
        self.database = database
        self.settings = settings
        self.uidvalidity = config.uidvalidity
        self.last_uid = config.last_uid
        self._target_ready = False

    async def run_once(self) -> SyncResult:
        config = self.config
        selected = await self.client.select(config.folder)
        if selected.uidvalidity != self.uidvalidity:
            if self.uidvalidity is not None:
                log.warning(
                    "imap.uidvalidity_changed",
                    mailbox_id=str(config.id),
                    was=self.uidvalidity,
                    now=selected.uidvalidity,
                )
            self.uidvalidity = selected.uidvalidity
            self.last_uid = 0
            async with self.database.session() as session:
                await imap_repository.save_position(
                    session, config.id, uidvalidity=selected.uidvalidity, last_uid=0
                )
        result = SyncResult()
        # `n:*` always names the newest message, even below n: filter.
        uids = [
            u
            for u in await self.client.uid_search(f"UID {self.last_uid + 1}:*")
            if u > self.last_uid
        ]
        for start in range(0, len(uids), BATCH):
            await self._batch(uids[start : start + BATCH], result)
        async with self.database.session() as session:
            await imap_repository.record_check(session, config.id, None)
        return result

    async def _batch(self, uids: list[int], result: SyncResult) -> None:
        config = self.config
        uidvalidity = self.uidvalidity
        assert uidvalidity is not None  # noqa: S101  set by run_once
        meta = await self.client.uid_fetch(_uid_set(uids), _META)
        keys: dict[int, str | None] = {}
        for uid, fetched in meta.items():
            header_block = next(
                (v for k, v in fetched.sections.items() if k.startswith(b"BODY[HEADER")), b""
            )
            keys[uid] = message_key(header_block, fetched.size)
        async with self.database.session() as session:
            done = await imap_repository.processed(session, config.id, uidvalidity, uids)
            known = await imap_repository.known_keys(
                session, config.id, [k for u, k in keys.items() if k and u not in done]
            )
        to_act: list[int] = []
        limit = self.settings.bounces.imap_max_message_bytes
        for uid in uids:
            fetched_meta = meta.get(uid)
            if fetched_meta is None:
                continue  # expunged meanwhile
            size = fetched_meta.size or 0
            key = keys.get(uid)
            outcome = done.get(uid)
            if outcome is not None:
                if outcome != "oversized":
                    to_act.append(uid)
                    result.reapplied += 1
                continue
            if key is not None and key in known:
                await self._claim(uid, key, "duplicate", size)
                to_act.append(uid)
                result.duplicates += 1
                continue
            if size > limit:
                await self._claim(uid, key, "oversized", size)
                log.warning(
                    "imap.oversized", mailbox_id=str(config.id), uid=uid, size=size, limit=limit
                )
                result.oversized += 1
                continue
            body = await self.client.uid_fetch(str(uid), "UID BODY.PEEK[]")
            raw = body[uid].sections.get(b"BODY[]") if uid in body else None
            if raw is None:
                continue  # expunged between the two fetches
            if await self._accept(uid, key, raw):
                result.accepted += 1
            if key is not None:
                known.add(key)
            to_act.append(uid)
        if to_act:
            await self._act(to_act)
        self.last_uid = max(self.last_uid, *uids)
        async with self.database.session() as session:
            await imap_repository.save_position(
                session, config.id, uidvalidity=uidvalidity, last_uid=self.last_uid
            )

    async def _claim(self, uid: int, key: str | None, outcome: str, size: int) -> bool:
        assert self.uidvalidity is not None  # noqa: S101
        async with self.database.session() as session:
            return await imap_repository.claim(
                session,
                mailbox_id=self.config.id,
                uidvalidity=self.uidvalidity,
                uid=uid,
                message_key=key,
                outcome=outcome,
                size_bytes=size,
            )

    async def _accept(self, uid: int, key: str | None, raw: bytes) -> bool:
        """Claim and hand over in one transaction; False when claimed already."""
        config = self.config
        assert self.uidvalidity is not None  # noqa: S101
        mail_from, rcpt_to = envelope_of(raw)
        async with self.database.session() as session:
            claimed = await imap_repository.claim(
                session,
                mailbox_id=config.id,
                uidvalidity=self.uidvalidity,
                uid=uid,
                message_key=key or hashlib.sha256(raw).hexdigest(),
                outcome="accepted",
                size_bytes=len(raw),
            )
            if not claimed:
                return False
            inbound_id: uuid.UUID = await inbound_service.accept(
                session,
                raw,
                source="imap",
                mail_from=mail_from,
                rcpt_to=rcpt_to,
                workspace_id=config.workspace_id,
            )
            await imap_repository.link_inbound(
                session,
                mailbox_id=config.id,
                uidvalidity=self.uidvalidity,
                uid=uid,
                inbound_message_id=inbound_id,
            )
        log.info(
            "imap.accepted",
            mailbox_id=str(config.id),
            uid=uid,
            size=len(raw),
            inbound_message_id=str(inbound_id),
        )
        return True

    async def _act(self, uids: list[int]) -> None:
        config = self.config
        uid_set = _uid_set(uids)
        if config.processed_action == "move":
            folder = config.processed_folder or "Processed"
            if not self._target_ready:
                await self.client.create(folder)
                self._target_ready = True
            try:
                await self.client.uid_move(uid_set, folder)
            except ImapCommandFailed as exc:
                if exc.code != "TRYCREATE":
                    raise
                await self.client.create(folder)
                await self.client.uid_move(uid_set, folder)
        elif config.processed_action == "flag":
            await self.client.uid_store(uid_set, config.processed_flag or "\\Seen")
        else:
            await self.client.uid_delete(uid_set)
