"""With thousands of records stored, the notifications service's hot paths read no collection whole.

The store is filled straight through the service's collections, the service starts (its start pass
is the one read of everything it allows itself), and then events go through Kafka, a scheduler pass
resumes deferred messages and runs a time zone's daily messages, and the routine API calls are made.
PostgreSQL's own count of whole-table reads must not move meanwhile (``tests/scans.py``).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.notifications import alerts
from services.notifications.app import build_app
from services.notifications.domain import Profile, SuppressionEntry
from services.notifications.repository import Repository, due_slot
from shared.clock import FixedClock
from shared.contract.topics import CRM_COMPLAINTS, CRM_CUSTOMERS, CRM_TIER_CHANGES
from tests.helpers import envelope, eventually, running
from tests.scans import scanned, settled

from .conftest import SmsProvider, SmtpSink
from .test_service import BASE, READ_KEY, WRITE_KEY, complaint, outcomes, profile, send, settings_for, tier_change

pytestmark = pytest.mark.integration
SHANGHAI, BERLIN, CHATHAM = "Asia/Shanghai", "Europe/Berlin", "Pacific/Chatham"
CUSTOMERS = {SHANGHAI: 3000, BERLIN: 600, CHATHAM: 20}
#: Past messages of another kind than the tier messages the test asks for (those have a repeat window).
FOLLOW_UP = {"family": "follow_up", "trigger": "follow_up", "template": "follow_up", "params": {}}


def _customer(repo: Repository, cid: str, timezone: str, i: int, **kw: Any) -> dict[str, Any]:
    consents = {"care_messages": True, "email": True, "sms": True}
    return repo.profile_document(Profile(cid, name=f"顾客{i}", email=f"{cid.lower()}@example.com", phone=f"+8613{i:09d}",
                               locale="zh-CN", timezone=timezone, country="CN", preferred_channel="email",
                               consents=consents, since=date(2024, 1, 1), **kw), timezone)


def _record(key: str, customer: str, at: datetime, status: str, **kw: Any) -> dict[str, Any]:
    return {"_id": key, "customer_id": customer, "family": "tier", "trigger": "tier_upgrade",
            "template": "tier_upgrade", "source_id": f"seed-{key}", "not_before": None, "transactional": False,
            "params": {"tier": "high", "previous": "medium", "needed": ""}, "created_at": at, "status": status,
            "reason": None, "event_time": at, **kw}


async def _fill(repo: Repository, unique: str) -> dict[str, Any]:
    """A few thousand documents in every collection, the way the service writes them."""
    ids = {tz: [f"S{n}-{unique}-{i:05d}" for i in range(count)] for n, (tz, count) in enumerate(CUSTOMERS.items())}
    local_today = BASE.astimezone(ZoneInfo(CHATHAM)).date()
    customers = [_customer(repo, cid, tz, i) for tz, cids in ids.items() for i, cid in enumerate(cids)]
    birthday = ids[CHATHAM][0]  # the one daily message of the time zone whose run is not done yet
    customers[-len(ids[CHATHAM])] = _customer(repo, birthday, CHATHAM, 0, birthday=local_today.replace(year=1990))
    await repo.customers.insert_many(customers)

    records, results = [], []
    for i, cid in enumerate(ids[SHANGHAI]):
        at = BASE - timedelta(days=i % 10, hours=1)
        records.append(_record(f"seed:{i}:a:{cid}", cid, at, "sending", **FOLLOW_UP))
        results.append({"_id": f"seed:{i}:a:{cid}", "customer_id": cid, "created_at": at, "transactional": False,
                        "status": "failed" if i % 7 == 0 else "sent", "channel": "email", "attempts": 1})
        if i % 3 == 0:
            records.append(_record(f"seed:{i}:b:{cid}", cid, at, "suppressed", reason="no_consent"))
    for i, cid in enumerate(ids[BERLIN]):  # deferred over the coming days, each in its minute
        due = BASE + timedelta(hours=1, minutes=7 * i)
        records.append(_record(f"later:{cid}", cid, BASE, "deferred", reason="quiet_hours_deferred", due_at=due,
                               due_slot=due_slot(due)))
    due_soon = [f"soon:{i}:{cid}" for i, cid in enumerate(ids[SHANGHAI][:3])]
    for i, key in enumerate(due_soon):
        due = BASE + timedelta(minutes=10 + i)
        records.append(_record(key, ids[SHANGHAI][i], BASE - timedelta(hours=1), "deferred", reason="scheduled",
                               due_at=due, due_slot=due_slot(due)))
    await repo.notifications.insert_many(records)
    await repo.outcomes.insert_many(results)

    suppressions = [{"_id": repo.suppression_list.entry_id(SuppressionEntry("email", f"other{i}-{unique}@example.com")),
                     "kind": "email", "value": f"other{i}@x", "channel": None, "all_messages": False,
                     "reason": "bounced", "created_at": BASE, "customer_id": None} for i in range(1000)]
    suppressions += [{"_id": f"customer:{cid}", "kind": "customer", "value": cid, "channel": None,
                      "all_messages": False, "reason": "requested", "created_at": BASE, "customer_id": cid}
                     for cid in ids[SHANGHAI][-300:]]
    await repo.suppression_list.suppressions.insert_many(suppressions)

    # Staff alerts told long ago, and a few waiting days ahead for a mail server to come back.
    staff_alerts = []
    for i, cid in enumerate(ids[SHANGHAI]):
        message = alerts.StaffMessage(f"staff_alert:seed-{i}", f"seed-{i}", cid, f"CP-seed-{i}", "sup-1", "Wang Fang",
                                      "escalated", "wang.fang@example.com", None, "zh-CN", "Asia/Shanghai",
                                      {"complaint_id": f"CP-seed-{i}", "priority": "p2", "rung": "supervisor"})
        due = BASE + timedelta(days=3, minutes=i)
        state = {"status": "deferred", "due_at": due, "due_slot": due_slot(due)} if i % 10 == 0 else {"status": "sent"}
        staff_alerts.append(repo.cipher.seal_fields({**alerts.message_doc(message), "created_at": BASE, **state},
                                                    alerts.SEALED, collection="staff_alerts"))
    await repo.staff_alerts.insert_many(staff_alerts)
    return {"ids": ids, "due_soon": due_soon, "birthday": birthday}


async def test_events_a_scheduler_pass_and_the_api_read_no_collection_whole(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    sink, port = smtp_sink
    # The pass at BASE + 75 min is past the send hour in Chatham only (18:00 or 19:00 there).
    settings = await settings_for(unique, port, sms_provider, daily_send_hour=18)
    clock = FixedClock(BASE)
    app = build_app(settings, clock=clock)
    repo: Repository = app.state.repo
    seeded = await _fill(repo, unique)
    shanghai = seeded["ids"][SHANGHAI]
    capped, known, erased = shanghai[20], shanghai[11], shanghai[12]
    await repo.notifications.insert_many([  # two care messages this week: the cap is reached
        _record(f"cap:{n}:{capped}", capped, BASE - timedelta(days=n + 1), "deferred", due_at=BASE + timedelta(days=9),
                due_slot=due_slot(BASE + timedelta(days=9)), **FOLLOW_UP) for n in range(2)])
    newcomer, early, complainer = f"N-{unique}", f"E-{unique}", shanghai[30]
    async with running(app) as client:
        await eventually(lambda: _set(app.state.scheduler.primed))
        before = await settled(settings.database_name)

        # Events through Kafka: a registration, a profile update, an erasure, tier changes (one
        # capped, one for a customer not known yet) and a complaint's life.
        await send(infra, CRM_CUSTOMERS, profile(newcomer, email=f"n-{unique}@example.com"),
                   profile(known, email=f"{known.lower()}@example.com", version=3, locale="en-US"),
                   envelope("customer.erased", erased, {"erased_at": BASE.isoformat()}, time_=BASE))
        await eventually(lambda: _not(repo.profile(erased)))
        await eventually(lambda: _locale(repo, known, "en-US"))
        await send(infra, CRM_TIER_CHANGES, tier_change(capped, "value_tier", "medium", "high", "upgrade"),
                   tier_change(known, "vip", "regular", "vip", "upgrade"),
                   tier_change(early, "value_tier", "low", "medium", "upgrade"))
        opened = complaint(complainer, "opened", f"CP-{unique}",
                           first_response_due_at=(BASE + timedelta(hours=8)).isoformat())
        await send(infra, CRM_COMPLAINTS, opened,
                   complaint(complainer, "resolved", f"CP-{unique}", status="resolved"),
                   complaint(complainer, "reopened", f"CP-{unique}", status="investigating"))
        [welcome] = await _outcomes(infra, newcomer, 1)
        [cap] = await _outcomes(infra, capped, 1)
        [vip] = await _outcomes(infra, known, 1)
        assert len(await _outcomes(infra, complainer, 2)) == 2
        await eventually(lambda: _history(client, early))
        await eventually(lambda: _not(repo.by_keys([f"complaint_survey:CP-{unique}:{complainer}"])))
        # A staff alert, delivered twice: mailed once.
        alert = complaint(complainer, "staff_alert", f"CP-{unique}", alert={
            "kind": "escalated", "staff_id": "sup-1", "staff_name": "Wang Fang", "role": "supervisor",
            "rung": "supervisor", "on_duty": True, "email": f"staff-{unique}@example.com"})
        await send(infra, CRM_COMPLAINTS, alert, alert)
        await eventually(lambda: _sent_alert(repo, f"staff_alert:{alert['id']}"))

        # A scheduler pass 75 minutes on: deferred messages are due, and one time zone's daily run.
        clock.set(BASE + timedelta(minutes=75))
        await app.state.scheduler.tick()

        # The routine API calls.
        history = await _history(client, shanghai[0])
        added = await client.post("/suppressions", headers={"X-API-Key": WRITE_KEY},
                                  json={"kind": "phone", "value": "+8613900000001", "reason": "complained"})
        removed = await client.delete(f"/suppressions/{added.json()['id']}", headers={"X-API-Key": WRITE_KEY})
        link = app.state.workflow.unsubscribe_url(shanghai[40])
        unsubscribed = await client.post(f"/unsubscribe?{link.split('?', 1)[1]}")
        preview = await client.post("/preview", headers={"X-API-Key": READ_KEY}, json={"template": "birthday"})

        assert scanned(before, await settled(settings.database_name)) == {}

        resumed = await repo.by_keys(seeded["due_soon"])
        birthday = await repo.history(seeded["birthday"], 5)
    assert welcome["type"] == "notification.sent"
    assert (cap["type"], cap["data"]["reason"]) == ("notification.suppressed", "frequency_cap")
    assert vip["type"] == "notification.sent" and vip["data"]["locale"] == "en-US"
    assert sorted(d["status"] for d in resumed.values()) == ["sent"] * 3
    assert "birthday" in [h["template"] for h in birthday]
    assert len(history) == 3 and added.status_code == 201 and removed.status_code == 204
    assert unsubscribed.status_code == 204 and preview.status_code == 200
    assert len(sink.to(f"n-{unique}@example.com")) == 1
    assert len(sink.to(f"staff-{unique}@example.com")) == 1



async def _outcomes(infra: dict[str, str], customer: str, at_least: int) -> list[dict[str, Any]]:
    """The customer's outcome events, each once (a redelivered trigger republishes its event)."""
    return list({e["id"]: e for e in await outcomes(infra, customer, at_least)}.values())


async def _sent_alert(repo: Repository, key: str) -> bool:
    found = await repo.staff_alert(key)
    return found is not None and found["status"] == "sent"


async def _set(event: Any) -> bool:
    return bool(event.is_set())


async def _locale(repo: Repository, customer: str, locale: str) -> bool:
    found = await repo.profile(customer)
    return found is not None and found.locale == locale


async def _not(awaitable: Any) -> bool:
    return not await awaitable


async def _history(client: Any, customer: str) -> list[dict[str, Any]]:
    response = await client.get(f"/customers/{customer}/notifications", headers={"X-API-Key": READ_KEY})
    assert response.status_code == 200
    return response.json()["notifications"]
