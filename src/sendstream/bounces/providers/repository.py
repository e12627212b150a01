"""Every query of provider webhooks and their receipts. Management queries
are scoped by `workspace_id`; the receiving route finds a webhook by its
unguessable id and provider, and everything it does afterwards is scoped by
that webhook's workspace."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.core.pagination import rows_after
from sendstream.models.message import Message
from sendstream.models.provider_webhook import ProviderWebhook, ProviderWebhookReceipt


class ProviderWebhookRepository:
    async def get(
        self, session: AsyncSession, workspace_id: uuid.UUID, webhook_id: uuid.UUID
    ) -> ProviderWebhook | None:
        return (
            await session.execute(
                select(ProviderWebhook).where(
                    ProviderWebhook.workspace_id == workspace_id, ProviderWebhook.id == webhook_id
                )
            )
        ).scalar_one_or_none()

    async def find_for_receiving(
        self, session: AsyncSession, provider: str, webhook_id: uuid.UUID
    ) -> ProviderWebhook | None:
        return (
            await session.execute(
                select(ProviderWebhook).where(
                    ProviderWebhook.id == webhook_id, ProviderWebhook.provider == provider
                )
            )
        ).scalar_one_or_none()

    async def add(self, session: AsyncSession, webhook: ProviderWebhook) -> ProviderWebhook:
        session.add(webhook)
        await session.flush()
        await session.refresh(webhook)
        return webhook

    async def page(
        self, session: AsyncSession, workspace_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
    ) -> Sequence[ProviderWebhook]:
        query = select(ProviderWebhook).where(ProviderWebhook.workspace_id == workspace_id)
        return await rows_after(session, query, ProviderWebhook.id, after=after, limit=limit)

    async def delete(self, session: AsyncSession, webhook: ProviderWebhook) -> None:
        await session.execute(
            delete(ProviderWebhook).where(
                ProviderWebhook.workspace_id == webhook.workspace_id,
                ProviderWebhook.id == webhook.id,
            )
        )

    async def record(
        self,
        session: AsyncSession,
        webhook: ProviderWebhook,
        *,
        received: int,
        applied: int,
        ignored: int,
        duplicates: int,
        topic_confirmed: str | None = None,
    ) -> None:
        values: dict[str, object] = {
            "last_received_at": func.now(),
            "received_count": ProviderWebhook.received_count + received,
            "applied_count": ProviderWebhook.applied_count + applied,
            "ignored_count": ProviderWebhook.ignored_count + ignored,
            "duplicate_count": ProviderWebhook.duplicate_count + duplicates,
        }
        if topic_confirmed is not None:
            values["subscription_topic_arn"] = topic_confirmed
            values["subscription_confirmed_at"] = func.now()
        await session.execute(
            update(ProviderWebhook)
            .where(
                ProviderWebhook.workspace_id == webhook.workspace_id,
                ProviderWebhook.id == webhook.id,
            )
            .values(**values)
        )

    # --- receipts

    async def remember(
        self, session: AsyncSession, webhook: ProviderWebhook, keys: Sequence[str]
    ) -> set[str]:
        """Records `keys` as seen; answers those that were new."""
        if not keys:
            return set()
        rows = [
            {"webhook_id": webhook.id, "workspace_id": webhook.workspace_id, "key": key}
            for key in dict.fromkeys(keys)
        ]
        inserted = await session.execute(
            insert(ProviderWebhookReceipt)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["webhook_id", "key"])
            .returning(ProviderWebhookReceipt.key)
        )
        return set(inserted.scalars().all())

    async def forget_before(
        self, session: AsyncSession, webhook: ProviderWebhook, window: timedelta
    ) -> None:
        await session.execute(
            delete(ProviderWebhookReceipt).where(
                ProviderWebhookReceipt.webhook_id == webhook.id,
                ProviderWebhookReceipt.seen_at < func.now() - window,
            )
        )

    # --- our messages, within the webhook's workspace

    async def messages_by_header(
        self, session: AsyncSession, workspace_id: uuid.UUID, headers: Sequence[str]
    ) -> dict[str, uuid.UUID]:
        if not headers:
            return {}
        rows = await session.execute(
            select(Message.message_id_header, Message.id).where(
                Message.workspace_id == workspace_id,
                Message.message_id_header.in_(list(set(headers))),
            )
        )
        return {header: message_id for header, message_id in rows.all()}

    async def existing_messages(
        self, session: AsyncSession, workspace_id: uuid.UUID, ids: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        if not ids:
            return set()
        rows = await session.scalars(
            select(Message.id).where(
                Message.workspace_id == workspace_id, Message.id.in_(list(set(ids)))
            )
        )
        return set(rows.all())


provider_webhook_repository = ProviderWebhookRepository()
