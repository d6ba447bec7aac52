"""The SMTP server away for a while: messages wait and are delivered once it is back."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from services.notifications.handlers import SUBSCRIBED
from shared.contract.topics import CRM_CUSTOMERS, CRM_NOTIFICATIONS, CRM_TIER_CHANGES
from tests.doubles import SmtpSink
from tests.helpers import envelope
from tests.processes import free_port

from .support import FaultInfra, caught_up, in_thread, produce_events, read_topic, skip_backlog, wait_for

pytestmark = pytest.mark.e2e
CUSTOMERS = 100


def profile(customer: str, at: datetime) -> dict[str, Any]:
    # Version 2: an update, so that no welcome message joins the tier message.
    return envelope("customer.profile.changed", customer, {
        "name": "Ann", "email": f"{customer.lower()}@example.com", "locale": "en-US", "timezone": "Asia/Shanghai",
        "country": "CN", "preferred_channel": "email", "consents": {"care_messages": True, "email": True},
        "version": 2, "created_at": at.isoformat()}, time_=at)


def upgrade(customer: str, at: datetime) -> dict[str, Any]:
    return envelope("customer.tier.changed", customer, {
        "dimension": "value_tier", "previous": "medium", "current": "high", "direction": "upgrade",
        "reason": "net spend 21000.00 CNY in 365 days is at least 20000.00", "policy_version": "v1",
        "effective_at": at.isoformat(), "metrics": {"currency": "CNY", "spend_12m": "21000.00", "orders_12m": 4}},
        time_=at)


async def test_messages_wait_for_an_smtp_server_that_is_down_and_each_customer_gets_one_when_it_is_back(
        faults: FaultInfra, launch: Any, unique: str) -> None:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    customers = [f"S{unique}-{n:03d}" for n in range(CUSTOMERS)]
    group = f"faults-smtp-{unique}"
    smtp_port, nothing_there = free_port(), free_port()
    await skip_backlog(faults.bootstrap, group, SUBSCRIBED)
    notifications = launch(
        "notifications", KAFKA_GROUP_ID=group, MONGODB_DATABASE=f"faults_smtp_{unique}",
        NOTIFICATIONS_SMTP_PORT=str(smtp_port), NOTIFICATIONS_SMS_URL=f"http://127.0.0.1:{nothing_there}/sms",
        NOTIFICATIONS_WEBHOOK_URL="", NOTIFICATIONS_QUIET_START="00:00", NOTIFICATIONS_QUIET_END="00:00",
        NOTIFICATIONS_CHANNEL_BACKOFF_S="0.05", NOTIFICATIONS_CHANNEL_RETRY_INTERVAL_S="2",
        NOTIFICATIONS_SCHEDULER_INTERVAL_S="1")
    await in_thread(notifications.start)
    await produce_events(faults.bootstrap, CRM_CUSTOMERS, [profile(c, at) for c in customers])
    await caught_up(faults.bootstrap, f"{group}.{CRM_CUSTOMERS}", CRM_CUSTOMERS, timeout=120, alive=[notifications])

    # The server is down: every upgrade message finds nobody to take it.
    await produce_events(faults.bootstrap, CRM_TIER_CHANGES, [upgrade(c, at) for c in customers])
    await caught_up(faults.bootstrap, f"{group}.{CRM_TIER_CHANGES}", CRM_TIER_CHANGES, timeout=120,
                    alive=[notifications])
    await asyncio.sleep(3)  # a few rounds of retries against the closed port

    sink = SmtpSink()
    server = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    server.start()
    try:
        async def all_delivered() -> bool:
            return len({m["To"] for m in sink.messages}) == CUSTOMERS

        await wait_for(all_delivered, timeout=90, what="one message to every customer")
        await asyncio.sleep(3)  # time for a second copy to arrive, if one were on its way
    finally:
        server.stop()

    upgrades = Counter(m["To"] for m in sink.messages if m["X-Idempotency-Key"].strip().startswith("tier_upgrade:"))
    assert set(upgrades) == {f"{c.lower()}@example.com" for c in customers}
    assert set(upgrades.values()) == {1}, f"duplicates: {[a for a, n in upgrades.items() if n > 1]}"
    prefix = f"S{unique}-".encode()
    outcomes = [json.loads(r.value) for r in await read_topic(faults.bootstrap, CRM_NOTIFICATIONS,
                                                              lambda r: r.key.startswith(prefix))]
    # Nothing was reported failed while the server was away; one sent event per customer (a
    # redelivery would repeat the same id, never add another).
    assert {e["type"] for e in outcomes} == {"notification.sent"}, Counter(e["type"] for e in outcomes)
    sent: dict[str, set[str]] = {}
    for event in outcomes:
        sent.setdefault(event["subject"], set()).add(event["id"])
    assert sorted(sent) == customers and {len(ids) for ids in sent.values()} == {1}
