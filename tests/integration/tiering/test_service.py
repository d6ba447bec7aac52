"""The tiering service on the real broker and store."""

from __future__ import annotations

import asyncio

from datetime import datetime, timedelta
from typing import Any

import pytest

from services.tiering.app import build_app
from shared.clock import FixedClock
from shared.contract.topics import (
    CRM_COMPLAINTS,
    CRM_CUSTOMER_TIERS,
    CRM_CUSTOMERS,
    CRM_INTERACTIONS,
    ORDERS_PURCHASES,
    dlq,
)
from tests.helpers import envelope, eventually, running

from .support import (
    BASE,
    POLICY_KEY,
    READ_KEY,
    WRITE_KEY,
    Watch,
    profile,
    purchase,
    refund,
    send,
    settings_for,
)

pytestmark = pytest.mark.integration


async def classification(client: Any, customer: str) -> dict[str, Any] | None:
    response = await client.get(f"/customers/{customer}/classification", headers={"X-API-Key": READ_KEY})
    return response.json() if response.status_code == 200 else None


async def classified(client: Any, customer: str, **expected: Any) -> dict[str, Any] | None:
    doc = await classification(client, customer)
    if doc and all(doc.get(k) == v for k, v in expected.items()):
        return doc
    return None


async def pending_downgrade(client: Any, customer: str, dimension: str) -> dict[str, Any] | None:
    doc = await classification(client, customer)
    return doc if doc and dimension in doc["downgrade_pending"] else None


async def test_a_prospect_buys_is_upgraded_refunds_and_is_downgraded_only_after_the_grace_period(
        infra: dict[str, str], unique: str) -> None:
    customer = f"C-{unique}"
    clock = FixedClock(BASE + timedelta(hours=1))
    app = build_app(await settings_for(unique), clock=clock)
    async with Watch(infra["KAFKA_BOOTSTRAP_SERVERS"]) as watch, running(app) as client:
        await send(infra, CRM_CUSTOMERS, profile(customer, BASE))
        await eventually(lambda: classified(client, customer, lifecycle="prospect"))
        await send(infra, ORDERS_PURCHASES, purchase(customer, f"O1-{unique}", "6000.00", BASE + timedelta(minutes=5)))
        await eventually(lambda: classified(client, customer, value_tier="medium", lifecycle="new"))
        big = purchase(customer, f"O2-{unique}", "15000.00", BASE + timedelta(minutes=10))
        await send(infra, ORDERS_PURCHASES, big, {**big, "id": "another-delivery"})
        upgraded = await eventually(lambda: classified(client, customer, value_tier="high"))
        assert upgraded["metrics"]["spend_12m"] == 21000_00 and upgraded["metrics"]["lifetime_orders"] == 2
        clock.advance(timedelta(days=1))
        await send(infra, ORDERS_PURCHASES, refund(customer, f"R1-{unique}", "14000.00", BASE + timedelta(days=1),
                                                   order_id=f"O2-{unique}"))
        held = await eventually(lambda: pending_downgrade(client, customer, "value_tier"))
        assert held["value_tier"] == "high"
        pending = held["downgrade_pending"]["value_tier"]
        assert pending["pending"] == "medium" and "20000.00 CNY" in pending["needed"]
        clock.advance(timedelta(days=31))  # past the grace: the scheduler downgrades with no new event
        await eventually(lambda: classified(client, customer, value_tier="medium"))
        history = (await client.get(f"/customers/{customer}/tier-history", headers={"X-API-Key": READ_KEY})).json()
        events = await watch.events(customer, at_least=len(history["changes"]))
    value = [(c["previous"], c["current"], c["direction"])
             for c in history["changes"] if c["dimension"] == "value_tier"]
    assert value == [(None, "medium", "initial"), ("medium", "high", "upgrade"), ("high", "medium", "downgrade")]
    lifecycle = [(c["previous"], c["current"]) for c in history["changes"] if c["dimension"] == "lifecycle"]
    assert lifecycle[:3] == [(None, "prospect"), ("prospect", "new"), ("new", "repeat")]
    published = [e for e in events if e["data"]["dimension"] == "value_tier"]
    assert [e["data"]["direction"] for e in published] == ["initial", "upgrade", "downgrade"]
    assert datetime.fromisoformat(published[2]["data"]["effective_at"]) == datetime.fromisoformat(
        pending["effective_at"])
    assert published[1]["data"]["metrics"]["spend_12m"] == "21000.00"
    assert len({e["id"] for e in events}) == len(events)



async def test_the_snapshot_moves_with_the_classification_and_holds_the_metrics_of_that_moment(
        infra: dict[str, str], unique: str) -> None:
    # The contract's promise: a snapshot is published when a dimension, a pending downgrade or an
    # override changes, so its dimensions are always current; its metrics are those of its
    # updated_at. A purchase that moves nothing publishes no snapshot (the API has the figures).
    customer = f"C-{unique}"
    dims = ("value_tier", "abc_class", "vip", "loyalty", "lifecycle", "rfm_segment", "potential")
    clock = FixedClock(BASE + timedelta(hours=1))
    app = build_app(await settings_for(unique), clock=clock)
    async with Watch(infra["KAFKA_BOOTSTRAP_SERVERS"], CRM_CUSTOMER_TIERS) as watch, running(app) as client:
        await send(infra, ORDERS_PURCHASES, purchase(customer, f"O1-{unique}", "6000.00", BASE + timedelta(minutes=5)),
                   purchase(customer, f"O2-{unique}", "300.00", BASE + timedelta(minutes=10)))
        before = await eventually(lambda: classified(client, customer, lifecycle="repeat"))
        snapshots = await watch.events(customer, at_least=1)
        await send(infra, ORDERS_PURCHASES, purchase(customer, f"O3-{unique}", "1.00", BASE + timedelta(minutes=15)))
        after = await eventually(lambda: _orders_are(client, customer, 3))
        again = await watch.events(customer, at_least=len(snapshots) + 1, timeout=5)
    assert {d: after[d] for d in dims} == {d: before[d] for d in dims}, "the small purchase moved nothing"
    assert len(again) == len(snapshots), "no snapshot for a purchase that moved nothing"
    last = again[-1]["data"]
    assert {d: last.get(d) for d in dims} == {d: after[d] for d in dims}
    assert last["metrics"]["orders_12m"] == 2 and after["metrics"]["orders_12m"] == 3


async def _orders_are(client: Any, customer: str, orders: int) -> dict[str, Any] | None:
    doc = await classification(client, customer)
    return doc if doc and doc["metrics"]["orders_12m"] == orders else None


async def test_the_scheduler_marks_a_silent_customer_as_churn_risk_with_no_new_event(
        infra: dict[str, str], unique: str) -> None:
    customer = f"C-{unique}"
    clock = FixedClock(BASE + timedelta(days=1))
    app = build_app(await settings_for(unique), clock=clock)
    async with Watch(infra["KAFKA_BOOTSTRAP_SERVERS"]) as watch, running(app) as client:
        await send(infra, ORDERS_PURCHASES,
                   *(purchase(customer, f"O{i}-{unique}", "300.00", BASE + timedelta(hours=i)) for i in range(2)))
        first = await eventually(lambda: classified(client, customer, loyalty="general"))
        assert first["next_evaluation_at"] is not None
        clock.advance(timedelta(days=62))  # past the 60-day floor of the churn-risk rule
        await eventually(lambda: classified(client, customer, loyalty="churn_risk", lifecycle="at_risk"))
        events = await watch.events(customer, at_least=5)
    churn = [e["data"] for e in events if e["data"]["dimension"] == "loyalty"]
    assert [(c.get("previous"), c["current"], c["direction"]) for c in churn][-1] == ("general", "churn_risk", "downgrade")
    assert "days since the last purchase" in churn[-1]["reason"]


async def test_overrides_floor_and_lock_are_audited_and_published_as_overrides(
        infra: dict[str, str], unique: str) -> None:
    customer = f"C-{unique}"
    app = build_app(await settings_for(unique), clock=FixedClock(BASE + timedelta(days=1)))
    url = f"/customers/{customer}/overrides/value_tier"
    async with Watch(infra["KAFKA_BOOTSTRAP_SERVERS"]) as watch, running(app) as client:
        unknown = await client.put(url, headers={"X-API-Key": WRITE_KEY}, json={"value": "high", "reason": "x"})
        assert unknown.status_code == 404
        await send(infra, ORDERS_PURCHASES, purchase(customer, f"O-{unique}", "100.00", BASE))
        await eventually(lambda: classified(client, customer, value_tier="low"))
        assert (await client.put(url, json={"value": "high", "reason": "x"})).status_code == 401
        assert (await client.put(url, headers={"X-API-Key": READ_KEY},
                                 json={"value": "high", "reason": "x"})).status_code == 403
        bad = await client.put(url, headers={"X-API-Key": WRITE_KEY}, json={"value": "platinum", "reason": "x"})
        assert bad.status_code == 422 and "value" in bad.text
        no_reason = await client.put(url, headers={"X-API-Key": WRITE_KEY}, json={"value": "high"})
        assert no_reason.status_code == 422 and "reason" in no_reason.text
        floor = await client.put(url, headers={"X-API-Key": WRITE_KEY},
                                 json={"value": "medium", "mode": "floor", "reason": "key account"})
        assert floor.status_code == 200 and floor.json()["value_tier"] == "medium"
        await send(infra, ORDERS_PURCHASES, purchase(customer, f"O2-{unique}", "30000.00", BASE + timedelta(hours=1)))
        await eventually(lambda: classified(client, customer, value_tier="high"))  # a floor never holds one down
        lock = await client.put(url, headers={"X-API-Key": WRITE_KEY},
                                json={"value": "low", "mode": "lock", "reason": "fraud review"})
        assert lock.json()["value_tier"] == "low" and lock.json()["overrides"]["value_tier"]["mode"] == "lock"
        removed = await client.delete(url, headers={"X-API-Key": WRITE_KEY}, params={"reason": "review done"})
        assert removed.json()["value_tier"] == "high" and removed.json()["overrides"] == {}
        history = (await client.get(f"/customers/{customer}/tier-history", headers={"X-API-Key": READ_KEY})).json()
        events = await watch.events(customer, at_least=len(history["changes"]))
    tiers = [(e["data"]["current"], e["data"]["override"]) for e in events if e["data"]["dimension"] == "value_tier"]
    assert tiers == [("low", False), ("medium", True), ("high", False), ("low", True), ("high", False)]
    audit = [(a["action"], a.get("mode"), a["actor"], a["reason"]) for a in history["overrides"]]
    assert audit == [("set", "floor", "care-lead", "key account"), ("set", "lock", "care-lead", "fraud review"),
                     ("removed", None, "care-lead", "review done")]


async def test_a_new_policy_is_diffed_in_a_dry_run_then_applied_in_bulk(infra: dict[str, str], unique: str) -> None:
    customer = f"C-{unique}"
    app = build_app(await settings_for(unique), clock=FixedClock(BASE + timedelta(days=1)))
    async with Watch(infra["KAFKA_BOOTSTRAP_SERVERS"]) as watch, running(app) as client:
        await send(infra, ORDERS_PURCHASES, purchase(customer, f"O-{unique}", "6000.00", BASE))
        await eventually(lambda: classified(client, customer, value_tier="medium"))
        current = (await client.get("/policy", headers={"X-API-Key": READ_KEY})).json()
        assert current["version"] == "2026-12-default"
        stricter = {**current, "version": f"strict-{unique}", "value_tier": {"high": "50000", "medium": "8000"}}
        assert (await client.post("/policy", headers={"X-API-Key": WRITE_KEY}, json=stricter)).status_code == 403
        broken = {**stricter, "value_tier": {"high": "1", "medium": "8000"}}
        refused = await client.post("/policy", headers={"X-API-Key": POLICY_KEY}, json=broken)
        assert refused.status_code == 422 and "value_tier" in refused.text
        stored = await client.post("/policy", headers={"X-API-Key": POLICY_KEY}, json=stricter)
        assert stored.status_code == 201
        again = await client.post("/policy", headers={"X-API-Key": POLICY_KEY}, json=stricter)
        assert again.status_code == 409
        dry = await client.post("/reclassify", headers={"X-API-Key": POLICY_KEY},
                                params={"dry_run": "true", "policy_version": f"strict-{unique}"})
        assert dry.status_code == 200 and dry.json()["transitions"]["value_tier"] == {"medium->low": 1}
        assert dry.json()["sample"]["value_tier"] == {"medium->low": [customer]}  # who would move
        assert (await classification(client, customer))["value_tier"] == "medium"  # a dry run changes nothing
        applied = await client.post("/reclassify", headers={"X-API-Key": POLICY_KEY},
                                    params={"dry_run": "false", "policy_version": f"strict-{unique}"})
        assert applied.status_code == 200 and applied.json()["dry_run"] is False
        after = await classification(client, customer)
        events = await watch.events(customer, at_least=5)
    assert after["policy_version"] == f"strict-{unique}"
    # A new policy is a decision, not a dip in spend: it applies at once, without the grace period.
    assert after["value_tier"] == "low" and after["downgrade_pending"] == {}
    moved = [e["data"] for e in events if e["data"]["dimension"] == "value_tier"]
    assert [(m["current"], m["bulk"], m["policy_version"]) for m in moved] == [
        ("medium", False, "2026-12-default"), ("low", True, f"strict-{unique}")]


async def test_bad_purchases_go_to_the_dlq_with_the_rule_that_refused_them(infra: dict[str, str], unique: str) -> None:
    customer = f"C-{unique}"
    app = build_app(await settings_for(unique), clock=FixedClock(BASE + timedelta(days=1)))
    async with Watch(infra["KAFKA_BOOTSTRAP_SERVERS"], dlq(ORDERS_PURCHASES)) as dead, running(app) as client:
        await send(infra, ORDERS_PURCHASES,
                   purchase(customer, f"O1-{unique}", "100.00", BASE, currency="ZAR"),
                   purchase(customer, f"O2-{unique}", "100.00", BASE),
                   refund(customer, f"R1-{unique}", "150.00", BASE + timedelta(hours=1), order_id=f"O2-{unique}"),
                   envelope("order.purchase.completed", customer, {"order_id": f"O3-{unique}", "total_amount": "-5",
                                                                  "currency": "CNY"}, time_=BASE),
                   refund(customer, f"R2-{unique}", "40.00", BASE + timedelta(hours=2), order_id=f"O2-{unique}"))
        done = await eventually(lambda: classified(client, customer, value_tier="low"))
        await eventually(lambda: _spend_is(client, customer, 60_00))
        records = await dead.records(customer, at_least=3)
    assert done["metrics"]["lifetime_orders"] == 1
    errors = sorted(dict(r.headers)["x-error"].decode() for r in records)
    assert errors == ["invalid_data", "refund_exceeds_order", "unknown_currency"]
    detail = next(dict(r.headers)["x-error-detail"].decode() for r in records
                  if dict(r.headers)["x-error"] == b"unknown_currency")
    assert "ZAR" in detail


async def _spend_is(client: Any, customer: str, minor: int) -> bool:
    doc = await classification(client, customer)
    return bool(doc and doc["metrics"]["spend_12m"] == minor)


async def test_a_population_refresh_sets_abc_and_vip_and_announces_the_changes_in_bulk(
        infra: dict[str, str], unique: str) -> None:
    customers = [f"C{i}-{unique}" for i in range(10)]
    app = build_app(await settings_for(unique), clock=FixedClock(BASE + timedelta(days=1)))
    async with Watch(infra["KAFKA_BOOTSTRAP_SERVERS"]) as watch, running(app) as client:
        amounts = ["90000.00"] + ["300.00"] * 9  # too little for high potential, which would lift the class
        await send(infra, ORDERS_PURCHASES, *(purchase(c, f"O-{c}", a, BASE) for c, a in zip(customers, amounts)))
        for c in customers:
            await eventually(lambda c=c: classified(client, c, lifecycle="new"))
        # No population yet: every dimension at once, the population classes unranked.
        first = [await classification(client, c) for c in customers]
        assert (await client.post("/population/refresh", headers={"X-API-Key": READ_KEY})).status_code == 403
        refreshed = await client.post("/population/refresh", headers={"X-API-Key": POLICY_KEY})
        assert refreshed.status_code == 200
        body = refreshed.json()
        top = await classification(client, customers[0])
        rest = await classification(client, customers[1])
        report = (await client.get("/reports/segments", headers={"X-API-Key": READ_KEY})).json()
        # Kept as the revisions move: asking for it reads nothing from the store.
        scans, scan = [], app.state.workflow.repo.scan
        app.state.workflow.repo.scan = lambda *a, **kw: scans.append(1) or scan(*a, **kw)
        together = await asyncio.gather(*(client.get("/reports/segments", headers={"X-API-Key": READ_KEY})
                                          for _ in range(3)))
        app.state.workflow.repo.scan = scan
        assert not scans and [r.json() for r in together] == [report] * 3
        periods = (await client.get("/reports/periods", headers={"X-API-Key": READ_KEY})).json()
        bad_period = await client.get("/reports/periods?months=2", headers={"X-API-Key": READ_KEY})
        again = (await client.post("/population/refresh", headers={"X-API-Key": POLICY_KEY})).json()
        events = await watch.events(customers[1], at_least=8)
        last = (await client.get("/reports/segments", headers={"X-API-Key": READ_KEY})).json()
    # A new process builds the same report from what is stored.
    async with running(build_app(await settings_for(unique), clock=FixedClock(BASE + timedelta(days=1)))) as client:
        reloaded = (await client.get("/reports/segments", headers={"X-API-Key": READ_KEY})).json()
    assert {**reloaded, "cutoffs_version": None} == {**last, "cutoffs_version": None}
    assert last["customers"] == 10 and last["distribution"]["abc_class"] == {"A": 1, "C": 9}
    assert all(doc is not None and {"abc_class", "vip", "rfm_segment"} <= set(doc) for doc in first)
    assert {(d["abc_class"], d["vip"]) for d in first} == {("B", "regular")}  # type: ignore[index]
    assert body["population"] == 10 and body["vip_count"] == 1 and body["changed_customers"] == 10
    assert (top["abc_class"], top["vip"]) == ("A", "vip")
    # Provisional classes give way to the first real cut-offs at once, with no grace period.
    assert (rest["abc_class"], rest["vip"]) == ("C", "regular") and not rest.get("downgrade_pending")
    assert top["metrics"]["spend_12m"] == 90000_00
    assert again["changed_customers"] == 0 and again["cutoffs_version"] == body["cutoffs_version"] + 1
    abc = [e["data"] for e in events if e["data"]["dimension"] == "abc_class"]
    assert [(e["previous"], e["current"], e["bulk"]) for e in abc] == [(None, "B", False), ("B", "C", True)]
    assert {e["data"]["dimension"]: e["data"]["bulk"] for e in events}["value_tier"] is False
    pareto = {row["abc_class"]: row for row in report["pareto"]}
    assert pareto["A"]["customers"] == 1 and pareto["A"]["spend_share"] == round(90000 / 92700, 4)
    assert report["distribution"]["vip"] == {"vip": 1, "regular": 9}
    assert report["churn_risk"]["customers"] == 0  # every one of them bought yesterday
    by_period = {p["period"]: (p["buyers"], p["repeat_purchase_rate"]) for p in periods["periods"]}
    assert by_period.pop(BASE.strftime("%Y-%m")) == (10, 0.0)
    assert all(buyers == 0 for buyers, _ in by_period.values())  # the next month, when BASE ends one
    assert bad_period.status_code == 422


async def test_the_cut_offs_are_measured_at_start_and_again_once_the_population_moved(
        infra: dict[str, str], unique: str) -> None:
    settings = await settings_for(unique, refresh_interval_s=3600, refresh_min_interval_s=0.2)
    customers = [f"C{i}-{unique}" for i in range(4)]

    async def cutoffs(client: Any) -> Any:
        return (await client.get("/reports/segments", headers={"X-API-Key": READ_KEY})).json()["cutoffs_version"]

    app = build_app(settings, clock=FixedClock(BASE + timedelta(days=1)))
    async with running(app) as client:
        await eventually(lambda: _is(cutoffs(client), 1))  # at start, of the (empty) population
        await send(infra, ORDERS_PURCHASES, purchase(customers[0], f"O-{unique}-0", "90000.00", BASE))
        await eventually(lambda: _is(cutoffs(client), 2))  # a customer joined an empty population
        await asyncio.sleep(1)
        assert await cutoffs(client) == 2  # nothing moved since: no refresh before the hour
        await send(infra, ORDERS_PURCHASES, *(purchase(c, f"O-{c}", "300.00", BASE) for c in customers[1:]))
        await eventually(lambda: _is(cutoffs(client), 3))
        rest = await classification(client, customers[1])
    assert (rest["abc_class"], rest["vip"]) == ("C", "regular")


async def _is(value: Any, expected: Any) -> bool:
    return await value == expected


async def test_an_erased_customer_is_forgotten_and_its_snapshot_tombstoned(infra: dict[str, str], unique: str) -> None:
    customer = f"C-{unique}"
    app = build_app(await settings_for(unique), clock=FixedClock(BASE + timedelta(days=1)))
    async with Watch(infra["KAFKA_BOOTSTRAP_SERVERS"], CRM_CUSTOMER_TIERS) as snapshots, running(app) as client:
        await send(infra, ORDERS_PURCHASES, purchase(customer, f"O-{unique}", "100.00", BASE))
        await eventually(lambda: classified(client, customer, value_tier="low"))
        await send(infra, CRM_CUSTOMERS, envelope("customer.erased", customer,
                                                  {"erased_at": BASE.isoformat()}, time_=BASE + timedelta(hours=1)))
        await eventually(lambda: _gone(client, customer))
        history = (await client.get(f"/customers/{customer}/tier-history", headers={"X-API-Key": READ_KEY})).json()
        records = await snapshots.records(customer, at_least=2)
    assert history["changes"] == []
    assert records[0].value is not None and records[-1].value is None


async def _gone(client: Any, customer: str) -> bool:
    return await classification(client, customer) is None


async def test_complaints_referrals_and_surveys_feed_the_metrics_and_bad_ones_are_dead_lettered(
        infra: dict[str, str], unique: str) -> None:
    customer = f"C-{unique}"
    app = build_app(await settings_for(unique), clock=FixedClock(BASE + timedelta(days=1)))

    def complaint(kind: str, complaint_id: str, status: str, hours: int, **data: Any) -> dict[str, Any]:
        return envelope(f"complaint.{kind}", customer, {"complaint_id": complaint_id, "status": status,
                                                        "priority": "p2", **data}, time_=BASE + timedelta(hours=hours))

    def interaction(interaction_id: str, kind: str, hours: int, **data: Any) -> dict[str, Any]:
        return envelope("customer.interaction.recorded", customer, {
            "interaction_id": interaction_id, "kind": kind, "channel": "web", "direction": "inbound", **data},
            time_=BASE + timedelta(hours=hours))

    async with Watch(infra["KAFKA_BOOTSTRAP_SERVERS"], dlq(CRM_COMPLAINTS)) as bad_complaints, \
            Watch(infra["KAFKA_BOOTSTRAP_SERVERS"], dlq(CRM_INTERACTIONS)) as bad_interactions, \
            running(app) as client:
        await send(infra, ORDERS_PURCHASES, purchase(customer, f"O-{unique}", "300.00", BASE))
        await eventually(lambda: classified(client, customer, loyalty="general"))
        await send(infra, CRM_COMPLAINTS, complaint("opened", f"K1-{unique}", "received", 1),
                   complaint("opened", f"K2-{unique}", "received", 2),
                   {**complaint("opened", f"K3-{unique}", "received", 3), "data": {"complaint_id": "x"}})
        risky = await eventually(lambda: classified(client, customer, loyalty="churn_risk"))
        assert risky["metrics"]["open_complaints"] == 2
        await send(infra, CRM_COMPLAINTS, complaint("resolved", f"K2-{unique}", "resolved", 4),
                   complaint("feedback_received", f"K2-{unique}", "closed", 5, feedback_score=5))
        calm = await eventually(lambda: classified(client, customer, loyalty="general"))
        assert calm["metrics"]["open_complaints"] == 1 and calm["metrics"]["latest_satisfaction"] == 5
        await send(infra, CRM_INTERACTIONS, interaction(f"I1-{unique}", "referral", 6, referred_customer_id="C-x"),
                   interaction(f"I2-{unique}", "survey_response", 7, satisfaction=1),
                   interaction(f"I3-{unique}", "referral", 8))
        unhappy = await eventually(lambda: classified(client, customer, loyalty="churn_risk"))
        complaints_dead = await bad_complaints.records(customer, at_least=1)
        interactions_dead = await bad_interactions.records(customer, at_least=1)
    assert unhappy["metrics"]["referrals"] == 1 and unhappy["metrics"]["latest_satisfaction"] == 1
    assert "satisfaction" in unhappy["reasons"]["loyalty"]
    assert [dict(r.headers)["x-error"] for r in complaints_dead] == [b"invalid_data"]
    interaction_error = dict(interactions_dead[0].headers)
    assert interaction_error["x-error"] == b"invalid_data" and b"referred_customer_id" in \
        interaction_error["x-error-detail"]
