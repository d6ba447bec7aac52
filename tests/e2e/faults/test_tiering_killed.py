"""kill -9 of the tiering service in the middle of a replay: the state it ends with, the changes it
publishes, and the e-mails customers get because of them."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notifications.handlers import SUBSCRIBED as NOTIFICATIONS_SUBSCRIBED
from services.tiering.handlers import SUBSCRIBED
from shared.contract.topics import CRM_CUSTOMERS, CRM_TIER_CHANGES, ORDERS_PURCHASES
from tests.doubles import smtp_server
from tests.helpers import envelope

from .support import (
    FaultInfra,
    caught_up,
    classifications,
    counter,
    differences,
    in_thread,
    produce_events,
    read_topic,
    replay,
    skip_backlog,
    stored_classifications,
    wait_for,
)

pytestmark = pytest.mark.e2e


def arrival_ids(records: list[Any]) -> dict[tuple[str, ...], set[str]]:
    """The ids published per arrival at a value: customer and dimension, value and way (up, down).
    In these replays every class only moves up, so a customer arrives at each value once: one id
    each, whichever batches noticed it and when."""
    ids: dict[tuple[str, str], set[str]] = {}
    for record in records:
        event = json.loads(record.value)
        d = event["data"]
        way = "down" if d["direction"] == "downgrade" else "up"  # an initial classification arrives from below
        ids.setdefault((event["subject"], d["dimension"], d["current"], way), set()).add(event["id"])
    return ids


async def test_tiering_killed_mid_replay_ends_as_a_clean_run_and_publishes_each_change_under_one_id(
        faults: FaultInfra, launch: Any, unique: str) -> None:
    plan = replay(f"K{unique}", customers=3_000, purchases=50_000)
    group, database = f"faults-kill-{unique}", f"faults_kill_{unique}"
    await skip_backlog(faults.bootstrap, group, SUBSCRIBED)
    await produce_events(faults.bootstrap, ORDERS_PURCHASES, plan.events)
    tiering = launch("tiering", KAFKA_GROUP_ID=group, MONGODB_DATABASE=database, TIERING_REFRESH_INTERVAL_S="0")
    await in_thread(tiering.start)

    async def well_under_way() -> bool:
        return await counter(tiering.url, "carecrm_tiering_events_total", kind="purchase") >= 20_000

    await wait_for(well_under_way, timeout=150, what="20,000 purchases applied")
    tiering.kill()  # kill -9: no shutdown hook, nothing flushed or committed
    await in_thread(tiering.start)
    await caught_up(faults.bootstrap, f"{group}.{ORDERS_PURCHASES}", timeout=180, alive=[tiering])

    held = await stored_classifications(faults.mongodb_url, database)
    problems = differences(plan, held)
    assert not problems, f"{len(problems)} customers differ from a clean run, e.g. {problems[:5]}"
    # The API answers from the same revisions (a sample: each read scans the collection).
    sample = random.Random(unique).sample(plan.customers, 20)
    assert not differences(plan.only(sample), await classifications(tiering.url, sample))

    prefix = f"K{unique}-".encode()
    records = await read_topic(faults.bootstrap, CRM_TIER_CHANGES, lambda r: r.key.startswith(prefix))
    assert len({r.key for r in records}) == len(plan.customers)  # every customer was classified
    twice = {change: ids for change, ids in arrival_ids(records).items() if len(ids) > 1}
    assert not twice, f"{len(twice)} changes published under more than one id, e.g. {list(twice.items())[:3]}"


def profile(customer: str, at: datetime) -> dict[str, Any]:
    # Version 2: an update, so that no welcome message joins the tier messages.
    return envelope("customer.profile.changed", customer, {
        "name": "Ann", "email": f"{customer.lower()}@example.com", "locale": "en-US", "timezone": "Asia/Shanghai",
        "country": "CN", "preferred_channel": "email", "consents": {"care_messages": True, "email": True},
        "version": 2, "created_at": at.isoformat()}, time_=at)


async def test_tiering_killed_before_it_wrote_what_it_published_sends_nobody_the_same_email_twice(
        faults: FaultInfra, launch: Any, unique: str) -> None:
    plan = replay(f"M{unique}", customers=400, purchases=8_000, spread=None)
    # Groups of each service's own, as deployed: both services read the purchases, each all of them.
    group, mail_group = f"faults-mail-{unique}", f"faults-mail-n-{unique}"
    await skip_backlog(faults.bootstrap, group, SUBSCRIBED)
    await skip_backlog(faults.bootstrap, mail_group, NOTIFICATIONS_SUBSCRIBED)
    with smtp_server() as (sink, smtp_port):
        notifications = launch(
            "notifications", KAFKA_GROUP_ID=mail_group, MONGODB_DATABASE=f"faults_mail_n_{unique}",
            NOTIFICATIONS_SMTP_PORT=str(smtp_port), NOTIFICATIONS_SMS_URL="", NOTIFICATIONS_WEBHOOK_URL="",
            NOTIFICATIONS_QUIET_START="00:00", NOTIFICATIONS_QUIET_END="00:00",
            # No cap: a second copy must not hide behind it.
            NOTIFICATIONS_FREQUENCY_CAP="1000")
        await in_thread(notifications.start)
        since = datetime.now(UTC) - timedelta(days=30)
        await produce_events(faults.bootstrap, CRM_CUSTOMERS, [profile(c, since) for c in plan.customers])
        await caught_up(faults.bootstrap, f"{mail_group}.{CRM_CUSTOMERS}", CRM_CUSTOMERS, timeout=120,
                        alive=[notifications])

        # Every customer known and classified, and that stored, before the kill window opens.
        env = {"KAFKA_GROUP_ID": group, "MONGODB_DATABASE": f"faults_mail_t_{unique}",
               "TIERING_REFRESH_INTERVAL_S": "0"}
        settled = launch("tiering", "tiering-1", **env)
        await in_thread(settled.start)
        await produce_events(faults.bootstrap, ORDERS_PURCHASES, plan.events[:1_000])
        await caught_up(faults.bootstrap, f"{group}.{ORDERS_PURCHASES}", timeout=120, alive=[settled])
        settled.stop()  # leaves the group: the next one starts at once with every partition

        # Then nothing written for a long while: the kill finds the changes of thousands of
        # purchases published and none of their state stored, so the restart decides all of them
        # again, in other batches and at other moments.
        await produce_events(faults.bootstrap, ORDERS_PURCHASES, plan.events[1_000:])
        first = launch("tiering", "tiering-2", **env, TIERING_FLUSH_INTERVAL_S="60", TIERING_BATCH_MAX_RECORDS="300")
        await in_thread(first.start)

        async def half_applied() -> bool:
            return await counter(first.url, "carecrm_tiering_events_total", kind="purchase") >= 4_000

        await wait_for(half_applied, timeout=120, what="4,000 purchases applied")
        first.kill()
        again = launch("tiering", "tiering-3", **env)
        await in_thread(again.start)
        await caught_up(faults.bootstrap, f"{group}.{ORDERS_PURCHASES}", timeout=180, alive=[again])
        await caught_up(faults.bootstrap, f"{mail_group}.{CRM_TIER_CHANGES}", CRM_TIER_CHANGES, timeout=180,
                        alive=[notifications])
        await asyncio.sleep(3)  # what the last batch sent reaches the sink

    mails = Counter((m["To"], m["Subject"], m.get_body(preferencelist=("plain",)).get_content())
                    for m in sink.messages)
    upgraded = {to for to, subject, _ in mails if "Gold" in subject or "金卡" in subject}  # the high tier's name
    assert len(upgraded) > len(plan.customers) / 2, "most customers reach high: the replay did its work"
    twice = [key[:2] for key, n in mails.items() if n > 1]
    assert not twice, f"{len(twice)} e-mails received twice of {sum(mails.values())}, e.g. {twice[:3]}"
