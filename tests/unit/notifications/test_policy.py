"""The policy pipeline, rule by rule, with an injected time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.notifications.domain import (
    Defer,
    Policy,
    Profile,
    Request,
    Send,
    Suppress,
    SuppressionEntry,
    decide,
    decide_many,
    quiet_until,
)

POLICY = Policy()
NOON_SHANGHAI = datetime(2027, 3, 10, 4, 0, tzinfo=UTC)  # 12:00 in Asia/Shanghai


def customer(**kw: object) -> Profile:
    base: dict[str, object] = {
        "customer_id": "C-1", "name": "Li", "email": "li@example.com", "phone": "+8613800138000",
        "timezone": "Asia/Shanghai", "preferred_channel": "email",
        "consents": {"care_messages": True, "email": True, "sms": True},
    }
    base.update(kw)
    return Profile(**base)  # type: ignore[arg-type]


def care(family: str = "holiday", key: str = "k1", customer_id: str = "C-1") -> Request:
    return Request(customer_id, family, family, family, key, "src")  # type: ignore[arg-type]


def complaint(key: str = "c1") -> Request:
    return Request("C-1", "complaint", "complaint_resolved", "complaint_resolved", key, "src", {"complaint_id": "X"})


def test_a_care_message_without_care_consent_is_suppressed_for_no_consent() -> None:
    profile = customer(consents={"email": True, "sms": True})
    assert decide(care(), profile, now=NOON_SHANGHAI, policy=POLICY) == Suppress("no_consent")


def test_a_care_message_goes_only_to_channels_the_customer_consented_to() -> None:
    profile = customer(consents={"care_messages": True, "email": False, "sms": True})
    assert decide(care(), profile, now=NOON_SHANGHAI, policy=POLICY) == Send(("sms",))


def test_a_complaint_message_is_transactional_and_needs_no_consent() -> None:
    profile = customer(consents={"care_messages": False, "email": False, "sms": False})
    assert decide(complaint(), profile, now=NOON_SHANGHAI, policy=POLICY) == Send(("email", "sms"))


def test_a_customer_without_any_contact_is_suppressed_for_no_contact() -> None:
    profile = customer(email=None, phone=None)
    assert decide(complaint(), profile, now=NOON_SHANGHAI, policy=POLICY) == Suppress("no_contact")
    assert decide(care(), profile, now=NOON_SHANGHAI, policy=POLICY) == Suppress("no_contact")


def test_a_message_for_a_customer_whose_profile_has_not_arrived_waits_for_it() -> None:
    awaiting = Defer(NOON_SHANGHAI + timedelta(minutes=1), reason="awaiting_profile")
    assert decide(care(), None, now=NOON_SHANGHAI, policy=POLICY) == awaiting
    assert decide(complaint(), None, now=NOON_SHANGHAI, policy=POLICY) == awaiting
    # Known from a tier change alone: its contact details are still to come.
    assert decide(care(), customer(known=False), now=NOON_SHANGHAI, policy=POLICY) == awaiting


def test_the_wait_for_a_profile_doubles_up_to_a_limit_and_ends_in_no_contact() -> None:
    asked = NOON_SHANGHAI
    request = replace(care(), asked_at=asked)
    now, looks = asked, []
    while isinstance(decision := decide(request, None, now=now, policy=POLICY), Defer):
        looks.append(int((decision.until - asked).total_seconds() // 60))
        now = decision.until
    assert looks == [1, 2, 4, 8, 16, 31, 46, 60]
    assert decision == Suppress("no_contact")
    assert now == asked + POLICY.profile_wait


def test_once_the_profile_has_arrived_the_waiting_message_is_sent() -> None:
    request = replace(care(), asked_at=NOON_SHANGHAI)
    assert decide(request, customer(), now=NOON_SHANGHAI + timedelta(minutes=2), policy=POLICY) == \
        Send(("email", "sms"))


def test_the_suppression_list_stops_care_messages_but_not_complaint_messages() -> None:
    entries = [SuppressionEntry(kind="customer", value="C-1")]
    assert decide(care(), customer(), now=NOON_SHANGHAI, policy=POLICY, suppressions=entries) == \
        Suppress("suppression_list")
    assert isinstance(decide(complaint(), customer(), now=NOON_SHANGHAI, policy=POLICY, suppressions=entries), Send)


def test_a_suppressed_address_removes_only_its_channel_and_a_hard_stop_covers_complaints() -> None:
    by_address = [SuppressionEntry(kind="email", value="li@example.com")]
    assert decide(care(), customer(), now=NOON_SHANGHAI, policy=POLICY, suppressions=by_address) == Send(("sms",))
    hard = [SuppressionEntry(kind="customer", value="C-1", all_messages=True)]
    assert decide(complaint(), customer(), now=NOON_SHANGHAI, policy=POLICY, suppressions=hard) == \
        Suppress("suppression_list")


def test_the_preferred_channel_comes_first_then_the_fallback_order() -> None:
    assert decide(care(), customer(preferred_channel="email"), now=NOON_SHANGHAI, policy=POLICY) == \
        Send(("email", "sms"))
    assert decide(care(), customer(preferred_channel=None), now=NOON_SHANGHAI, policy=POLICY) == \
        Send(("sms", "email"))


def test_a_message_at_22_local_is_deferred_across_midnight_to_9_the_next_morning() -> None:
    at_22 = datetime(2027, 3, 10, 14, 0, tzinfo=UTC)  # 22:00 Shanghai
    decision = decide(care(), customer(), now=at_22, policy=POLICY)
    assert decision == Defer(datetime(2027, 3, 11, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai")))


def test_a_message_at_3_local_is_deferred_to_9_the_same_morning() -> None:
    at_3 = datetime(2027, 3, 9, 19, 0, tzinfo=UTC)  # 03:00 on 10 March in Shanghai
    assert decide(care(), customer(), now=at_3, policy=POLICY) == \
        Defer(datetime(2027, 3, 10, 1, 0, tzinfo=UTC))


def test_quiet_hours_follow_the_customers_own_time_zone() -> None:
    # 12:00 in Shanghai is 23:00 the evening before in New York.
    assert isinstance(decide(care(), customer(), now=NOON_SHANGHAI, policy=POLICY), Send)
    new_yorker = customer(timezone="America/New_York")
    decision = decide(care(), new_yorker, now=NOON_SHANGHAI, policy=POLICY)
    assert decision == Defer(datetime(2027, 3, 10, 9, 0, tzinfo=ZoneInfo("America/New_York")))


def test_quiet_hours_defer_to_9_local_on_the_day_daylight_saving_starts() -> None:
    ny = ZoneInfo("America/New_York")
    until = quiet_until(datetime(2027, 3, 14, 1, 30, tzinfo=ny), ny, time(21), time(9))
    assert until == datetime(2027, 3, 14, 13, 0, tzinfo=UTC)  # 09:00 EDT


def test_quiet_hours_that_do_not_cross_midnight_also_defer() -> None:
    tz = ZoneInfo("Europe/Berlin")
    assert quiet_until(datetime(2027, 1, 5, 13, 0, tzinfo=tz), tz, time(12), time(14)) == \
        datetime(2027, 1, 5, 14, 0, tzinfo=tz)
    assert quiet_until(datetime(2027, 1, 5, 15, 0, tzinfo=tz), tz, time(12), time(14)) is None


def test_at_night_a_complaint_message_goes_by_email_but_never_by_sms_and_a_care_message_waits() -> None:
    at_23 = datetime(2027, 3, 10, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
    morning = Defer(datetime(2027, 3, 11, 1, 0, tzinfo=UTC))
    # E-mail first, and no SMS fallback at night: a failed e-mail must not turn into a text at 23:00.
    assert decide(complaint(), customer(), now=at_23, policy=POLICY) == Send(("email",))
    assert decide(complaint(), customer(preferred_channel="sms"), now=at_23, policy=POLICY) == Send(("email",))
    assert decide(complaint(), customer(email=None), now=at_23, policy=POLICY) == morning  # SMS only: waits
    assert decide(care(), customer(), now=at_23, policy=POLICY) == morning


def test_the_frequency_cap_suppresses_a_third_care_message_in_seven_days() -> None:
    assert isinstance(decide(care(), customer(), now=NOON_SHANGHAI, policy=POLICY, recent_care=1), Send)
    assert decide(care(), customer(), now=NOON_SHANGHAI, policy=POLICY, recent_care=2) == Suppress("frequency_cap")


def test_complaint_messages_are_exempt_from_the_frequency_cap() -> None:
    assert isinstance(decide(complaint(), customer(), now=NOON_SHANGHAI, policy=POLICY, recent_care=9), Send)


def test_when_capped_the_birthday_wins_over_the_holiday_and_the_follow_up() -> None:
    requests = [care("follow_up", "f"), care("holiday", "h"), care("birthday", "b")]
    decided = dict((r.dedupe_key, d) for r, d in decide_many(
        requests, {"C-1": customer()}, now=NOON_SHANGHAI, policy=POLICY, suppressions={}, recent_care={"C-1": 1}))
    assert isinstance(decided["b"], Send)
    assert decided["h"] == Suppress("frequency_cap")
    assert decided["f"] == Suppress("frequency_cap")


def test_a_tier_message_takes_the_last_slot_before_a_birthday() -> None:
    requests = [care("birthday", "b"), care("tier", "t")]
    decided = dict((r.dedupe_key, d) for r, d in decide_many(
        requests, {"C-1": customer()}, now=NOON_SHANGHAI, policy=POLICY, suppressions={}, recent_care={"C-1": 1}))
    assert isinstance(decided["t"], Send)
    assert decided["b"] == Suppress("frequency_cap")


def test_the_cap_is_counted_per_customer() -> None:
    requests = [care("holiday", "a", "C-1"), care("holiday", "b", "C-2")]
    profiles = {"C-1": customer(), "C-2": customer(customer_id="C-2")}
    decided = decide_many(requests, profiles, now=NOON_SHANGHAI, policy=POLICY, suppressions={},
                          recent_care={"C-1": 2})
    assert [type(d) for _, d in decided] == [Suppress, Send]


def test_a_survey_waits_until_its_time_without_being_reported_as_suppressed() -> None:
    later = NOON_SHANGHAI + timedelta(hours=2)
    survey = Request("C-1", "complaint", "complaint_survey", "complaint_survey", "s", "src", not_before=later)
    assert decide(survey, customer(), now=NOON_SHANGHAI, policy=POLICY) == Defer(later, reason="scheduled")
    assert isinstance(decide(survey, customer(), now=later, policy=POLICY), Send)


REPEATING = replace(POLICY, repeat_after={"win_back": timedelta(days=90)})


def win_back(key: str, tier: str = "churn_risk") -> Request:
    return Request("C-1", "tier", "win_back", "win_back", key, f"src-{key}", {"tier": tier})


def test_the_same_message_within_its_repeat_window_is_suppressed_as_a_duplicate_whatever_asked_for_it() -> None:
    sent = NOON_SHANGHAI - timedelta(days=89)
    assert decide(win_back("second"), customer(), now=NOON_SHANGHAI, policy=REPEATING,
                  last_same=sent) == Suppress("duplicate")
    assert isinstance(decide(win_back("second"), customer(), now=NOON_SHANGHAI, policy=REPEATING,
                             last_same=NOON_SHANGHAI - timedelta(days=91)), Send)
    # Without a window for the trigger, a second arrival is a new message.
    assert isinstance(decide(win_back("second"), customer(), now=NOON_SHANGHAI, policy=POLICY, last_same=sent), Send)


def test_of_two_same_messages_in_one_batch_the_first_goes_and_another_tier_is_another_message() -> None:
    requests = [win_back("a"), win_back("b"), win_back("c", tier="lapsed")]
    decided = dict((r.dedupe_key, d) for r, d in decide_many(
        requests, {"C-1": customer()}, now=NOON_SHANGHAI, policy=replace(REPEATING, frequency_cap=9),
        suppressions={}, recent_care={}))
    assert isinstance(decided["a"], Send)
    assert decided["b"] == Suppress("duplicate")
    assert isinstance(decided["c"], Send)


def test_a_same_message_the_store_remembers_stops_the_batchs_one() -> None:
    decided = decide_many([win_back("a")], {"C-1": customer()}, now=NOON_SHANGHAI, policy=REPEATING,
                          suppressions={}, recent_care={},
                          last_sent={("C-1", "win_back:churn_risk"): NOON_SHANGHAI - timedelta(days=3)})
    assert [d for _, d in decided] == [Suppress("duplicate")]


def test_a_prospect_without_contacts_waits_for_its_registration_and_one_with_an_address_is_sent() -> None:
    stub = customer(email=None, phone=None, prospect=True)
    decision = decide(care("tier"), stub, now=NOON_SHANGHAI, policy=POLICY)
    assert isinstance(decision, Defer) and decision.reason == "awaiting_profile"
    # Never registered: after the wait there is nobody to reach.
    late = replace(care("tier"), asked_at=NOON_SHANGHAI - POLICY.profile_wait)
    assert decide(late, stub, now=NOON_SHANGHAI, policy=POLICY) == Suppress("no_contact")
    assert isinstance(decide(care("tier"), customer(prospect=True), now=NOON_SHANGHAI, policy=POLICY), Send)
    # A registered customer without contacts is not waited for.
    assert decide(care("tier"), customer(email=None, phone=None), now=NOON_SHANGHAI, policy=POLICY) == Suppress(
        "no_contact")
