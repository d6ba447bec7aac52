"""What each event and each day asks to send, and under which dedupe key."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.notifications.calendar import holidays_on
from services.notifications.domain import Profile, birthday_on, daily_requests, follow_up_due, return_visit
from services.notifications.triggers import (
    complaint_requests,
    grace_warning_request,
    referral_request,
    referred_request,
    tier_request,
    welcome_request,
)
from services.notifications.settings import NotificationsSettings
from shared.contract import parse_event
from tests.helpers import envelope

SETTINGS = NotificationsSettings()
WHEN = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)


def event(event_type: str, data: dict[str, Any], subject: str = "C-10001") -> Any:
    import json

    return parse_event(json.dumps(envelope(event_type, subject, data, time_=WHEN)).encode())


def tier(dimension: str, previous: str | None, current: str, direction: str, **kw: Any) -> Any:
    return event("customer.tier.changed", {
        "dimension": dimension, "previous": previous, "current": current, "direction": direction,
        "reason": "spend_12m below 5000; spend 800 more to keep high", "policy_version": "v1",
        "effective_at": WHEN.isoformat(), "metrics": {"currency": "CNY", "spend_12m": "4200.00", "orders_12m": 3},
        **kw})


@pytest.mark.parametrize(("change", "expected"), [
    (("value_tier", "medium", "high", "upgrade"), "tier_upgrade"),
    (("vip", "regular", "vip", "upgrade"), "vip_welcome"),
    (("vip", None, "vip", "initial"), "vip_welcome"),
    (("value_tier", "high", "medium", "downgrade"), "tier_downgrade"),
    (("loyalty", "general", "churn_risk", "downgrade"), "win_back"),
    (("lifecycle", "churned", "reactivated", "upgrade"), "welcome_back"),
    (("value_tier", None, "low", "initial"), None),
    (("rfm_segment", "Loyal", "Champions", "upgrade"), None),
])
def test_each_tier_change_asks_for_its_own_message(change: tuple[str, str | None, str, str],
                                                   expected: str | None) -> None:
    request = tier_request(tier(*change))
    assert (request.template if request else None) == expected


def test_a_downgrade_notice_says_what_is_needed_to_get_back_in_the_customers_currency() -> None:
    request = tier_request(tier("value_tier", "high", "medium", "downgrade", spend_needed="800.00"))
    assert request is not None
    assert (request.params["amount"], request.params["currency"]) == ("800.00", "CNY")
    # The rule's own reason, written for staff, never reaches the message.
    assert "spend 800 more" not in str(request.params)
    unknown = tier_request(tier("value_tier", "high", "medium", "downgrade"))
    assert unknown is not None and "amount" not in unknown.params


def test_a_bulk_tier_change_sends_nothing() -> None:
    assert tier_request(tier("value_tier", "medium", "high", "upgrade", bulk=True)) is None


def test_a_tier_change_noticed_again_at_another_moment_gives_the_same_dedupe_key() -> None:
    # After a restart tiering may notice the same transition later, from another batch: it repeats
    # the transition's id, with another effective_at.
    first = tier("value_tier", "medium", "high", "upgrade")
    again = tier("value_tier", "low", "high", "upgrade", effective_at=(WHEN + timedelta(days=3)).isoformat())
    again = again.model_copy(update={"id": first.id})
    a, b = tier_request(first), tier_request(again)
    assert a is not None and b is not None and a.dedupe_key == b.dedupe_key


def test_a_later_arrival_at_the_same_tier_is_a_new_message() -> None:
    a = tier_request(tier("value_tier", "medium", "high", "upgrade"))
    b = tier_request(tier("value_tier", "medium", "high", "upgrade"))  # another id: the second arrival
    assert a is not None and b is not None and a.dedupe_key != b.dedupe_key


def complaint(kind: str, **data: Any) -> Any:
    return event(f"complaint.{kind}", {"complaint_id": "CP-1", "status": "received", "priority": "p2", **data})


def test_an_opened_complaint_is_acknowledged_with_its_expected_response_time() -> None:
    due = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    [request] = complaint_requests(complaint("opened", first_response_due_at=due.isoformat()),
                                   survey_delay=timedelta(hours=24))
    assert request.template == "complaint_acknowledged" and request.transactional
    assert request.params["due_at"] == due.isoformat()


def test_a_resolution_sends_a_notice_now_and_a_survey_a_day_later() -> None:
    notice, survey = complaint_requests(complaint("resolved", status="resolved"), survey_delay=timedelta(hours=24))
    assert notice.template == "complaint_resolved" and notice.not_before is None
    assert survey.template == "complaint_survey" and survey.not_before == WHEN + timedelta(hours=24)


def test_a_breach_brings_an_apology_and_an_assignment_brings_nothing() -> None:
    [apology] = complaint_requests(complaint("sla_breached", sla_target="first_response"),
                                   survey_delay=timedelta(hours=24))
    assert apology.template == "complaint_apology"
    assert complaint_requests(complaint("assigned", assignee="agent-7"), survey_delay=timedelta(hours=24)) == []


def profile_event(version: int = 1, created: datetime = WHEN) -> Any:
    return event("customer.profile.changed", {"name": "Li", "version": version, "created_at": created.isoformat()})


def test_a_new_registration_is_welcomed_once_and_an_update_or_old_profile_is_not() -> None:
    request = welcome_request(profile_event(), now=WHEN, max_age=timedelta(days=7))
    assert request is not None and request.dedupe_key == "welcome:C-10001"
    assert welcome_request(profile_event(version=2), now=WHEN, max_age=timedelta(days=7)) is None
    old = profile_event(created=WHEN - timedelta(days=30))
    assert welcome_request(old, now=WHEN, max_age=timedelta(days=7)) is None


def test_a_29_february_birthday_is_kept_on_28_february_in_common_years_only() -> None:
    leapling = date(2000, 2, 29)
    assert birthday_on(leapling, date(2027, 2, 28))
    assert not birthday_on(leapling, date(2028, 2, 28))
    assert birthday_on(leapling, date(2028, 2, 29))
    assert not birthday_on(date(1990, 2, 28), date(2028, 2, 29))


def test_follow_ups_follow_the_cadence_of_the_customers_tier() -> None:
    vip = Profile("C-1", vip="vip", value_tier="high", since=date(2027, 1, 1))
    cadence = {"vip": 30, "high": 90}
    assert follow_up_due(vip, date(2027, 1, 31), cadence) == 30
    assert follow_up_due(vip, date(2027, 2, 1), cadence) is None
    high = Profile("C-2", value_tier="high", since=date(2027, 1, 1))
    assert follow_up_due(high, date(2027, 1, 31), cadence) is None
    assert follow_up_due(high, date(2027, 4, 1), cadence) == 90
    assert follow_up_due(Profile("C-3", value_tier="low", since=date(2027, 1, 1)), date(2027, 4, 1), cadence) is None


def test_a_managed_customers_follow_up_is_a_return_visit_for_their_manager_not_a_message() -> None:
    cadence = {"vip": 30, "high": 90, "managed": 60}
    managed = Profile("C-1", value_tier="high", since=date(2026, 1, 1), account_manager="am-xu")
    day = date(2026, 3, 2)  # 60 days on
    assert follow_up_due(managed, day, cadence) == 60
    assert [r.family for r in daily_requests(managed, day, [], cadence=cadence, country="CN", run_id="r")] == []
    visit = return_visit(managed, day, cadence=cadence, now=WHEN)
    assert visit is not None and visit.type == "care.return_visit.due" and visit.subject == "C-1"
    assert visit.data.model_dump() == {"visit_id": "return_visit:2026-03-02:C-1", "due_on": day, "cadence_days": 60,
                                       "manager_id": "am-xu"}
    # Run again (a day's run cut short and done again): the same visit under the same event id.
    again = return_visit(managed, day, cadence=cadence, now=WHEN + timedelta(hours=3))
    assert again is not None and again.id == visit.id
    parse_event(visit.model_dump_json().encode())  # on the contract
    # Not on other days; without "managed" in the cadence, the tier's cadence applies.
    assert return_visit(managed, day + timedelta(days=1), cadence=cadence, now=WHEN) is None
    assert follow_up_due(managed, date(2026, 4, 1), {"high": 90}) == 90
    # A customer without a manager: the follow-up message, and no visit.
    unmanaged = Profile("C-2", vip="vip", since=date(2026, 1, 1))
    assert return_visit(unmanaged, date(2026, 1, 31), cadence=cadence, now=WHEN) is None
    assert [r.family for r in daily_requests(unmanaged, date(2026, 1, 31), [], cadence=cadence, country="CN",
                                             run_id="r")] == ["follow_up"]


def test_a_holiday_request_has_a_deterministic_key_per_country_holiday_year_and_customer() -> None:
    profile = Profile("C-10001", birthday=date(1990, 2, 6))
    requests = daily_requests(profile, date(2027, 2, 6), ["spring_festival"], cadence={}, country="CN", run_id="r")
    assert {r.dedupe_key for r in requests} == {"holiday:CN:spring_festival:2027:C-10001", "birthday:2027:C-10001"}


@pytest.mark.parametrize(("day", "slug"), [
    (date(2026, 2, 17), "spring_festival"), (date(2027, 2, 6), "spring_festival"),
    (date(2026, 9, 25), "mid_autumn"), (date(2027, 9, 15), "mid_autumn"),
    (date(2026, 10, 1), "national_day"), (date(2027, 10, 1), "national_day"),
])
def test_chinese_holidays_fall_on_their_lunar_and_fixed_dates(day: date, slug: str) -> None:
    assert holidays_on(day, "CN", selection=SETTINGS.holiday_selection, extra=SETTINGS.extra_holidays) == [slug]


def test_a_several_day_holiday_is_greeted_on_its_first_day_only_and_other_chinese_holidays_not_at_all() -> None:
    kw = {"selection": SETTINGS.holiday_selection, "extra": SETTINGS.extra_holidays}
    assert holidays_on(date(2027, 2, 7), "CN", **kw) == []
    assert holidays_on(date(2027, 10, 2), "CN", **kw) == []
    assert holidays_on(date(2027, 6, 9), "CN", **kw) == []  # Dragon Boat: not in the selection


def test_other_countries_get_their_own_holidays_and_christmas_comes_from_the_configured_list_in_china() -> None:
    kw = {"selection": SETTINGS.holiday_selection, "extra": SETTINGS.extra_holidays}
    assert holidays_on(date(2027, 7, 4), "US", **kw) == ["independence_day"]
    assert holidays_on(date(2027, 10, 3), "DE", **kw) == ["german_unity_day"]
    assert holidays_on(date(2027, 12, 25), "CN", **kw) == ["christmas"]
    assert holidays_on(date(2027, 12, 25), "US", **kw) == ["christmas_day"]


def test_a_referral_thanks_the_referrer_once_per_customer_referred_and_other_interactions_send_nothing() -> None:
    def interaction(kind: str, referred: str | None, interaction_id: str) -> Any:
        return event("customer.interaction.recorded", {"interaction_id": interaction_id, "kind": kind,
                                                       "channel": "app", "direction": "inbound",
                                                       **({"referred_customer_id": referred} if referred else {})})

    first = referral_request(interaction("referral", "C-20001", "I-1"))
    told_again = referral_request(interaction("referral", "C-20001", "I-2"))
    another = referral_request(interaction("referral", "C-20002", "I-3"))
    assert first is not None and told_again is not None and another is not None
    assert (first.customer_id, first.template, first.family) == ("C-10001", "referral_thanks", "referral")
    assert first.dedupe_key == told_again.dedupe_key != another.dedupe_key
    assert referral_request(interaction("call", None, "I-4")) is None


def test_a_registration_naming_its_referrer_thanks_them_under_the_same_key_as_the_referral_itself() -> None:
    profile = event("customer.profile.changed", {"name": "N", "status": "active", "version": 1,
                                                 "referred_by": "C-30001"}, subject="C-20001")
    told = event("customer.interaction.recorded", {"interaction_id": "I-9", "kind": "referral", "channel": "app",
                                                   "direction": "inbound", "referred_customer_id": "C-20001"},
                 subject="C-30001")
    thanks = referred_request(profile, now=profile.time, max_age=timedelta(days=2))
    assert thanks is not None and thanks.customer_id == "C-30001"
    assert thanks.dedupe_key == referral_request(told).dedupe_key  # type: ignore[union-attr]
    # A profile read again long after (a new deployment reading the compacted topic) thanks nobody.
    assert referred_request(profile, now=profile.time + timedelta(days=30), max_age=timedelta(days=2)) is None


def test_a_tier_in_its_grace_period_is_warned_once_per_grace_period_and_not_once_it_is_over() -> None:
    def snapshot(below_since: datetime, needed: str | None, effective: datetime) -> Any:
        pending = {"current": "high", "pending": "medium", "below_since": below_since.isoformat(),
                   "effective_at": effective.isoformat(), "needed": "net spend of at least 20000.00 CNY",
                   **({"spend_needed": needed, "currency": "CNY"} if needed else {})}
        return event("customer.classification", {"value_tier": "high", "policy_version": "v1",
                                                  "metrics": {"currency": "CNY", "spend_12m": "19200.00", "orders_12m": 3},
                                                  "updated_at": WHEN.isoformat(),
                                                  "downgrade_pending": {"value_tier": pending}})

    since, due = WHEN - timedelta(days=1), WHEN + timedelta(days=29)
    warning = grace_warning_request(snapshot(since, "800.00", due), now=WHEN)
    again = grace_warning_request(snapshot(since, "500.00", due), now=WHEN + timedelta(days=3))
    later = grace_warning_request(snapshot(since + timedelta(days=60), "800.00", due + timedelta(days=60)), now=WHEN)
    assert warning is not None and again is not None and later is not None
    assert warning.template == "tier_grace_warning" and warning.params["amount"] == "800.00"
    assert warning.params["keep_by_at"] == due.isoformat() and warning.params["tier"] == "high"
    assert warning.dedupe_key == again.dedupe_key != later.dedupe_key  # one per grace period
    assert grace_warning_request(snapshot(since, "800.00", due), now=due) is None  # too late to keep it
    assert grace_warning_request(snapshot(since, None, due), now=WHEN) is None  # no spend line to name
