"""Complaint rules: priority and policies, the state machine, SLA timers, escalation, satisfaction."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.complaints import domain
from services.complaints.calendar import BusinessCalendar, parse_periods
from services.complaints.domain import Complaint, DomainError, InvalidTransition, Rules
from services.complaints.policy import DEFAULT_POLICIES, SlaPolicy, match_policy, priority_for

SHANGHAI = ZoneInfo("Asia/Shanghai")
RULES = Rules(calendar=BusinessCalendar("Asia/Shanghai", parse_periods("09:00-12:00,13:30-18:00"), country="CN"),
              policies=DEFAULT_POLICIES, policy_version="2026.1")
#: Monday 2 March 2026, 09:00 in Shanghai: an ordinary working day.
MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)
FIELDS = {"channel": "phone", "category": "delivery", "severity": "normal", "complexity": "standard",
          "subject": "Parcel late", "description": "It has not arrived"}


def opened(tier: str | None = None, rules: Rules = RULES, **fields: str) -> Complaint:
    complaint, emits = domain.open_complaint(complaint_id="K1", customer_id="C1", fields={**FIELDS, **fields},
                                             tier=tier, opened_at=MONDAY, rules=rules, source="e1")
    assert [e.kind for e in emits] == ["opened"]
    return complaint


def go(complaint: Complaint, *path: str, at: datetime = MONDAY, rules: Rules = RULES, actor: str = "ann") -> Complaint:
    for to in path:
        extra = {"resolution_summary": "Refunded", "root_cause": "logistics"} if to == "resolved" else {}
        complaint, _ = domain.transition(complaint, to, now=at, rules=rules, actor=actor, **extra)
    return complaint


def at(hours: float) -> datetime:
    return MONDAY + timedelta(hours=hours)


# --- Priority and policies ----------------------------------------------------------------------

def test_a_regular_customers_normal_complaint_is_p3_on_the_standard_policy() -> None:
    complaint = opened()
    assert complaint.priority == "p3"
    assert complaint.sla_policy == "standard@2026.1"
    assert complaint.first_response_due_at == MONDAY + timedelta(hours=24)
    # 3 working days of 7.5 h from Monday 09:00 end Wednesday 18:00.
    assert complaint.resolution_due_at == datetime(2026, 3, 4, 18, 0, tzinfo=SHANGHAI)


def test_a_vip_gets_a_higher_priority_and_shorter_targets() -> None:
    complaint = opened(tier="vip")
    assert complaint.priority == "p2"
    assert complaint.customer_tier == "vip"
    assert complaint.sla_policy == "preferred@2026.1"
    assert complaint.first_response_due_at == MONDAY + timedelta(hours=4)
    assert complaint.resolution_due_at == datetime(2026, 3, 3, 18, 0, tzinfo=SHANGHAI)
    assert complaint.resolution_due_at < opened().resolution_due_at


def test_a_high_value_customer_rises_one_level_and_p1_stays_p1() -> None:
    assert priority_for("normal", "high") == "p2"
    assert priority_for("critical", "vip") == "p1"
    assert priority_for("low", "low") == "p4"


def test_a_complex_case_gets_seven_working_days_and_a_periodic_update_target() -> None:
    complaint = opened(complexity="complex")
    assert complaint.sla_policy == "complex@2026.1"
    assert complaint.targets == {"first_response": "24h", "update": "2wd", "resolution": "7wd"}
    # 7 working days from Monday 2 March end Tuesday 10 March 18:00.
    assert complaint.resolution_due_at == datetime(2026, 3, 10, 18, 0, tzinfo=SHANGHAI)
    assert complaint.update_due_at is None  # starts with the first response
    acknowledged = go(complaint, "acknowledged", at=at(1))
    assert acknowledged.update_due_at == datetime(2026, 3, 4, 10, 0, tzinfo=SHANGHAI)


def test_the_first_matching_policy_wins_and_the_catch_all_takes_the_rest() -> None:
    policies = (SlaPolicy(name="billing", categories=frozenset({"billing"}), targets={"resolution": "1wd"}),
                *DEFAULT_POLICIES)
    assert match_policy(policies, priority="p3", category="billing", complexity="standard", tier=None).name == "billing"
    assert match_policy(policies, priority="p3", category="price", complexity="standard", tier=None).name == "standard"
    complaint = opened(rules=replace(RULES, policies=policies, policy_version="v9"), category="billing")
    assert complaint.sla_policy == "billing@v9"
    assert complaint.first_response_due_at is None


# --- State machine ------------------------------------------------------------------------------

VALID_PATHS = {
    "received": (),
    "acknowledged": ("acknowledged",),
    "investigating": ("acknowledged", "investigating"),
    "waiting_on_customer": ("acknowledged", "investigating", "waiting_on_customer"),
    "waiting_on_third_party": ("acknowledged", "investigating", "waiting_on_third_party"),
    "resolved": ("acknowledged", "investigating", "resolved"),
    "closed": ("acknowledged", "investigating", "resolved", "closed"),
}
INVALID = [(frm, to) for frm in VALID_PATHS for to in VALID_PATHS if to not in domain.TRANSITIONS[frm]]


@pytest.mark.parametrize(("current", "target"), INVALID, ids=[f"{a}->{b}" for a, b in INVALID])
def test_every_invalid_transition_is_refused_with_the_allowed_ones(current: str, target: str) -> None:
    complaint = go(opened(), *VALID_PATHS[current])
    assert complaint.status == current
    with pytest.raises(InvalidTransition) as caught:
        domain.transition(complaint, target, now=at(1), rules=RULES, actor="ann",
                          resolution_summary="x", root_cause="other")
    assert caught.value.allowed == domain.TRANSITIONS[current]


def test_acknowledging_meets_the_first_response_target_and_publishes_acknowledged() -> None:
    complaint, emits = domain.transition(opened(), "acknowledged", now=at(2), rules=RULES, actor="ann")
    assert [e.kind for e in emits] == ["acknowledged"]
    assert complaint.first_response_at == at(2)
    assert complaint.first_response_due_at is None
    assert [e.met for e in complaint.timers if e.kind == "fulfilled"] == [True]


def test_resolving_needs_a_summary_and_a_root_cause() -> None:
    complaint = go(opened(), "acknowledged", "investigating")
    with pytest.raises(DomainError) as caught:
        domain.transition(complaint, "resolved", now=at(1), rules=RULES, actor="ann", resolution_summary="Done")
    assert caught.value.code == "resolution_incomplete"


def test_with_verification_on_the_resolver_cannot_verify_and_an_unverified_complaint_cannot_close() -> None:
    rules = replace(RULES, verification=True)
    resolved = go(opened(rules=rules), "acknowledged", "investigating", "resolved", rules=rules, actor="ann")
    with pytest.raises(DomainError) as caught:
        domain.verify(resolved, "ann", now=at(1), rules=rules)
    assert caught.value.code == "verifier_is_resolver"
    with pytest.raises(DomainError) as caught:
        go(resolved, "closed", rules=rules)
    assert caught.value.code == "verification_required"
    verified, _ = domain.verify(resolved, "bob", now=at(1), rules=rules)
    assert go(verified, "closed", rules=rules).status == "closed"


def test_without_verification_the_resolver_may_close() -> None:
    resolved = go(opened(), "acknowledged", "investigating", "resolved", actor="ann")
    assert go(resolved, "closed", actor="ann").status == "closed"


def test_assignment_names_the_handler_and_publishes_assigned() -> None:
    complaint, emits = domain.assign(opened(), "bob", now=at(1), rules=RULES)
    assert complaint.assignee == "bob"
    assert emits[0].kind == "assigned" and emits[0].changes == {"assignee": [None, "bob"]}


def test_reopening_within_thirty_days_restarts_the_resolution_clock() -> None:
    resolved = go(opened(), "acknowledged", "investigating", "resolved", at=at(2))
    later = at(2) + timedelta(days=29)
    complaint, emits = domain.reopen(resolved, now=later, rules=RULES, reason="customer_request")
    assert complaint.status == "investigating" and complaint.reopen_count == 1
    assert [e.kind for e in emits] == ["reopened"]
    assert complaint.resolution_due_at is not None and complaint.resolution_due_at > later


def test_after_thirty_days_a_complaint_cannot_be_reopened_and_linked_fields_carry_over() -> None:
    closed = go(opened(), "acknowledged", "investigating", "resolved", "closed", at=at(2))
    too_late = at(2) + timedelta(days=31)
    assert not domain.can_reopen(closed, too_late, RULES)
    with pytest.raises(DomainError) as caught:
        domain.reopen(closed, now=too_late, rules=RULES, reason="customer_request")
    assert caught.value.code == "reopen_window_passed"
    assert domain.linked_fields(closed)["category"] == "delivery"


# --- SLA timers ---------------------------------------------------------------------------------

def test_waiting_on_the_customer_pauses_the_clock_and_investigating_resumes_it() -> None:
    complaint = go(opened(), "acknowledged", "investigating", at=at(1))
    due_before = complaint.resolution_due_at
    paused = go(complaint, "waiting_on_customer", at=at(2))  # Monday 11:00
    assert paused.resolution_due_at is None
    assert [e.kind for e in paused.timers if e.target == "resolution"] == ["started", "paused"]
    # Nothing is due while paused, however long the customer takes.
    assert domain.tick(paused, now=at(24 * 10), rules=RULES)[1] == []
    # Resumed on Tuesday 09:00: the 5.5 working hours from Monday 11:00 do not count, so the target
    # moves from Wednesday 18:00 to Thursday 16:00.
    resumed = go(paused, "investigating", at=datetime(2026, 3, 3, 9, 0, tzinfo=SHANGHAI))
    assert [e.kind for e in resumed.timers if e.target == "resolution"] == ["started", "paused", "resumed"]
    assert due_before == datetime(2026, 3, 4, 18, 0, tzinfo=SHANGHAI)
    assert resumed.resolution_due_at == datetime(2026, 3, 5, 16, 0, tzinfo=SHANGHAI)


def test_the_scheduler_tick_warns_at_75_percent_and_breaches_at_the_target() -> None:
    complaint = opened()  # first response due Tuesday 09:00 (24 h), warning at 18 h
    assert complaint.next_check_at == at(18)
    assert domain.tick(complaint, now=at(17.9), rules=RULES)[1] == []
    warned, emits = domain.tick(complaint, now=at(18), rules=RULES)
    assert [(e.kind, e.sla_target) for e in emits] == [("sla_warning", "first_response")]
    assert warned.next_check_at == at(24)
    assert domain.tick(warned, now=at(20), rules=RULES)[1] == []  # warned once only
    breached, emits = domain.tick(warned, now=at(24), rules=RULES)
    assert [(e.kind, e.sla_target) for e in emits] == [("sla_breached", "first_response"), ("escalated", None)]
    assert breached.breached
    assert breached.escalation_level == 1 and breached.priority == "p2"
    assert emits[1].changes["escalated_to"] == "supervisor"
    assert domain.tick(breached, now=at(25), rules=RULES)[1] == []  # breached once only


def test_a_late_scheduler_emits_both_warning_and_breach_with_their_own_times() -> None:
    complaint, emits = domain.tick(opened(), now=at(30), rules=RULES)
    assert [e.kind for e in emits] == ["sla_warning", "sla_breached", "escalated"]
    assert [(e.kind, e.at) for e in complaint.timers if e.kind in ("warned", "breached")] == [
        ("warned", at(18)), ("breached", at(24))]


def test_breaches_climb_the_ladder_from_handler_to_supervisor_to_manager_and_stop() -> None:
    complaint = opened()
    levels = []
    for _ in range(3):
        complaint, emits = domain.escalate(complaint, now=at(1), reason="test")
        levels.append((complaint.escalation_level, complaint.priority, len(emits)))
    assert levels == [(1, "p2", 1), (2, "p1", 1), (2, "p1", 0)]


def test_a_first_response_after_the_target_is_recorded_as_missed() -> None:
    complaint = go(opened(), "acknowledged", at=at(30))
    assert [e.met for e in complaint.timers if e.kind == "fulfilled"] == [False]


def test_a_resolved_complaint_closes_itself_after_the_configured_days() -> None:
    resolved = go(opened(), "acknowledged", "investigating", "resolved", at=at(2))
    assert resolved.next_check_at == at(2) + timedelta(days=7)
    closed, emits = domain.tick(resolved, now=at(2) + timedelta(days=7), rules=RULES)
    assert closed.status == "closed" and [e.kind for e in emits] == ["closed"]


# --- Satisfaction and erasure -------------------------------------------------------------------

def test_a_good_score_closes_a_resolved_complaint() -> None:
    resolved = go(opened(), "acknowledged", "investigating", "resolved", at=at(2))
    closed, emits = domain.record_feedback(resolved, 5, "thanks", now=at(3), rules=RULES, source="f1")
    assert closed.status == "closed"
    assert [e.kind for e in emits] == ["feedback_received", "closed"]


def test_a_score_of_two_or_less_reopens_or_escalates_as_configured() -> None:
    resolved = go(opened(), "acknowledged", "investigating", "resolved", at=at(2))
    reopened, emits = domain.record_feedback(resolved, 2, "", now=at(3), rules=RULES, source="f1")
    assert reopened.status == "investigating" and [e.kind for e in emits] == ["feedback_received", "reopened"]
    rules = replace(RULES, low_score_action="escalate")
    escalated, emits = domain.record_feedback(resolved, 1, "", now=at(3), rules=rules, source="f1")
    assert escalated.status == "resolved" and escalated.escalation_level == 1
    assert [e.kind for e in emits] == ["feedback_received", "escalated"]


def test_the_same_feedback_twice_counts_once_and_feedback_before_resolution_is_refused() -> None:
    resolved = go(opened(), "acknowledged", "investigating", "resolved", at=at(2))
    once, _ = domain.record_feedback(resolved, 4, "", now=at(3), rules=RULES, source="f1")
    again, emits = domain.record_feedback(once, 4, "", now=at(3), rules=RULES, source="f1")
    assert emits == [] and len(again.feedback) == 1
    with pytest.raises(InvalidTransition):
        domain.record_feedback(opened(), 4, "", now=at(3), rules=RULES, source="f2")


def test_erasure_removes_subject_description_comments_and_feedback_text() -> None:
    complaint, _ = domain.add_comment(opened(), "ann", "Called Ms Li at home", now=at(1), rules=RULES)
    complaint = go(complaint, "acknowledged", "investigating", "resolved")
    complaint, _ = domain.record_feedback(complaint, 4, "My address is ...", now=at(2), rules=RULES, source="f")
    erased = domain.erase_personal_text(complaint)
    assert (erased.subject, erased.description, erased.comments, erased.resolution_summary) == ("", "", [], None)
    assert erased.feedback[0].comment == "" and erased.feedback[0].score == 4
    assert erased.erased
    assert (erased.category, erased.status, erased.root_cause) == ("delivery", "closed", "logistics")


def test_an_operation_leaves_the_complaint_it_was_given_as_it_was() -> None:
    resolved = go(opened(), "acknowledged", "investigating")
    resolved, _ = domain.transition(resolved, "resolved", now=at(30), rules=RULES, actor="ann",
                                    resolution_summary="Refunded", root_cause="logistics")
    for complaint, operation in [
        (opened(), lambda c: domain.tick(c, now=at(100), rules=RULES)),
        (opened(), lambda c: domain.add_comment(c, "ann", "On it", now=at(1), rules=RULES)),
        (resolved, lambda c: domain.record_feedback(c, 1, "Still broken", now=at(31), rules=RULES, source="s1")),
        (resolved, lambda c: domain.erase_personal_text(c)),
    ]:
        before = complaint.model_copy(deep=True)
        result = operation(complaint)
        changed = result[0] if isinstance(result, tuple) else result
        assert changed != before and complaint == before
