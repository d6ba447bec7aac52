"""General satisfaction surveys on the real broker and store: after a sampled purchase, periodically by
tier, and their answers through the public ``/surveys`` with a link that names no complaint."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from services.notifications import satisfaction
from services.notifications.app import build_app
from services.notifications.domain import Profile
from shared.clock import FixedClock
from shared.contract.topics import CRM_CUSTOMERS, CRM_INTERACTIONS, CRM_TIER_CHANGES, ORDERS_PURCHASES
from tests.helpers import consume_all, envelope, eventually, purchase, running

from .conftest import SmsProvider, SmtpSink
from .test_service import BASE, _history, outcomes, profile, send, settings_for, tier_change

pytestmark = pytest.mark.integration
SHARE = 0.1


def orders(unique: str, sampled: bool, count: int) -> list[str]:
    """Order ids the default share does (or does not) survey: the sample is chosen by the id alone."""
    found = (f"O-{unique}-{n}" for n in range(10_000))
    return [o for o in found if satisfaction.purchase_sampled(o, SHARE) == sampled][:count]


def link_in(mail: Any) -> dict[str, str]:
    link = re.search(r"https://care\.example/surveys\?([^\s。]+)", mail.get_content())
    assert link is not None, mail.get_content()
    return dict(parse_qsl(link.group(1)))


async def test_a_sampled_purchase_is_surveyed_after_the_delay_and_a_general_answer_is_published_once(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    sink, port = smtp_sink
    customer, address = f"C-{unique}", f"p-{unique}@example.com"
    [surveyed, refunded], [skipped] = orders(unique, True, 2), orders(unique, False, 1)
    clock = FixedClock(BASE)
    # One care message a day: the survey waiting for its day must not take the slot of the day it was asked.
    settings = await settings_for(unique, port, sms_provider, survey_base_url="https://care.example/surveys",
                                  frequency_cap=1, frequency_window_days=1, purchase_survey_share=SHARE)
    app = build_app(settings, clock=clock)
    async with running(app) as client:
        await send(infra, CRM_CUSTOMERS, profile(customer, email=address, locale="en-US", version=2))
        await eventually(lambda: app.state.repo.profile(customer))
        await send(infra, ORDERS_PURCHASES, *(purchase(customer, o, time_=BASE) for o in (surveyed, skipped, refunded)))
        refund = envelope("order.purchase.refunded", customer, {
            "refund_id": f"R-{unique}", "order_id": refunded, "amount": "100.00", "currency": "CNY"}, time_=BASE)
        await send(infra, ORDERS_PURCHASES, refund)
        withdrawn = await outcomes(infra, customer, 1)
        await send(infra, CRM_TIER_CHANGES, tier_change(customer, "value_tier", "low", "medium", "upgrade"))
        await eventually(lambda: _sent_template(client, customer, "tier_upgrade"))
        waiting = {h["dedupe_key"]: h for h in await _history(client, customer)}
        clock.set(BASE + timedelta(hours=72))
        await app.state.scheduler.tick()
        [upgrade, mail] = sink.to(address)
        query = link_in(mail)

        page = await client.get("/surveys", params=query)
        forged = await client.post("/surveys", json={**query, "token": "0" * 32, "score": 4})
        # The general link made to name a complaint: its token does not score one.
        as_complaint = {k: v for k, v in query.items() if k != "survey"} | {"complaint_id": f"CP-{unique}"}
        complaint_page = await client.get("/surveys", params=as_complaint)
        complaint_answer = await client.post("/surveys", json={**as_complaint, "score": 1})
        both = await client.post("/surveys", json={**query, "complaint_id": f"CP-{unique}", "score": 4})
        neither = await client.post("/surveys", json={k: v for k, v in query.items() if k != "survey"} | {"score": 4})
        bad_score = await client.post("/surveys", json={**query, "score": 0})
        bad_survey = await client.post("/surveys", json={**query, "survey": "complaint:CP-1", "score": 4})
        answered = await client.post("/surveys", content=urlencode({**query, "score": 5, "comment": "Lovely"}),
                                     headers={"content-type": "application/x-www-form-urlencoded"})
        again = await client.post("/surveys", json={**query, "score": 1})
        clock.set(BASE + timedelta(hours=72, days=15))  # past the link's 14 days
        expired = await client.post("/surveys", json={**query, "score": 3})
        records = await consume_all(infra["KAFKA_BOOTSTRAP_SERVERS"], CRM_INTERACTIONS,
                                    until=lambda rs: any(r.key == customer.encode() for r in rs), timeout=30)
    assert [(e["type"], e["data"]["reason"], e["data"]["template"]) for e in withdrawn] == [
        ("notification.suppressed", "order_refunded", "purchase_survey")]
    assert waiting[satisfaction.purchase_key(surveyed, customer)]["status"] == "deferred"
    assert satisfaction.purchase_key(skipped, customer) not in waiting
    assert waiting[satisfaction.purchase_key(refunded, customer)]["reason"] == "order_refunded"
    assert upgrade["Subject"] == "Congratulations on reaching Silver"
    assert mail["Subject"] == "How was your order?" and surveyed in mail.get_content()
    assert (query["customer_id"], query["survey"]) == (customer, f"purchase:{surveyed}")
    assert "complaint_id" not in query and "unsubscribe" in mail.get_content()
    assert page.status_code == 200 and f"your order {surveyed}" in page.text and 'name="survey"' in page.text
    assert forged.status_code == 403 and complaint_page.status_code == 403 and complaint_answer.status_code == 403
    assert both.status_code == 422 and neither.status_code == 422
    assert bad_score.status_code == 422 and "score" in bad_score.json()["detail"]
    assert bad_survey.status_code == 422 and "survey" in bad_survey.json()["detail"]
    assert answered.status_code == 202 and again.status_code == 409
    assert expired.status_code == 403 and "expired" in expired.json()["detail"]
    [event] = [json.loads(r.value) for r in records if r.key == customer.encode()]
    assert event["id"] == answered.json()["interaction_id"]
    assert {k: event["data"].get(k) for k in ("kind", "satisfaction", "complaint_id", "summary")} == {
        "kind": "survey_response", "satisfaction": 5, "complaint_id": None, "summary": "Lovely"}


async def test_the_daily_pass_asks_a_gold_customer_once_per_period_how_satisfied_they_are(
        infra: dict[str, str], unique: str, smtp_sink: tuple[SmtpSink, int], sms_provider: SmsProvider) -> None:
    sink, port = smtp_sink
    customer, address = f"C-{unique}", f"g-{unique}@example.com"
    today = BASE.date()
    # A start that puts today on this customer's day of their second 180-day period.
    since = next(today - timedelta(days=n) for n in range(180, 360) if satisfaction.periodic_due(
        Profile(customer, value_tier="high", since=today - timedelta(days=n)), today, {"high": 180}))
    clock = FixedClock(BASE - timedelta(hours=3))  # 09:00 in Shanghai: before the daily hour
    settings = await settings_for(unique, port, sms_provider, survey_base_url="https://care.example/surveys",
                                  survey_every_days={"high": 180}, follow_up_days={},
                                  holiday_selection={"CN": {}}, extra_holidays=())
    app = build_app(settings, clock=clock)
    async with running(app) as client:
        created = BASE - timedelta(days=(today - since).days)
        await send(infra, CRM_CUSTOMERS, profile(customer, email=address, locale="zh-CN", version=2, at=created))
        await send(infra, CRM_TIER_CHANGES, tier_change(customer, "value_tier", None, "high", "initial"))
        await eventually(lambda: _tiered(app, customer))
        clock.set(BASE)
        await app.state.scheduler.tick()
        await app.state.scheduler.tick()  # the day's run is done: nothing more
        history = await _history(client, customer)
    [mail] = sink.to(address)
    assert mail["Subject"] == "邀请您为我们打分"
    assert link_in(mail)["survey"] == "satisfaction:180:1"
    assert [(h["dedupe_key"], h["status"]) for h in history] == [(f"satisfaction_survey:180:1:{customer}", "sent")]


async def _sent_template(client: Any, customer: str, template: str) -> bool:
    return any(h["template"] == template and h["status"] == "sent" for h in await _history(client, customer))


async def _tiered(app: Any, customer: str) -> bool:
    found = await app.state.repo.profile(customer)
    return found is not None and found.known and found.value_tier == "high"
