"""Lists and subscriptions (placeholder; the lists owner fills this in)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.contacts.consent import ConsentContext


class SubscriptionService:
    async def subscribe(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        contact_id: uuid.UUID,
        list_ids: Sequence[uuid.UUID],
        context: ConsentContext,
    ) -> None:
        """Subscribe the contact to each list: `subscribed` on single opt-in
        lists, `unconfirmed` (and a confirmation mail queued) on double opt-in
        ones; a contact already subscribed stays so. Unknown list ids raise
        `ListNotFound`. Writes consent records and events."""
        raise NotImplementedError


subscription_service = SubscriptionService()
