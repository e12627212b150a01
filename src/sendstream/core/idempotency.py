"""`Idempotency-Key` on creates: a retried POST with the same key gets the
stored response instead of creating twice.

The auth dependency calls `begin()` once the workspace is known. It claims the
key with an insert in the request's own transaction, so:

* a concurrent duplicate blocks on that row until the first request commits
  (then it replays the stored response) or rolls back (then it runs itself);
* the response is stored by a commit hook in the same transaction, so a stored
  key always has a stored response, and a failed request (error status or
  exception: the transaction rolls back) leaves the key free for a retry.

Keys are per workspace and expire after `api.idempotency_ttl_hours`; an
expired key is claimed afresh. `delete_expired_idempotency_keys` removes old
rows (run it from a periodic job).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

from fastapi import Request, Response
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.errors import Conflict, InvalidInput
from sendstream.core.http import CommitHook, PreparedResponse, add_commit_hook
from sendstream.core.settings import get_settings
from sendstream.models.idempotency import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255

# Headers that describe this delivery rather than the stored result: they are
# recomputed (length), per request (request id, rate limit) or per replay.
_NOT_STORED = frozenset(
    {
        "content-length",
        "date",
        "server",
        "set-cookie",
        "x-request-id",
        "retry-after",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "ratelimit-policy",
        REPLAYED_HEADER.lower(),
    }
)


def _valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY_LENGTH and all(" " <= c <= "~" for c in key)


async def request_hash(request: Request) -> str:
    """SHA-256 over method, path (with query) and body bytes: what makes two
    requests "the same request" for a key."""
    digest = hashlib.sha256()
    digest.update(request.method.encode())
    digest.update(b"\0")
    digest.update(request.url.path.encode())
    digest.update(b"?")
    digest.update(request.url.query.encode())
    digest.update(b"\0")
    # A multipart body (file uploads) was already parsed by the framework,
    # which consumed the stream: hash its parts instead, files by content.
    form = getattr(request, "_form", None)
    if form is None:
        digest.update(await request.body())
        return digest.hexdigest()
    for name, value in form.multi_items():
        digest.update(name.encode() + b"=")
        if isinstance(value, str):
            digest.update(value.encode())
        else:
            digest.update((value.filename or "").encode() + b"\0")
            await value.seek(0)
            while block := await value.read(1 << 20):
                digest.update(block)
            await value.seek(0)
        digest.update(b"\0")
    return digest.hexdigest()


def _ttl() -> timedelta:
    return timedelta(hours=get_settings().api.idempotency_ttl_hours)


async def begin(request: Request, session: AsyncSession, workspace_id: uuid.UUID) -> None:
    """Claim the request's Idempotency-Key in `session`, or answer for it.

    Does nothing unless the request is a POST with the header. Raises
    `PreparedResponse` with the stored response when the same request already
    succeeded, `InvalidInput` when the key is malformed or was used for a
    different request."""
    if request.method != "POST":
        return
    key = request.headers.get(HEADER)
    if key is None:
        return
    if not _valid_key(key):
        raise InvalidInput(
            f"{HEADER}: must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
            code="invalid_idempotency_key",
        )
    fingerprint = await request_hash(request)

    # The row may vanish between the insert and the select (expired and
    # deleted by the cleanup job); one more try then claims it.
    for _ in range(3):
        claimed = await _claim(session, workspace_id, key, fingerprint)
        if claimed:
            add_commit_hook(request, _store_response_hook(workspace_id, key, request))
            return
        row = (
            await session.execute(
                select(
                    IdempotencyKey.request_hash,
                    IdempotencyKey.response_status,
                    IdempotencyKey.response_body,
                    IdempotencyKey.response_headers,
                ).where(IdempotencyKey.workspace_id == workspace_id, IdempotencyKey.key == key)
            )
        ).one_or_none()
        if row is None:
            continue
        if row.request_hash != fingerprint:
            raise InvalidInput(
                f"{HEADER}: this key was already used for a different request "
                "(method, path or body differ); use a new key for a new request.",
                code="idempotency_key_reused",
            )
        if row.response_status is None:
            # Only reachable when a request claimed the key outside a
            # unit-of-work route, which never stores the response.
            raise Conflict(
                f"{HEADER}: a request with this key has not finished; retry later.",
                code="idempotency_key_in_use",
            )
        headers = dict(row.response_headers or {})
        headers[REPLAYED_HEADER] = "true"
        raise PreparedResponse(
            Response(
                content=row.response_body or b"",
                status_code=row.response_status,
                headers=headers,
            )
        )
    raise Conflict(
        f"{HEADER}: the key changed hands repeatedly while being claimed; retry.",
        code="idempotency_key_in_use",
    )


async def _claim(
    session: AsyncSession, workspace_id: uuid.UUID, key: str, fingerprint: str
) -> bool:
    """Insert the key, or take over an expired row. Returns False when a live
    row exists; if its transaction is still open this waits for it to end."""
    values = insert(IdempotencyKey).values(
        workspace_id=workspace_id, key=key, request_hash=fingerprint
    )
    statement = values.on_conflict_do_update(
        index_elements=[IdempotencyKey.workspace_id, IdempotencyKey.key],
        set_={
            "request_hash": values.excluded.request_hash,
            "response_status": None,
            "response_body": None,
            "response_headers": None,
            "created_at": func.now(),
        },
        where=IdempotencyKey.created_at < func.now() - _ttl(),
    ).returning(IdempotencyKey.key)
    return (await session.execute(statement)).first() is not None


def store_instead(request: Request, body: bytes) -> None:
    """Make a replay answer with `body` rather than this response's own: for
    responses that carry a secret shown once (a new API key's full key), which
    must never rest in the database in clear."""
    request.state.idempotency_replay_body = body


def _store_response_hook(workspace_id: uuid.UUID, key: str, request: Request) -> CommitHook:
    async def store(session: AsyncSession, response: Response) -> None:
        body = getattr(request.state, "idempotency_replay_body", None)
        if body is None:
            body = getattr(response, "body", None)
        if not isinstance(body, bytes):
            # A streamed body cannot be replayed; creates answer with a
            # buffered response, so this is a bug in the route.
            raise TypeError(f"{HEADER} needs a buffered response, got {type(response).__name__}")
        headers = {
            name: value
            for name, value in response.headers.items()
            if name.lower() not in _NOT_STORED
        }
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.workspace_id == workspace_id, IdempotencyKey.key == key)
            .values(
                response_status=response.status_code,
                response_body=body,
                response_headers=headers,
            )
            .execution_options(synchronize_session=False)
        )

    return store


async def delete_expired_idempotency_keys(session: AsyncSession) -> int:
    """Delete keys older than the TTL; returns how many went."""
    result = await session.execute(
        delete(IdempotencyKey)
        .where(IdempotencyKey.created_at < func.now() - _ttl())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
