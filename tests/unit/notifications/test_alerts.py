"""Staff alerts: whom they reach and how, in the person's language and time, once, whatever the
customer's consents or the hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from services.notifications import alerts
from services.notifications.channels import DeliveryError, Recipient
from services.notifications.settings import NotificationsSettings
from services.notifications.templates import Rendered, Templates
from services.notifications.workflow import STAFF_WEBHOOK, Workflow
from shared.clock import FixedClock
from shared.contract.events import ComplaintStaffAlert

#: 23:00 in Shanghai: inside the customers' quiet hours, which staff alerts ignore.
NOW = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)


def event(**alert: Any) -> ComplaintStaffAlert:
    body = {"kind": "escalated", "staff_id": "sup-wang", "staff_name": "Wang Fang", "role": "supervisor",
            "rung": "supervisor", "on_duty": False, "email": "Wang.Fang@Example.com", "locale": "en-US",
            "timezone": "Europe/London", "reason": "first_response_breached", "previous_assignee": "agent-zhao",
            "due_at": "2026-03-03T09:00:00+08:00", **alert}
    return ComplaintStaffAlert.model_validate({
        "id": "alert-1", "source": "carecrm/complaints", "subject": "C-1", "time": NOW,
        "data": {"complaint_id": "K-1", "status": "received", "priority": "p2", "team": "care",
                 "sla_target": "first_response", "alert": {k: v for k, v in body.items() if v is not None}}},
        context={"now": NOW})


def test_an_alert_event_becomes_one_message_keyed_by_the_event() -> None:
    message = alerts.message_from(event())
    assert (message.dedupe_key, message.customer_id, message.staff_id, message.template) == (
        "staff_alert:alert-1", "C-1", "sup-wang", "staff_escalated")
    assert message.email == "wang.fang@example.com"
    assert alerts.message_from_doc(alerts.message_doc(message)) == message


def test_e_mail_goes_first_and_a_webhook_only_under_an_allowed_prefix() -> None:
    both = alerts.message_from(event(webhook="https://chat.example.com/hooks/wang"))
    assert alerts.channels(both, ["https://chat.example.com/"]) == (
        [("email", "wang.fang@example.com"), ("webhook", "https://chat.example.com/hooks/wang")], None)
    assert alerts.channels(both, ["http://127.0.0.1:"]) == ([("email", "wang.fang@example.com")], None)
    hook_only = alerts.message_from(event(email=None, webhook="https://evil.example.net/x"))
    assert alerts.channels(hook_only, ["https://chat.example.com/"]) == ([], "webhook_not_allowed")
    assert alerts.channels(hook_only, [""]) == ([], "webhook_not_allowed")  # an empty prefix allows nothing


def test_an_allowed_prefix_ends_the_host_or_a_path_so_that_it_allows_no_other_host() -> None:
    assert NotificationsSettings(staff_webhook_prefixes=("https://chat.example.com/hooks/",))
    for loose in ("https://chat.example.com", "http://127.0.0.1", "ftp://files.example.com/", ""):
        with pytest.raises(ValidationError):
            NotificationsSettings(staff_webhook_prefixes=(loose,))


def test_the_due_time_is_written_on_the_persons_own_clock_and_in_their_language() -> None:
    message = alerts.message_from(event())
    context = alerts.context(message, "en-US", "Asia/Shanghai")
    assert context["due_local"] == "Tue 3 Mar 2026, 01:00 (Europe/London)"
    rendered = Templates("zh-CN").render(message.template, "en-US", "email", context, care=False)
    assert rendered.subject == "Escalated to you: complaint K-1 (p2)"
    assert rendered.body == ("Wang Fang, complaint K-1 (p2) is escalated to you as supervisor: first response "
                             "overdue. It was due Tue 3 Mar 2026, 01:00 (Europe/London). It was with agent-zhao. "
                             "Nobody on this rung is on duty now.")
    assert "unsubscribe" not in rendered.body
    chinese = Templates("zh-CN").render(message.template, "zh-CN", "email",
                                        alerts.context(message, "zh-CN", "Asia/Shanghai"), care=False)
    assert "首次响应已超时" in chinese.body and "主管" in chinese.body


class Store:
    """The staff alert records as the workflow uses them, in memory."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    async def staff_alert(self, key: str) -> dict[str, Any] | None:
        return dict(self.docs[key]) if key in self.docs else None

    async def claim_staff_alert(self, message: alerts.StaffMessage, at: datetime) -> bool:
        if message.dedupe_key in self.docs:
            return False
        self.docs[message.dedupe_key] = {**alerts.message_doc(message), "status": "sending", "created_at": at}
        return True

    async def claim_deferred_staff_alert(self, key: str) -> bool:
        if self.docs[key]["status"] != "deferred":
            return False
        self.docs[key]["status"] = "sending"
        return True

    async def finish_staff_alert(self, key: str, fields: dict[str, Any]) -> None:
        if self.docs[key]["status"] == "sending":
            self.docs[key].update(fields)


class Channel:
    def __init__(self, name: str) -> None:
        self.name = name
        self.up = True
        self.sent: list[tuple[Recipient, Rendered, str]] = []

    async def send(self, message: Rendered, to: Recipient, idempotency_key: str) -> None:
        if not self.up:
            raise DeliveryError(f"{self.name}_down", retryable=True)
        self.sent.append((to, message, idempotency_key))

    async def close(self) -> None:
        pass


class Published:
    def __init__(self) -> None:
        self.events: list[Any] = []

    async def publish(self, events: Any, **_: Any) -> None:
        self.events.extend(events)


def workflow(clock: FixedClock, **settings: Any) -> tuple[Workflow, Store, Channel, Channel, Published]:
    store, mail, hook, published = Store(), Channel("email"), Channel("webhook"), Published()
    config = NotificationsSettings(channel_backoff_s=0, channel_max_attempts=1, **settings)
    channels = {"email": mail, STAFF_WEBHOOK: hook}
    flow = Workflow(config, store, Templates(config.default_locale), channels, clock, published)  # type: ignore[arg-type]
    return flow, store, mail, hook, published


async def test_an_alert_is_sent_once_at_night_and_a_redelivery_sends_nothing() -> None:
    flow, store, mail, _, published = workflow(FixedClock(NOW))
    message = alerts.message_from(event())
    assert await flow.alert_staff(message) == "sent"
    assert await flow.alert_staff(message) is None
    [(to, rendered, key)] = mail.sent
    assert (to.email, to.staff_id, key) == ("wang.fang@example.com", "sup-wang", "staff_alert:alert-1")
    assert rendered.locale == "en-US"
    assert store.docs[key]["status"] == "sent" and store.docs[key]["channel"] == "email"
    assert published.events == []  # crm.notifications.v1 is about messages to customers


async def test_a_mail_server_that_cannot_be_reached_defers_the_alert_and_the_retry_sends_it() -> None:
    clock = FixedClock(NOW)
    flow, store, mail, _, _ = workflow(clock)
    mail.up = False
    message = alerts.message_from(event())
    assert await flow.alert_staff(message) == "deferred"
    assert store.docs[message.dedupe_key]["due_at"] == NOW + timedelta(seconds=60)
    assert await flow.alert_staff(message) is None  # a redelivery meanwhile leaves it to the retry
    mail.up = True
    clock.advance(timedelta(minutes=1))
    await flow.resume_staff_alerts([store.docs[message.dedupe_key]])
    assert len(mail.sent) == 1 and store.docs[message.dedupe_key]["status"] == "sent"


async def test_when_e_mail_fails_the_allowed_webhook_takes_the_alert() -> None:
    flow, store, mail, hook, _ = workflow(FixedClock(NOW), staff_webhook_prefixes=("https://chat.example.com/",))
    mail.up = False
    message = alerts.message_from(event(webhook="https://chat.example.com/hooks/wang"))
    assert await flow.alert_staff(message) == "sent"
    [(to, _, _)] = hook.sent
    assert to.webhook_url == "https://chat.example.com/hooks/wang" and to.staff_id == "sup-wang"
    assert store.docs[message.dedupe_key]["channel"] == "webhook"


async def test_an_alert_whose_only_webhook_is_not_allowed_fails_without_a_call() -> None:
    flow, store, mail, hook, _ = workflow(FixedClock(NOW))
    message = alerts.message_from(event(email=None, webhook="https://evil.example.net/x"))
    assert await flow.alert_staff(message) == "failed"
    assert store.docs[message.dedupe_key]["reason"] == "webhook_not_allowed"
    assert mail.sent == [] and hook.sent == []
