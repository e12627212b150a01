"""What a verdict does, on the real database: hard bounces and complaints
suppress at once and set the contact's states, soft bounces count toward
the policy, delays and auto-replies never suppress, unsubscribes are
honoured, and acting again on the same verdict changes nothing. Every
action shows on the message and the contact timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.bounces.repository import MessageFacts, bounce_repository
from sendstream.bounces.service import bounce_service
from sendstream.bounces.verdict import Reason
from sendstream.core.db import Database
from sendstream.core.settings import Settings, override_settings
from tests.bounces.action_support import (
    Mailed,
    apply,
    event_types,
    execute,
    mailed,
    rows,
    states,
    suppression,
    totals,
    verdict,
)
from tests.contacts.helpers import events_of
from tests.fixtures.actors import Actor
from tests.tracking.helpers import message_events, sent_message


@pytest.fixture
async def ada(client: httpx.AsyncClient, db: Database, admin_actor: Actor) -> Mailed:
    return await mailed(client, db, admin_actor)


class TestHardBounce:
    async def test_hard_bounce_suppresses_and_marks_contact_lists_and_message(
        self, client: httpx.AsyncClient, db: Database, ada: Mailed
    ) -> None:
        await apply(db, ada, verdict(diagnostic="550 5.1.1 <ada@example.com>: unknown user"))

        assert await suppression(db, ada.actor.workspace_id, "ada@example.com") == {
            "reason": "bounced",
            "source": "bounce",
        }
        assert await states(db, ada) == ("bounced", "bounced", "bounced")
        consent = await rows(
            db,
            "SELECT list_id, status, previous_status, source FROM consent_records "
            "WHERE status = 'bounced' ORDER BY id",
        )
        assert [
            (str(c["list_id"]) if c["list_id"] else None, c["previous_status"]) for c in consent
        ] == [
            (None, "active"),
            (ada.list_id, "subscribed"),
        ]
        assert {c["source"] for c in consent} == {"bounce"}
        [bounced] = await message_events(db, ada.message.id, "message.bounced")
        assert bounced == {
            "type": "message.bounced",
            "message_id": str(ada.message.id),
            "contact_id": ada.contact_id,
            "recipient": "ada@example.com",
            "hard": True,
            "reason": "user_unknown",
            "status": "5.1.1",
            "diagnostic": "550 5.1.1 <ada@example.com>: unknown user",
            "source": "ses",
        }

    async def test_the_bounce_shows_on_the_message_and_the_contact_timeline(
        self, client: httpx.AsyncClient, db: Database, ada: Mailed
    ) -> None:
        await apply(db, ada, verdict())
        headers = ada.actor.headers
        message = (await client.get(f"/v1/messages/{ada.message.id}", headers=headers)).json()
        assert message["status"] == "bounced"
        assert "message.bounced" in [e["type"] for e in message["events"]]
        response = await client.get(f"/v1/contacts/{ada.contact_id}/timeline", headers=headers)
        assert response.status_code == 200, response.text
        [entry] = [e for e in response.json()["data"] if e["type"] == "contact.bounced"]
        assert entry["data"]["message_id"] == str(ada.message.id)
        assert entry["data"]["list_ids"] == [ada.list_id]
        assert entry["data"]["previous_status"] == "active"

    async def test_the_same_verdict_again_changes_and_emits_nothing(
        self, db: Database, ada: Mailed
    ) -> None:
        when = datetime.now(UTC)
        await apply(db, ada, verdict(), occurred_at=when)
        before = await totals(db)
        await apply(db, ada, verdict(), occurred_at=when)
        assert await totals(db) == before

    async def test_a_bounce_for_a_copy_recipient_leaves_the_message_state(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor, ada: Mailed
    ) -> None:
        # The message is Ada's; Bob rode along in cc (same envelope, same VERP).
        await execute(
            db,
            'UPDATE messages SET cc = \'[{"email": "Bob@Example.com"}]\' WHERE id = :id',
            id=ada.message.id,
        )
        await apply(db, ada, verdict(recipient="bob@example.com"))
        assert await suppression(db, admin_actor.workspace_id, "bob@example.com") == {
            "reason": "bounced",
            "source": "bounce",
        }
        assert await states(db, ada) == ("sent", "active", "subscribed")


class TestSoftBounces:
    async def test_a_soft_bounce_is_announced_and_suppresses_nothing(
        self, db: Database, ada: Mailed
    ) -> None:
        await apply(db, ada, verdict(reason=Reason.mailbox_full))
        assert await suppression(db, ada.actor.workspace_id, "ada@example.com") == {}
        assert await states(db, ada) == ("sent", "active", "subscribed")
        [event] = await message_events(db, ada.message.id, "message.bounced")
        assert (event["hard"], event["reason"]) == (False, "mailbox_full")

    async def test_the_third_soft_bounce_within_the_window_suppresses(
        self, db: Database, ada: Mailed
    ) -> None:
        now = datetime.now(UTC)
        for days_ago in (10, 5):
            await apply(
                db, ada, verdict(reason=Reason.mailbox_full), occurred_at=now - timedelta(days_ago)
            )
        assert await suppression(db, ada.actor.workspace_id, "ada@example.com") == {}
        await apply(db, ada, verdict(reason=Reason.mailbox_full), occurred_at=now)
        assert await suppression(db, ada.actor.workspace_id, "ada@example.com") == {
            "reason": "bounced",
            "source": "soft_bounce_policy",
        }
        message, contact, listed = await states(db, ada)
        assert (message, contact, listed) == ("sent", "bounced", "bounced")
        actions = await rows(db, "SELECT action FROM bounce_records ORDER BY occurred_at")
        assert [a["action"] for a in actions] == ["counted", "counted", "suppressed_by_policy"]

    async def test_soft_bounces_older_than_the_window_do_not_add_up(
        self, db: Database, ada: Mailed
    ) -> None:
        now = datetime.now(UTC)
        for days_ago in (40, 20, 0):
            await apply(
                db, ada, verdict(reason=Reason.mailbox_full), occurred_at=now - timedelta(days_ago)
            )
        assert await suppression(db, ada.actor.workspace_id, "ada@example.com") == {}

    async def test_the_limit_is_a_setting(
        self, db: Database, ada: Mailed, settings: Settings
    ) -> None:
        override_settings(
            settings.model_copy(
                update={"bounces": settings.bounces.model_copy(update={"soft_bounce_limit": 1})}
            )
        )
        try:
            await apply(db, ada, verdict(reason=Reason.mailbox_full))
        finally:
            override_settings(settings)
        assert (await suppression(db, ada.actor.workspace_id, "ada@example.com"))["source"] == (
            "soft_bounce_policy"
        )

    @pytest.mark.parametrize("reason", [Reason.spam_blocked, Reason.rate_limited, Reason.policy])
    async def test_blocks_of_the_sender_never_count_against_the_address(
        self, db: Database, ada: Mailed, reason: Reason
    ) -> None:
        now = datetime.now(UTC)
        for minutes in range(5):
            await apply(
                db,
                ada,
                verdict(reason=reason, hard=False, status="4.7.1"),
                occurred_at=now - timedelta(minutes=minutes),
            )
        assert await suppression(db, ada.actor.workspace_id, "ada@example.com") == {}
        assert len(await message_events(db, ada.message.id, "message.bounced")) == 5


class TestComplaint:
    async def test_a_complaint_suppresses_and_marks_everything_complained(
        self, client: httpx.AsyncClient, db: Database, ada: Mailed
    ) -> None:
        await apply(db, ada, verdict("complaint", Reason.complaint))
        assert await suppression(db, ada.actor.workspace_id, "ada@example.com") == {
            "reason": "complained",
            "source": "complaint",
        }
        assert await states(db, ada) == ("complained", "complained", "complained")
        [event] = await message_events(db, ada.message.id, "message.complained")
        assert (event["recipient"], event["contact_id"], event["source"]) == (
            "ada@example.com",
            ada.contact_id,
            "ses",
        )
        assert [e["type"] for e in await events_of(db, "contact.complained")] == [
            "contact.complained"
        ]

    async def test_a_complaint_after_a_hard_bounce_strengthens_the_states(
        self, db: Database, ada: Mailed
    ) -> None:
        await apply(db, ada, verdict())
        await apply(db, ada, verdict("complaint", Reason.complaint))
        _, contact, listed = await states(db, ada)
        assert (contact, listed) == ("complained", "complained")
        assert (await suppression(db, ada.actor.workspace_id, "ada@example.com"))["reason"] == (
            "complained"
        )

    async def test_a_hard_bounce_after_a_complaint_weakens_nothing(
        self, db: Database, ada: Mailed
    ) -> None:
        await apply(db, ada, verdict("complaint", Reason.complaint))
        await apply(db, ada, verdict())
        assert await states(db, ada) == ("complained", "complained", "complained")
        assert [e["type"] for e in await events_of(db, "contact.bounced")] == []


class TestNeitherBounceNorComplaint:
    async def test_a_delay_notice_is_announced_and_changes_nothing(
        self, db: Database, ada: Mailed
    ) -> None:
        await apply(db, ada, verdict("delay", Reason.network, status="4.4.7"))
        assert await states(db, ada) == ("sent", "active", "subscribed")
        assert await suppression(db, ada.actor.workspace_id, "ada@example.com") == {}
        [event] = await message_events(db, ada.message.id, "message.delayed")
        assert (event["status"], event["reason"]) == ("4.4.7", "network")

    @pytest.mark.parametrize("reason", [Reason.vacation, Reason.challenge])
    async def test_an_auto_reply_is_recorded_and_never_suppresses(
        self, db: Database, ada: Mailed, reason: Reason
    ) -> None:
        now = datetime.now(UTC)
        for minutes in range(4):
            await apply(
                db, ada, verdict("auto_reply", reason), occurred_at=now - timedelta(minutes=minutes)
            )
        assert await states(db, ada) == ("sent", "active", "subscribed")
        assert await suppression(db, ada.actor.workspace_id, "ada@example.com") == {}
        events = await message_events(db, ada.message.id, "message.auto_replied")
        assert [e["reason"] for e in events] == [str(reason)] * 4

    async def test_a_delivery_event_marks_a_sent_message_delivered_once(
        self, db: Database, ada: Mailed
    ) -> None:
        await apply(db, ada, verdict("delivered", Reason.delivered))
        await apply(db, ada, verdict("delivered", Reason.delivered))
        assert (await states(db, ada))[0] == "delivered"
        assert len(await message_events(db, ada.message.id, "message.delivered")) == 1


class TestUnsubscribe:
    async def test_an_unsubscribe_report_leaves_the_messages_list(
        self, db: Database, ada: Mailed
    ) -> None:
        await apply(db, ada, verdict("unsubscribe", Reason.unsubscribe))
        assert await states(db, ada) == ("sent", "active", "unsubscribed")
        [event] = await message_events(db, ada.message.id, "message.unsubscribed")
        assert (event["method"], event["scope"]) == ("mailto", "list")

    async def test_an_unsubscribe_without_a_message_unsubscribes_the_address(
        self, db: Database, ada: Mailed
    ) -> None:
        await apply(db, ada, verdict("unsubscribe", Reason.unsubscribe), message_id=None)
        assert await suppression(db, ada.actor.workspace_id, "ada@example.com") == {
            "reason": "unsubscribed",
            "source": "unsubscribe_link",
        }
        assert (await states(db, ada))[1] == "unsubscribed"


class TestTenancy:
    async def test_a_message_of_another_workspace_is_never_touched(
        self,
        client: httpx.AsyncClient,
        db: Database,
        ada: Mailed,
        other_workspace_actor: Actor,
    ) -> None:
        theirs = await mailed(client, db, other_workspace_actor)
        # Workspace A's provider reports a bounce naming B's message id.
        await apply(db, ada, verdict(), message_id=theirs.message.id)
        assert await states(db, theirs) == ("sent", "active", "subscribed")
        assert await event_types(db, theirs.message.id) == []
        assert await suppression(db, other_workspace_actor.workspace_id, "ada@example.com") == {}
        # In A it is an unknown message: only the address-level action.
        assert (await suppression(db, ada.actor.workspace_id, "ada@example.com"))["reason"] == (
            "bounced"
        )
        [record] = await rows(db, "SELECT workspace_id, message_id FROM bounce_records")
        assert (record["workspace_id"], record["message_id"]) == (ada.actor.workspace_id, None)

    async def test_a_stranger_named_by_a_multi_recipient_report_is_recorded_not_suppressed(
        self, db: Database, ada: Mailed
    ) -> None:
        async with db.session() as session:
            for address in ("ada@example.com", "stranger@example.com"):
                await bounce_service.act(
                    session,
                    ada.actor.workspace_id,
                    verdict(recipient=address),
                    message=await _facts(session, ada),
                    source="mx",
                    inbound_message_id=None,
                    occurred_at=None,
                    sole=False,
                )
        assert await suppression(db, ada.actor.workspace_id, "stranger@example.com") == {}
        actions = await rows(db, "SELECT recipient, action FROM bounce_records ORDER BY recipient")
        assert [(a["recipient"], a["action"]) for a in actions] == [
            ("ada@example.com", "suppressed"),
            ("stranger@example.com", "not_a_recipient"),
        ]

    async def test_a_report_naming_another_address_of_a_sole_recipient_is_the_recipients(
        self, db: Database, admin_actor: Actor
    ) -> None:
        # Forwarding: the DSN names the forward target; VERP says whose it is.
        message = await sent_message(db, admin_actor.workspace_id, to="old@example.com")
        async with db.session() as session:
            await bounce_service.apply(
                session,
                admin_actor.workspace_id,
                verdict(recipient="new@elsewhere.example"),
                message_id=message.id,
                source="mx",
            )
        assert (await suppression(db, admin_actor.workspace_id, "old@example.com"))["reason"] == (
            "bounced"
        )
        assert await suppression(db, admin_actor.workspace_id, "new@elsewhere.example") == {}


async def _facts(session: AsyncSession, mail: Mailed) -> MessageFacts:
    found = await bounce_repository.find_message(session, mail.actor.workspace_id, mail.message.id)
    assert found is not None
    return found
