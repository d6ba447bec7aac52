"""A message no provider can take yet waits in the outbox instead of being reported failed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from services.notifications.channels import DeliveryError, Recipient
from services.notifications.domain import Profile, Request
from services.notifications.workflow import Workflow
from services.notifications.settings import NotificationsSettings
from services.notifications.templates import Rendered, Templates
from shared.clock import FixedClock

NOW = datetime(2026, 6, 1, 4, tzinfo=UTC)  # noon in Shanghai: outside the quiet hours
PROFILE = Profile("C-1", email="li@example.com", locale="en-US", preferred_channel="email",
                  consents={"care_messages": True, "email": True})
REQUEST = Request("C-1", "tier", "tier_upgrade", "tier_upgrade", "tier_upgrade:value_tier:high:x:C-1", "event-1",
                  {"tier": "high", "previous": "medium", "needed": ""})


class NoSuppressions:
    async def entries_for(self, profiles: Iterable[Profile]) -> dict[str, list[Any]]:
        return {}


class Records:
    """The notifications store as the workflow uses it, in memory."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.outcomes: list[dict[str, Any]] = []
        self.suppression_list = NoSuppressions()

    async def by_keys(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {k: dict(self.docs[k]) for k in keys if k in self.docs}

    async def profiles(self, ids: Iterable[str]) -> dict[str, Profile]:
        return {PROFILE.customer_id: PROFILE}

    async def care_history(self, *args: Any) -> tuple[dict[str, int], dict[tuple[str, str], datetime]]:
        return {}, {}

    async def claim(self, docs: Sequence[dict[str, Any]]) -> set[str]:
        self.docs.update({d["_id"]: dict(d) for d in docs})
        return {d["_id"] for d in docs}

    async def claim_deferred(self, key: str, fields: dict[str, Any]) -> bool:
        self.docs[key].update(fields)
        return True

    async def record_outcomes(self, docs: Sequence[dict[str, Any]]) -> None:
        self.outcomes.extend(docs)

    async def retry_later(self, keys: Sequence[str], due_at: datetime) -> None:
        for key in keys:
            self.docs[key].update(status="deferred", due_at=due_at)


class Mail:
    name = "email"

    def __init__(self) -> None:
        self.up = False
        self.sent: list[str] = []

    async def send(self, message: Rendered, to: Recipient, idempotency_key: str) -> None:
        if not self.up:
            raise DeliveryError("smtp_SMTPConnectError", retryable=True)
        self.sent.append(idempotency_key)

    async def close(self) -> None:
        pass


class Published:
    def __init__(self) -> None:
        self.events: list[Any] = []

    async def publish(self, events: Any, **_: Any) -> None:
        self.events.extend(events)


def workflow(records: Records, mail: Mail, clock: FixedClock) -> tuple[Workflow, Published]:
    settings = NotificationsSettings(channel_backoff_s=0, channel_retry_interval_s=60, channel_retry_for_hours=1,
                                     webhook_url="")
    out = Published()
    n = Workflow(settings, records, Templates("en-US"), {"email": mail}, clock, out)  # type: ignore[arg-type]
    return n, out


async def test_a_message_for_an_unreachable_server_is_deferred_then_sent_once_when_it_is_back() -> None:
    records, mail, clock = Records(), Mail(), FixedClock(NOW)
    n, out = workflow(records, mail, clock)
    await n.submit([REQUEST])
    doc = records.docs[REQUEST.dedupe_key]
    assert doc["status"] == "deferred" and doc["due_at"] == NOW + timedelta(seconds=60)
    assert not records.outcomes and not out.events  # nothing failed, nothing reported yet

    await n.submit([REQUEST])  # the trigger redelivered meanwhile: it waits, nothing more
    assert not records.outcomes and not mail.sent

    mail.up = True
    clock.advance(timedelta(seconds=61))
    await n.submit([REQUEST], resumed=True)  # what the scheduler's resume_due does
    assert mail.sent == [REQUEST.dedupe_key]
    assert [o["status"] for o in records.outcomes] == ["sent"] and len(out.events) == 1


async def test_a_message_no_server_took_for_longer_than_the_retry_window_is_reported_failed() -> None:
    records, mail, clock = Records(), Mail(), FixedClock(NOW)
    n, out = workflow(records, mail, clock)
    await n.submit([REQUEST])
    clock.advance(timedelta(hours=2))
    await n.submit([REQUEST], resumed=True)
    assert [(o["status"], o["reason"]) for o in records.outcomes] == [("failed", "smtp_SMTPConnectError")]
    assert len(out.events) == 1 and not mail.sent


async def test_a_message_a_dead_process_was_sending_is_never_sent_again_but_reported_interrupted() -> None:
    records, mail, clock = Records(), Mail(), FixedClock(NOW)
    mail.up = True
    first, _ = workflow(records, mail, clock)
    # The process claimed the message and died before it knew whether the provider took it.
    await records.claim([{"_id": REQUEST.dedupe_key, "customer_id": "C-1", "source_id": REQUEST.source_id,
                          "status": "sending", "attempt": "a process that is gone", "created_at": NOW}])
    n, out = workflow(records, mail, clock)
    await n.submit([REQUEST])  # its trigger read again after the restart
    assert not mail.sent
    assert [(o["status"], o["reason"]) for o in records.outcomes] == [("failed", "interrupted")]
    assert [(e.type, e.data.reason) for e in out.events] == [("notification.failed", "interrupted")]


async def test_a_message_this_process_claimed_but_never_handed_over_is_sent_when_its_batch_is_read_again() -> None:
    records, mail, clock = Records(), Mail(), FixedClock(NOW)
    n, out = workflow(records, mail, clock)
    await records.claim([{"_id": REQUEST.dedupe_key, "customer_id": "C-1", "source_id": REQUEST.source_id,
                          "status": "sending", "attempt": n._attempt, "created_at": NOW}])  # noqa: SLF001
    mail.up = True
    await n.submit([REQUEST])  # e.g. the broker was down before the send, and the batch is read again
    assert mail.sent == [REQUEST.dedupe_key]
    assert [o["status"] for o in records.outcomes] == ["sent"]
