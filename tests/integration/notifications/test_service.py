"""The notifications service on the real broker and store, delivering to local SMTP and SMS endpoints."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

import pytest

from services.notifications.app import build_app
from services.notifications.settings import NotificationsSettings
from shared.clock import FixedClock
from shared.contract import dlq
from shared.contract.topics import (
    CRM_ACCOUNT_MANAGERS,
    CRM_CARE_TASKS,
    CRM_COMPLAINTS,
    CRM_CUSTOMER_TIERS,
    CRM_CUSTOMERS,
    CRM_INTERACTIONS,
    CRM_NOTIFICATIONS,
    CRM_TIER_CHANGES,
    ORDERS_PURCHASES,
)
from tests.helpers import api_key, consume_all, envelope, eventually, produce, purchase, running

from .conftest import SmsProvider, SmtpSink, skip_backlog

pytestmark = pytest.mark.integration
#: 12:00 in Shanghai two days ago: inside the allowed hours, and safely in the past for every event.
BASE = datetime.now(UTC).replace(hour=4, minute=0, second=0, microsecond=0) - timedelta(days=2)
READ_KEY, READ = api_key("reader", "notifications:read")
WRITE_KEY, WRITE = api_key("writer", "notifications:read", "notifications:write")


async def settings_for(unique: str, smtp: int, sms: SmsProvider, **kw: Any) -> NotificationsSettings:
    settings = NotificationsSettings(
        mongodb_database=f"test_notifications_{unique}", kafka_group_id=f"test-notifications-{unique}",
        smtp_host="127.0.0.1", smtp_port=smtp, sms_url=sms.url, webhook_url="", channel_backoff_s=0.05,
        scheduler_interval_s=3600, api_keys=(READ, WRITE), **kw)
    await skip_backlog(settings)
    return settings


def phone_for(unique: str, n: int = 0) -> str:
    return f"+86138{(int(unique[:8], 16) + n) % 10**8:08d}"


def profile(customer: str, *, at: datetime = BASE, version: int = 1, **data: Any) -> dict[str, Any]:
    body = {"name": "李雷", "locale": "zh-CN", "timezone": "Asia/Shanghai", "country": "CN",
            "preferred_channel": "email", "consents": {"care_messages": True, "email": True, "sms": True},
            "version": version, "created_at": at.isoformat(), **data}
    return envelope("customer.profile.changed", customer, body, time_=at)


def tier_change(customer: str, dimension: str, previous: str | None, current: str, direction: str, *,
                at: datetime = BASE, **extra: Any) -> dict[str, Any]:
    return envelope("customer.tier.changed", customer, {
        "dimension": dimension, "previous": previous, "current": current, "direction": direction,
        "reason": "spend 800 more within 12 months to keep high", "policy_version": "v1",
        "effective_at": at.isoformat(), "metrics": {"currency": "CNY", "spend_12m": "5200.00", "orders_12m": 4},
        **extra}, time_=at)


def complaint(customer: str, kind: str, complaint_id: str, *, at: datetime = BASE, **data: Any) -> dict[str, Any]:
    return envelope(f"complaint.{kind}", customer, {"complaint_id": complaint_id, "status": "received",
                                                    "priority": "p2", **data}, time_=at)


async def send(infra: dict[str, str], topic: str, *events: dict[str, Any]) -> None:
    await produce(infra["KAFKA_BOOTSTRAP_SERVERS"], topic, [(e["subject"].encode(), e) for e in events])


async def outcomes(infra: dict[str, str], customer: str, at_least: int) -> list[dict[str, Any]]:
    def ours(records: list[Any]) -> list[Any]:
        return [r for r in records if r.key == customer.encode()]

    records = await consume_all(infra["KAFKA_BOOTSTRAP_SERVERS"], CRM_NOTIFICATIONS,
                                until=lambda rs: len(ours(rs)) >= at_least, timeout=30)
    return [json.loads(r.value) for r in ours(records)]


async def test_a_registration_is_welcomed_by_email_in_the_customers_locale_and_the_outcome_published(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    sink, port = smtp_sink
    customer, address = f"C-{unique}", f"ann-{unique}@example.com"
    app = build_app(await settings_for(unique, port, sms_provider), clock=FixedClock(BASE))
    async with running(app) as client:
        await send(infra, CRM_CUSTOMERS, profile(customer, name="Ann", email=address, locale="en-US"))
        await eventually(lambda: _async(sink.to(address)))
        history = (await eventually(lambda: _sent(client, customer)))
    [mail] = sink.to(address)
    assert mail["Subject"] == "Welcome aboard" and mail["Content-Language"] == "en-US"
    assert "Dear Ann, welcome!" in mail.get_content() and "unsubscribe" in mail.get_content()
    assert history[0]["template"] == "welcome" and history[0]["dedupe_key"] == f"welcome:{customer}"
    [event] = await outcomes(infra, customer, 1)
    assert event["type"] == "notification.sent"
    assert event["data"] | {"notification_id": None} == {
        "notification_id": None, "trigger": "welcome", "channel": "email", "template": "welcome", "locale": "en-US",
        "dedupe_key": f"welcome:{customer}", "attempts": 1}


async def test_a_referral_thanks_the_referrer_once_and_one_without_consent_is_suppressed(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    sink, port = smtp_sink
    referrer, silent = f"C-{unique}-r", f"C-{unique}-s"
    address = f"ref-{unique}@example.com"

    def referral(customer: str, referred: str, n: int) -> dict[str, Any]:
        return envelope("customer.interaction.recorded", customer, {
            "interaction_id": f"I-{unique}-{n}", "kind": "referral", "channel": "app", "direction": "inbound",
            "referred_customer_id": referred}, time_=BASE)

    app = build_app(await settings_for(unique, port, sms_provider), clock=FixedClock(BASE))
    async with running(app) as client:
        await send(infra, CRM_CUSTOMERS, profile(referrer, email=address, version=2),
                   profile(silent, email=f"s-{unique}@example.com", version=2,
                           consents={"care_messages": False, "email": True}))
        await eventually(lambda: app.state.repo.profile(silent))
        # The same referral told twice (two systems), and a referral by a customer who wants no care messages.
        await send(infra, CRM_INTERACTIONS, referral(referrer, f"C-{unique}-n", 1),
                   referral(referrer, f"C-{unique}-n", 2), referral(silent, f"C-{unique}-m", 3))
        await eventually(lambda: _async(sink.to(address)))
        quiet = await outcomes(infra, silent, 1)
        await asyncio.sleep(1)
        history = await _history(client, referrer)
    assert [h["template"] for h in history] == ["referral_thanks"]
    [mail] = sink.to(address)
    assert mail["Subject"] == "感谢您的推荐"
    assert [(e["type"], e["data"]["trigger"], e["data"]["reason"]) for e in quiet] == [
        ("notification.suppressed", "referral_thanks", "no_consent")]
    assert len(sink.to(address)) == 1


async def test_a_tier_in_its_grace_period_is_warned_once_with_the_amount_and_the_day(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    sink, port = smtp_sink
    customer, address = f"C-{unique}", f"grace-{unique}@example.com"
    due = BASE + timedelta(days=29)

    def snapshot(needed: str, at: datetime) -> dict[str, Any]:
        return envelope("customer.classification", customer, {
            "value_tier": "high", "policy_version": "v1", "updated_at": at.isoformat(),
            "metrics": {"currency": "CNY", "spend_12m": "19200.00", "orders_12m": 3},
            "downgrade_pending": {"value_tier": {
                "current": "high", "pending": "medium", "below_since": (BASE - timedelta(days=1)).isoformat(),
                "effective_at": due.isoformat(), "needed": "net spend of at least 20000.00 CNY",
                "spend_needed": needed, "currency": "CNY"}}}, time_=at)

    app = build_app(await settings_for(unique, port, sms_provider), clock=FixedClock(BASE))
    async with running(app):
        await send(infra, CRM_CUSTOMERS, profile(customer, email=address, version=2))
        await eventually(lambda: app.state.repo.profile(customer))
        # The same grace period seen in two snapshots (another purchase, still short): one warning.
        await send(infra, CRM_CUSTOMER_TIERS, snapshot("800.00", BASE), snapshot("500.00", BASE + timedelta(hours=1)))
        await eventually(lambda: _async(sink.to(address)))
        await asyncio.sleep(1)
    [mail] = sink.to(address)
    assert mail["Subject"] == "保留金卡会员的温馨提示"
    local = due.astimezone(ZoneInfo("Asia/Shanghai"))
    assert "再消费800.00 CNY" in mail.get_content() and f"{local.month}月{local.day}日" in mail.get_content()


async def test_the_same_tier_change_delivered_twice_or_noticed_again_sends_one_message_and_a_bulk_change_none(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    sink, port = smtp_sink
    customer, address = f"C-{unique}", f"li-{unique}@example.com"
    app = build_app(await settings_for(unique, port, sms_provider), clock=FixedClock(BASE))
    upgrade = tier_change(customer, "value_tier", "medium", "high", "upgrade")
    # A tiering restart noticing the same transition again: its id, another moment and previous.
    noticed_again = {**tier_change(customer, "value_tier", "low", "high", "upgrade", at=BASE + timedelta(hours=1)),
                     "id": upgrade["id"]}
    bulk = tier_change(customer, "vip", "regular", "vip", "upgrade", bulk=True)
    marker = tier_change(customer, "lifecycle", "churned", "reactivated", "upgrade")
    async with running(app) as client:
        await send(infra, CRM_CUSTOMERS, profile(customer, email=address, version=2))
        await eventually(lambda: app.state.repo.profile(customer))
        await send(infra, CRM_TIER_CHANGES, bulk, upgrade, upgrade, noticed_again, marker)
        await eventually(lambda: _async(len(sink.to(address)) >= 2))
        history = await _history(client, customer)
    subjects = sorted(m["Subject"] for m in sink.to(address))
    assert subjects == ["恭喜您升级为金卡会员", "欢迎回来"]
    assert sorted(h["template"] for h in history) == ["tier_upgrade", "welcome_back"]
    events = await outcomes(infra, customer, 4)
    sent = [e for e in events if e["type"] == "notification.sent"]
    # The redelivery and the later notice republish the very same outcome event.
    assert len({e["id"] for e in sent if e["data"]["template"] == "tier_upgrade"}) == 1


async def test_a_customer_who_reaches_churn_risk_again_within_the_repeat_window_is_asked_back_once(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    sink, port = smtp_sink
    customer, address = f"C-rw-{unique}", f"rw-{unique}@example.com"
    start = BASE - timedelta(days=120)  # every event in the past, as the envelope requires
    clock = FixedClock(start)
    app = build_app(await settings_for(unique, port, sms_provider), clock=clock)

    def arrival(n: int, at: datetime) -> dict[str, Any]:
        # Each arrival at churn risk is a transition of its own (its own id), as tiering numbers them.
        return {**tier_change(customer, "loyalty", "general", "churn_risk", "downgrade", at=at), "id": f"{unique}-{n}"}

    async with running(app) as client:
        await send(infra, CRM_CUSTOMERS, profile(customer, email=address, version=2))
        await eventually(lambda: app.state.repo.profile(customer))
        await send(infra, CRM_TIER_CHANGES, arrival(1, start))
        await eventually(lambda: _async(len(sink.to(address)) == 1))
        clock.set(start + timedelta(days=20))
        await send(infra, CRM_TIER_CHANGES, arrival(2, clock.now()))
        events = await outcomes(infra, customer, 2)
        assert [(e["type"], e["data"].get("reason")) for e in events] == [
            ("notification.sent", None), ("notification.suppressed", "duplicate")]
        clock.set(start + timedelta(days=91))  # the window has passed: a new arrival asks again
        await send(infra, CRM_TIER_CHANGES, arrival(3, clock.now()))
        await eventually(lambda: _async(len(sink.to(address)) == 2))
        history = await _history(client, customer)
    assert sorted(h["status"] for h in history) == ["sent", "sent", "suppressed"]


async def test_the_report_counts_comebacks_after_a_win_back_beside_the_customers_it_could_not_reach(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    sink, port = smtp_sink
    reached, unreached, silent = f"C-wb-{unique}", f"C-wn-{unique}", f"C-ws-{unique}"
    clock = FixedClock(BASE)
    app = build_app(await settings_for(unique, port, sms_provider), clock=clock)
    async with running(app) as client:
        await send(infra, CRM_CUSTOMERS, profile(reached, email=f"wb-{unique}@example.com", version=2),
                   profile(silent, email=f"ws-{unique}@example.com", version=2),
                   profile(unreached, email=f"wn-{unique}@example.com", version=2,
                           consents={"care_messages": False, "email": False, "sms": False}))
        for c in (reached, unreached, silent):
            await eventually(lambda c=c: app.state.repo.profile(c))
        await send(infra, CRM_TIER_CHANGES, *(tier_change(c, "loyalty", "general", "churn_risk", "downgrade")
                                              for c in (reached, unreached, silent)))
        for c in (reached, unreached, silent):
            await eventually(lambda c=c: _history_has(client, c, "win_back"))
        clock.set(BASE + timedelta(hours=1))  # they come back later; the silent one does not
        await send(infra, CRM_TIER_CHANGES, *(tier_change(c, "lifecycle", "churned", "reactivated", "upgrade",
                                                          at=BASE + timedelta(hours=1)) for c in (reached, unreached)))
        for c in (reached, unreached):
            await eventually(lambda c=c: _history_has(client, c, "welcome_back"))
        report = (await client.get("/reports/notifications", headers={"X-API-Key": READ_KEY})).json()
    assert report["win_back"] == {
        "sent": {"customers": 2, "reactivated": 1, "reactivation_rate": 0.5},
        "suppressed:no_consent": {"customers": 1, "reactivated": 1, "reactivation_rate": 1.0},
    }


async def test_when_the_preferred_channel_keeps_failing_the_message_goes_by_the_next_one(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    sink, port = smtp_sink
    customer, phone, address = f"C-{unique}", phone_for(unique), f"fb-{unique}@example.com"
    sms_provider.fail_first[phone] = 1000  # the SMS provider refuses every attempt
    app = build_app(await settings_for(unique, port, sms_provider, channel_max_attempts=2), clock=FixedClock(BASE))
    async with running(app):
        await send(infra, CRM_CUSTOMERS, profile(customer, phone=phone, email=address, preferred_channel="sms",
                                                 version=2))
        await eventually(lambda: app.state.repo.profile(customer))
        await send(infra, CRM_COMPLAINTS, complaint(customer, "opened", f"CP-{unique}"))
        [event] = await outcomes(infra, customer, 1)
    assert len(sms_provider.to(phone)) == 2  # both attempts on the preferred channel failed
    assert [m["To"] for m in sink.to(address)] == [address]
    assert event["type"] == "notification.sent" and event["data"]["channel"] == "email"
    assert event["data"]["attempts"] == 3


async def test_a_complaint_acknowledgement_by_sms_is_retried_through_a_failing_provider_and_sent_once(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    _, port = smtp_sink
    customer, phone = f"C-{unique}", phone_for(unique)
    sms_provider.fail_first[phone] = 1
    app = build_app(await settings_for(unique, port, sms_provider), clock=FixedClock(BASE))
    due = BASE + timedelta(hours=30)
    opened = complaint(customer, "opened", f"CP-{unique}", first_response_due_at=due.isoformat())
    async with running(app):
        # No consent at all: complaint messages are transactional and still go out.
        await send(infra, CRM_CUSTOMERS, profile(customer, phone=phone, preferred_channel="sms", consents={},
                                                 version=2))
        await eventually(lambda: app.state.repo.profile(customer))
        await send(infra, CRM_COMPLAINTS, opened)
        [event] = await outcomes(infra, customer, 1)
        await send(infra, CRM_COMPLAINTS, opened)  # redelivered: the provider must not see it again
        again = await outcomes(infra, customer, 2)
    requests = sms_provider.to(phone)
    assert len(requests) == 2  # one 503, one success: retried, sent once
    assert {r["headers"]["idempotency-key"] for r in requests} == {f"complaint_acknowledged:CP-{unique}:{customer}"}
    local_due = due.astimezone(ZoneInfo("Asia/Shanghai"))
    assert f"{local_due.month}月{local_due.day}日" in requests[-1]["body"]["text"]
    assert not requests[-1]["body"]["text"].endswith("回复T退订")
    assert event["type"] == "notification.sent" and event["data"]["attempts"] == 2
    assert event["data"]["channel"] == "sms"
    assert [e["id"] for e in again] == [event["id"], event["id"]]  # the redelivery republished the same event


async def test_a_resolution_is_announced_at_once_and_the_survey_follows_a_day_later(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    sink, port = smtp_sink
    customer, address = f"C-{unique}", f"r-{unique}@example.com"
    clock = FixedClock(BASE)
    app = build_app(await settings_for(unique, port, sms_provider), clock=clock)
    async with running(app):
        await send(infra, CRM_CUSTOMERS, profile(customer, email=address, locale="en-US", version=2))
        await eventually(lambda: app.state.repo.profile(customer))
        await send(infra, CRM_COMPLAINTS, complaint(customer, "resolved", f"CP-{unique}", status="resolved"))
        await eventually(lambda: _async(sink.to(address)))
        await app.state.scheduler.tick()
        assert [m["Subject"] for m in sink.to(address)] == [f"Your complaint (CP-{unique}) is resolved"]
        clock.set(BASE + timedelta(hours=24))
        await app.state.scheduler.tick()
    assert [m["Subject"] for m in sink.to(address)] == [f"Your complaint (CP-{unique}) is resolved",
                                                        "How did we do?"]


async def test_the_survey_link_takes_one_answer_for_its_customer_and_complaint_and_publishes_it(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    sink, port = smtp_sink
    customer, address, complaint_id = f"C-{unique}", f"q-{unique}@example.com", f"CP-{unique}"
    clock = FixedClock(BASE)
    settings = await settings_for(unique, port, sms_provider, survey_base_url="https://care.example/surveys")
    app = build_app(settings, clock=clock)
    async with running(app) as client:
        await send(infra, CRM_CUSTOMERS, profile(customer, email=address, locale="en-US", version=2))
        await eventually(lambda: app.state.repo.profile(customer))
        await send(infra, CRM_COMPLAINTS, complaint(customer, "resolved", complaint_id, status="resolved"))
        await eventually(lambda: _async(sink.to(address)))
        clock.set(BASE + timedelta(hours=24))
        await app.state.scheduler.tick()
        survey = sink.to(address)[-1]
        link = next(w for w in survey.get_content().split() if w.startswith("https://care.example/surveys?"))
        query = dict(parse_qsl(link.split("?", 1)[1]))
        page = await client.get("/surveys", params=query)
        forged = {**query, "token": "0" * 32}
        moved = {**query, "customer_id": f"C-other-{unique}"}
        refused = [await client.post("/surveys", json={**q, "score": 4}) for q in (forged, moved)]
        bad_score = await client.post("/surveys", json={**query, "score": 6})
        not_json = await client.post("/surveys", content=b"{", headers={"content-type": "application/json"})
        answered = await client.post("/surveys", content=urlencode({**query, "score": 2, "comment": "Too slow"}),
                                     headers={"content-type": "application/x-www-form-urlencoded"})
        again = await client.post("/surveys", json={**query, "score": 5})
        clock.set(BASE + timedelta(days=16))  # past the link's 14 days
        expired = await client.get("/surveys", params=query)
        records = await consume_all(infra["KAFKA_BOOTSTRAP_SERVERS"], CRM_INTERACTIONS,
                                    until=lambda rs: any(r.key == customer.encode() for r in rs), timeout=30)
    assert page.status_code == 200 and 'name="score"' in page.text and complaint_id in page.text
    assert [r.status_code for r in refused] == [403, 403]
    assert bad_score.status_code == 422 and "score" in bad_score.json()["detail"]
    assert not_json.status_code == 422
    assert answered.status_code == 202 and again.status_code == 409
    assert expired.status_code == 403 and "expired" in expired.json()["detail"]
    [event] = [json.loads(r.value) for r in records if r.key == customer.encode()]
    assert event["id"] == answered.json()["interaction_id"]
    assert {k: event["data"][k] for k in ("kind", "satisfaction", "complaint_id", "summary")} == {
        "kind": "survey_response", "satisfaction": 2, "complaint_id": complaint_id, "summary": "Too slow"}


async def test_a_complaint_reopened_before_its_survey_gets_no_survey(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    sink, port = smtp_sink
    customer, address = f"C-{unique}", f"o-{unique}@example.com"
    clock = FixedClock(BASE)
    app = build_app(await settings_for(unique, port, sms_provider), clock=clock)
    async with running(app) as client:
        await send(infra, CRM_CUSTOMERS, profile(customer, email=address, locale="en-US", version=2))
        await eventually(lambda: app.state.repo.profile(customer))
        await send(infra, CRM_COMPLAINTS, complaint(customer, "resolved", f"CP-{unique}", status="resolved"),
                   complaint(customer, "reopened", f"CP-{unique}", status="investigating"))
        await eventually(lambda: _async(sink.to(address)))
        await eventually(lambda: _async_not(app.state.repo.by_keys([f"complaint_survey:CP-{unique}:{customer}"])))
        clock.set(BASE + timedelta(hours=25))
        await app.state.scheduler.tick()
        history = await _history(client, customer)
    assert [m["Subject"] for m in sink.to(address)] == [f"Your complaint (CP-{unique}) is resolved"]
    assert [h["template"] for h in history] == ["complaint_resolved"]


async def test_a_message_in_quiet_hours_is_deferred_to_the_morning_and_then_sent(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    sink, port = smtp_sink
    customer, address = f"C-{unique}", f"q-{unique}@example.com"
    evening = BASE + timedelta(hours=10)  # 22:00 in Shanghai
    clock = FixedClock(evening)
    app = build_app(await settings_for(unique, port, sms_provider), clock=clock)
    async with running(app):
        await send(infra, CRM_CUSTOMERS, profile(customer, email=address, version=2, at=evening))
        await eventually(lambda: app.state.repo.profile(customer))
        await send(infra, CRM_TIER_CHANGES, tier_change(customer, "value_tier", "low", "medium", "upgrade", at=evening))
        [deferred] = await outcomes(infra, customer, 1)
        assert sink.to(address) == []
        morning = BASE + timedelta(hours=21)  # 09:00 the next day in Shanghai
        assert deferred["data"]["reason"] == "quiet_hours_deferred"
        assert datetime.fromisoformat(deferred["data"]["scheduled_for"]) == morning
        clock.set(morning - timedelta(minutes=1))
        await app.state.scheduler.tick()
        assert sink.to(address) == []
        clock.set(morning)
        await app.state.scheduler.tick()
        await app.state.scheduler.tick()
    assert len(sink.to(address)) == 1
    events = await outcomes(infra, customer, 2)
    assert [e["type"] for e in events] == ["notification.suppressed", "notification.sent"]


async def test_a_tier_change_read_before_the_profile_waits_for_it_and_is_sent_when_it_arrives(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    sink, port = smtp_sink
    customer, address = f"C-{unique}", f"early-{unique}@example.com"
    clock = FixedClock(BASE)
    app = build_app(await settings_for(unique, port, sms_provider), clock=clock)
    async with running(app) as client:
        await send(infra, CRM_TIER_CHANGES, tier_change(customer, "value_tier", "low", "medium", "upgrade"))
        [waiting] = await eventually(lambda: _history(client, customer))
        assert (waiting["status"], waiting["reason"]) == ("deferred", "awaiting_profile")
        await send(infra, CRM_CUSTOMERS, profile(customer, email=address, version=2))
        await eventually(lambda: _async_known(app, customer))
        await app.state.scheduler.tick()
        assert sink.to(address) == []  # it waits for its time to look again
        clock.set(BASE + timedelta(minutes=1))
        await app.state.scheduler.tick()
        history = await _sent(client, customer)
    assert [m["Subject"] for m in sink.to(address)] == ["恭喜您升级为银卡会员"]
    assert [h["template"] for h in history] == ["tier_upgrade"]
    events = await outcomes(infra, customer, 1)
    assert [e["type"] for e in events] == ["notification.sent"]


async def test_a_message_whose_profile_never_arrives_ends_as_no_contact_after_the_wait(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    _, port = smtp_sink
    customer = f"C-{unique}"
    clock = FixedClock(BASE)
    app = build_app(await settings_for(unique, port, sms_provider, profile_wait_minutes=30), clock=clock)
    async with running(app) as client:
        await send(infra, CRM_TIER_CHANGES, tier_change(customer, "vip", "regular", "vip", "upgrade"))
        await eventually(lambda: _history(client, customer))
        clock.set(BASE + timedelta(minutes=29))
        await app.state.scheduler.tick()
        [waiting] = await _history(client, customer)
        assert (waiting["status"], waiting["reason"]) == ("deferred", "awaiting_profile")
        clock.set(BASE + timedelta(minutes=30))
        await app.state.scheduler.tick()
        [ended] = await _history(client, customer)
        events = await outcomes(infra, customer, 1)
    assert (ended["status"], ended["reason"]) == ("suppressed", "no_contact")
    assert [(e["type"], e["data"]["reason"]) for e in events] == [("notification.suppressed", "no_contact")]


async def test_on_spring_festival_the_scheduler_greets_consenting_chinese_customers_once(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    sink, port = smtp_sink
    festival_morning = datetime(2026, 2, 17, 2, 30, tzinfo=UTC)  # 10:30 in Shanghai
    clock = FixedClock(festival_morning - timedelta(hours=1))
    greeted, refused = f"C-a{unique}", f"C-b{unique}"
    address = f"a-{unique}@example.com"
    app = build_app(await settings_for(unique, port, sms_provider), clock=clock)
    async with running(app) as client:
        await send(infra, CRM_CUSTOMERS,
                   profile(greeted, email=address, version=2, at=festival_morning - timedelta(days=30)),
                   profile(refused, email=f"b-{unique}@example.com", consents={"email": True}, version=2,
                           at=festival_morning - timedelta(days=30)))
        await eventually(lambda: app.state.repo.profile(refused))
        await app.state.scheduler.tick()  # 09:30 local: before the daily hour
        assert sink.to(address) == []
        clock.set(festival_morning)
        await app.state.scheduler.tick()
        await app.state.scheduler.tick()
        history = await _history(client, greeted)
        refused_history = await _history(client, refused)
    [mail] = sink.to(address)
    assert mail["Subject"] == "春节快乐" and "李雷，祝您春节快乐" in mail.get_content()
    assert [h["dedupe_key"] for h in history] == [f"holiday:CN:spring_festival:2026:{greeted}"]
    assert [(h["status"], h["reason"]) for h in refused_history] == [("suppressed", "no_consent")]
    [event] = await outcomes(infra, refused, 1)
    assert event["type"] == "notification.suppressed" and event["data"]["reason"] == "no_consent"
    assert event["data"]["trigger"] == "holiday:CN:spring_festival:2026"


def manager_changed(customer: str, manager: str | None, *, revision: int = 1, at: datetime = BASE) -> dict[str, Any]:
    data = {"manager_id": manager, "reason": "vip", "actor": "rule", "changed_at": at.isoformat(), "revision": revision}
    return envelope("customer.account_manager.changed", customer, {k: v for k, v in data.items() if v is not None},
                    time_=at)


async def test_a_managed_customers_follow_up_is_a_return_visit_published_for_the_manager_not_a_message(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    sink, port = smtp_sink
    follow_up_day = datetime(2026, 3, 3, 2, 30, tzinfo=UTC)  # 10:30 in Shanghai, 30 days after the start
    start = follow_up_day - timedelta(days=30)
    managed, unmanaged, released = f"C-m{unique}", f"C-u{unique}", f"C-r{unique}"
    addresses = {c: f"{c.lower()}@example.com" for c in (managed, unmanaged, released)}
    app = build_app(await settings_for(unique, port, sms_provider, follow_up_days={"vip": 30, "managed": 30}),
                    clock=FixedClock(follow_up_day))
    async with running(app) as client:
        # The service's own first pass must not run the day on half of what is sent below.
        await asyncio.wait_for(app.state.scheduler.ticked.wait(), 60)
        await send(infra, CRM_CUSTOMERS, *(profile(c, email=addresses[c], version=2, at=start) for c in addresses))
        await send(infra, CRM_TIER_CHANGES, *(tier_change(c, "vip", "regular", "vip", "upgrade", at=start, bulk=True)
                                              for c in addresses))
        await send(infra, CRM_ACCOUNT_MANAGERS, manager_changed(managed, "am-xu"),
                   manager_changed(released, "am-lin"), manager_changed(released, None, revision=2),
                   # An older revision read late changes nothing.
                   manager_changed(released, "am-lin", revision=1))

        async def copied() -> bool:
            found = await app.state.repo.profiles(addresses)
            return (len(found) == 3 and all(p.vip == "vip" for p in found.values())
                    and found[managed].account_manager == "am-xu")

        await eventually(copied)
        await eventually(lambda: app.state.repo.customers.find_one({"_id": released, "account_manager_revision": 2}))
        await app.state.scheduler.tick()
        await app.state.scheduler.tick()  # the day's run is done once
        histories = {c: [h["template"] for h in await _history(client, c)] for c in addresses}
        records = await consume_all(infra["KAFKA_BOOTSTRAP_SERVERS"], CRM_CARE_TASKS,
                                    until=lambda rs: any(r.key == managed.encode() for r in rs))
    visits = [json.loads(r.value) for r in records if r.key in {c.encode() for c in addresses}]
    assert histories == {managed: [], unmanaged: ["follow_up"], released: ["follow_up"]}
    assert len(sink.to(addresses[unmanaged])) == 1 and sink.to(addresses[managed]) == []
    assert [(v["subject"], v["type"], v["data"]) for v in visits] == [(managed, "care.return_visit.due", {
        "visit_id": f"return_visit:2026-03-03:{managed}", "due_on": "2026-03-03", "cadence_days": 30,
        "manager_id": "am-xu"})]


async def test_a_suppressed_customer_gets_no_care_message_and_the_report_counts_it(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    sink, port = smtp_sink
    customer, address = f"C-{unique}", f"s-{unique}@example.com"
    app = build_app(await settings_for(unique, port, sms_provider), clock=FixedClock(BASE))
    async with running(app) as client:
        created = await client.post("/suppressions", headers={"X-API-Key": WRITE_KEY},
                                    json={"kind": "email", "value": address.upper(), "reason": "bounced"})
        # Found by its blind index: the address itself is neither the id nor stored in clear.
        assert created.status_code == 201 and created.json()["id"].startswith("email:")
        assert address not in created.json()["id"] and created.json()["value"] == address
        listed = await client.get("/suppressions", headers={"X-API-Key": READ_KEY})
        assert [s["value"] for s in listed.json()["suppressions"]] == [address]
        await send(infra, CRM_CUSTOMERS, profile(customer, email=address))
        [event] = await outcomes(infra, customer, 1)
        report = (await client.get("/reports/notifications", headers={"X-API-Key": READ_KEY})).json()
        removed = await client.delete(f"/suppressions/{created.json()['id']}", headers={"X-API-Key": WRITE_KEY})
        missing = await client.delete(f"/suppressions/{created.json()['id']}", headers={"X-API-Key": WRITE_KEY})
    assert event["data"]["reason"] == "suppression_list" and sink.to(address) == []
    assert report["totals"]["suppressed"] >= 1 and report["by_reason"]["suppressed"]["suppression_list"] >= 1
    assert removed.status_code == 204 and missing.status_code == 404


async def test_an_erasure_removes_the_customers_copy_and_history(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    sink, port = smtp_sink
    customer, address = f"C-{unique}", f"e-{unique}@example.com"
    app = build_app(await settings_for(unique, port, sms_provider), clock=FixedClock(BASE))
    async with running(app) as client:
        await send(infra, CRM_CUSTOMERS, profile(customer, email=address))
        await eventually(lambda: _sent(client, customer))
        erased = envelope("customer.erased", customer, {"erased_at": BASE.isoformat()}, time_=BASE)
        await send(infra, CRM_CUSTOMERS, erased)
        await eventually(lambda: _async_not(app.state.repo.profile(customer)))
        assert await _history(client, customer) == []


@pytest.mark.parametrize(("topic", "event", "field"), [
    (CRM_CUSTOMERS, lambda c: profile(c, timezone="Mars/Olympus"), "data.timezone"),
    (CRM_TIER_CHANGES, lambda c: tier_change(c, "shoe_size", "41", "42", "upgrade"), "data.dimension"),
    (CRM_COMPLAINTS, lambda c: complaint(c, "opened", "CP-1", priority="urgent"), "data.priority"),
    # A staff alert that names nobody to reach.
    (CRM_COMPLAINTS, lambda c: complaint(c, "staff_alert", "CP-1", alert={
        "kind": "escalated", "staff_id": "sup-1", "staff_name": "Wang Fang", "role": "supervisor",
        "rung": "supervisor", "on_duty": True}), "data.alert"),
    (CRM_ACCOUNT_MANAGERS, lambda c: manager_changed(c, "am-1", revision=-1), "data.revision"),
    (ORDERS_PURCHASES, lambda c: purchase(c, "O-1", amount="-5.00"), "data.total_amount"),
], ids=["customers", "tier-changes", "complaints", "staff-alert", "account-managers", "purchases"])
async def test_a_bad_event_on_each_consumed_topic_goes_to_its_dlq_and_the_next_one_is_handled(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider,
        topic: str, event: Any, field: str) -> None:
    _, port = smtp_sink
    customer = f"C-{unique}"
    app = build_app(await settings_for(unique, port, sms_provider), clock=FixedClock(BASE))

    def ours(records: list[Any]) -> list[Any]:
        return [r for r in records if r.key == customer.encode()]

    async with running(app):
        await send(infra, topic, event(customer))
        await send(infra, CRM_CUSTOMERS, profile(customer, email=f"d-{unique}@example.com", version=2))
        await eventually(lambda: app.state.repo.profile(customer))
        dead = ours(await consume_all(infra["KAFKA_BOOTSTRAP_SERVERS"], dlq(topic), until=lambda rs: bool(ours(rs))))
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert headers["x-error"] == "invalid_data" and headers["x-error-detail"].startswith(field)


async def test_the_api_needs_keys_with_the_right_scopes_and_names_the_bad_field(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    _, port = smtp_sink
    app = build_app(await settings_for(unique, port, sms_provider), clock=FixedClock(BASE))
    async with running(app) as client:
        anonymous = await client.get(f"/customers/C-{unique}/notifications")
        read_only = await client.post("/suppressions", headers={"X-API-Key": READ_KEY},
                                      json={"kind": "customer", "value": f"C-{unique}"})
        bad_kind = await client.post("/suppressions", headers={"X-API-Key": WRITE_KEY},
                                     json={"kind": "fax", "value": "1"})
        bad_customer = await client.post("/suppressions", headers={"X-API-Key": WRITE_KEY},
                                         json={"kind": "customer", "value": "no spaces allowed"})
        missing_param = await client.post("/preview", headers={"X-API-Key": READ_KEY},
                                          json={"template": "complaint_resolved", "locale": "en-US"})
        unknown = await client.post("/preview", headers={"X-API-Key": READ_KEY}, json={"template": "nope"})
        bad_channel = await client.post("/preview", headers={"X-API-Key": READ_KEY},
                                        json={"template": "birthday", "channel": "pigeon"})
        injected = await client.post("/preview", headers={"X-API-Key": READ_KEY},
                                     json={"template": "birthday", "locale": "zh-CN", "channel": "sms",
                                           "name": "{{ ''.__class__ }}"})
        bad_unsubscribe = await client.post(f"/unsubscribe?customer_id=C-{unique}&token=forged")
        asyncapi = (await client.get("/asyncapi.json")).json()
    assert anonymous.status_code == 401 and read_only.status_code == 403
    assert bad_kind.status_code == 422 and "kind" in json.dumps(bad_kind.json())
    assert bad_customer.status_code == 422 and "value" in bad_customer.text
    assert missing_param.status_code == 422 and "complaint_id" in missing_param.text
    assert unknown.status_code == 422 and "template" in unknown.text
    assert bad_channel.status_code == 422 and "channel" in json.dumps(bad_channel.json())
    assert injected.status_code == 200
    assert injected.json()["body"] == "{{ ''.__class__ }}，祝您生日快乐！回复T退订"
    assert injected.json()["sms_code"] == "SMS_BIRTHDAY_01"
    assert bad_unsubscribe.status_code == 403
    assert set(asyncapi["channels"]) == {"crm.customers.v1:notifications", "crm.tier-changes.v1:notifications",
                                         "crm.complaints.v1:notifications", "crm.interactions.v1:notifications",
                                         "crm.customer-tiers.v1:notifications", "orders.purchases.v1:notifications",
                                         "crm.notifications.v1:publish", "crm.account-managers.v1:notifications",
                                         "crm.care-tasks.v1:publish"}


async def test_the_unsubscribe_link_of_a_care_message_stops_the_next_one(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    sink, port = smtp_sink
    customer, address = f"C-{unique}", f"u-{unique}@example.com"
    app = build_app(await settings_for(unique, port, sms_provider), clock=FixedClock(BASE))
    async with running(app) as client:
        await send(infra, CRM_CUSTOMERS, profile(customer, email=address))
        await eventually(lambda: _async(sink.to(address)))
        link = next(line for line in sink.to(address)[0].get_content().split() if "/unsubscribe?" in line)
        query = link.split("?", 1)[1]
        assert (await client.post(f"/unsubscribe?{query}")).status_code == 204
        await send(infra, CRM_TIER_CHANGES, tier_change(customer, "value_tier", "low", "medium", "upgrade"))
        events = await outcomes(infra, customer, 2)
    assert events[-1]["data"].get("reason") == "suppression_list" and len(sink.to(address)) == 1


async def _async(value: Any) -> Any:
    return value


async def _async_known(app: Any, customer: str) -> bool:
    profile = await app.state.repo.profile(customer)
    return profile is not None and profile.known


async def _async_not(awaitable: Any) -> bool:
    return not await awaitable


async def _history_has(client: Any, customer: str, template: str) -> bool:
    return any(h["template"] == template for h in await _history(client, customer))


async def _history(client: Any, customer: str) -> list[dict[str, Any]]:
    response = await client.get(f"/customers/{customer}/notifications", headers={"X-API-Key": READ_KEY})
    assert response.status_code == 200
    return response.json()["notifications"]


async def _sent(client: Any, customer: str) -> list[dict[str, Any]]:
    return [h for h in await _history(client, customer) if h["status"] == "sent"]

