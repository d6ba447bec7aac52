"""Who holds a complaint: routing of new ones, reassignment up the ladder on escalation, and the
staff alerts that warnings, breaches and escalations cause."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.complaints import assignment, domain
from services.complaints.calendar import BusinessCalendar, parse_periods
from services.complaints.domain import Complaint, Emit, Rules
from services.complaints.policy import DEFAULT_POLICIES
from services.complaints.workflow import Workflow
from shared.clock import FixedClock
from shared.contract import parse_event
from shared.contract.events import ComplaintStaffAlert

from services.complaints.staff import Directory

from .test_accounts import D as WITH_MANAGERS
from .test_accounts import with_managers
from .test_staff import directory

SHANGHAI = ZoneInfo("Asia/Shanghai")
RULES = Rules(calendar=BusinessCalendar("Asia/Shanghai", parse_periods("09:00-12:00,13:30-18:00"), country="CN"),
              policies=DEFAULT_POLICIES, policy_version="2026.1")
MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)
#: 75 % of the 24 h first-response target: Tuesday 03:00, nobody of care on duty.
WARNING = MONDAY_9 + timedelta(hours=18)
#: An hour after the first-response breach (Tuesday 09:00): the supervisor is on duty.
BREACH = MONDAY_9 + timedelta(hours=25)
FIELDS = {"channel": "phone", "category": "delivery", "severity": "normal", "complexity": "standard",
          "subject": "Parcel late"}
D = directory()


def opened(category: str = "delivery", at: datetime = MONDAY_9) -> Complaint:
    complaint, _ = domain.open_complaint(complaint_id="K1", customer_id="C1", fields={**FIELDS, "category": category},
                                         tier=None, opened_at=at, rules=RULES, source="e1")
    return assignment.route_new(complaint, D, at, {})


def tick(complaint: Complaint, at: datetime, rules: Rules = RULES) -> tuple[Complaint, list[Emit]]:
    changed, emits = domain.tick(complaint, now=at, rules=rules)
    return assignment.staffed(changed, emits, D, at)


def alerts(emits: list[Emit]) -> list[dict]:
    return [e.alert for e in emits if e.kind == "staff_alert"]  # type: ignore[misc]


def test_a_new_complaint_is_routed_to_its_team_and_an_agent_on_duty() -> None:
    complaint = opened()
    assert (complaint.team, complaint.assignee) == ("care", "a-sh")
    billing = opened("billing")
    assert (billing.team, billing.assignee) == ("billing", None)  # billing works from its team queue
    weekend = opened(at=datetime(2026, 3, 7, 10, 0, tzinfo=SHANGHAI))
    assert (weekend.team, weekend.assignee) == ("care", None)


def test_a_complaint_that_already_has_a_holder_is_not_routed_again() -> None:
    complaint = opened().model_copy(update={"assignee": "ann", "team": None})
    assert assignment.route_new(complaint, D, MONDAY_9, {}).assignee == "ann"


def test_a_breach_reassigns_to_the_teams_supervisor_and_alerts_them() -> None:
    warned, _ = tick(opened(), WARNING)
    breached, emits = tick(warned, BREACH)
    assert [e.kind for e in emits] == ["sla_breached", "escalated", "staff_alert"]
    assert (breached.assignee, breached.team, breached.escalation_level) == ("sup-sh", "care", 1)
    escalated = emits[1].changes
    assert escalated["assignee"] == ["a-sh", "sup-sh"] and escalated["on_duty"] is True
    assert escalated["escalated_to"] == "supervisor"
    [alert] = alerts(emits)
    assert alert == {"kind": "escalated", "staff_id": "sup-sh", "staff_name": "Sup-Sh", "role": "supervisor",
                     "rung": "supervisor", "on_duty": True, "email": "sup-sh@example.com",
                     "timezone": "Asia/Shanghai", "reason": "first_response_breached", "previous_assignee": "a-sh",
                     "due_at": "2026-03-03T09:00:00+08:00"}
    assert emits[2].sla_target == "first_response"


def test_a_second_escalation_goes_to_the_supervisors_manager() -> None:
    breached, _ = tick(tick(opened(), WARNING)[0], BREACH)
    later = BREACH + timedelta(hours=1)
    escalated, emits = domain.escalate(breached, now=later, reason="resolution_breached")
    escalated, emits = assignment.staffed(escalated, emits, D, later)
    assert escalated.assignee == "mgr" and escalated.escalation_level == 2
    assert alerts(emits)[0]["rung"] == "manager" and alerts(emits)[0]["previous_assignee"] == "sup-sh"


def test_an_escalation_when_nobody_on_the_rung_is_on_duty_still_assigns_the_rungs_person_and_says_so() -> None:
    saturday = datetime(2026, 3, 7, 10, 0, tzinfo=SHANGHAI)
    escalated, emits = domain.escalate(opened(), now=saturday, reason="low_satisfaction")
    escalated, emits = assignment.staffed(escalated, emits, D, saturday)
    assert escalated.assignee == "sup-sh"
    assert emits[0].changes["on_duty"] is False
    assert alerts(emits)[0]["on_duty"] is False and "due_at" not in alerts(emits)[0]


def test_a_team_without_a_supervisor_escalates_to_its_manager() -> None:
    complaint = opened("billing")
    escalated, emits = domain.escalate(complaint, now=BREACH, reason="first_response_breached")
    escalated, emits = assignment.staffed(escalated, emits, D, BREACH)
    assert escalated.assignee == "mgr" and escalated.escalation_level == 1
    assert alerts(emits)[0]["rung"] == "manager"


def test_a_warning_alerts_the_holder_without_moving_the_complaint() -> None:
    # The 4 h first response of a VIP is warned at 3 h, while the agent is on duty.
    complaint, _ = domain.open_complaint(complaint_id="K1", customer_id="C1", fields=FIELDS, tier="vip",
                                         opened_at=MONDAY_9, rules=RULES, source="e1")
    complaint = assignment.route_new(complaint, D, MONDAY_9, {})
    warned, emits = tick(complaint, MONDAY_9 + timedelta(hours=3))
    assert [e.kind for e in emits] == ["sla_warning", "staff_alert"]
    assert warned.assignee == "a-sh" and warned.escalation_level == 0
    [alert] = alerts(emits)
    assert (alert["kind"], alert["staff_id"], alert["rung"], alert["on_duty"]) == (
        "sla_warning", "a-sh", "handler", True)
    assert alert["reason"] == "first_response_warning"
    assert alert["due_at"] == complaint.first_response_due_at.isoformat()  # type: ignore[union-attr]


def test_a_warning_for_a_holder_off_duty_or_outside_the_directory_reaches_the_supervisor_rung() -> None:
    evening = datetime(2026, 3, 2, 18, 30, tzinfo=SHANGHAI)  # the London deputy is on duty
    off_duty = opened()
    warning = Emit("sla_warning", {"due_at": "2026-03-02T20:00:00+08:00"}, sla_target="first_response")
    _, emits = assignment.staffed(off_duty, [warning], D, evening)
    assert alerts(emits)[0]["staff_id"] == "sup-ldn"
    _, emits = assignment.staffed(off_duty.model_copy(update={"assignee": "ann"}), [warning], D, MONDAY_9)
    assert alerts(emits)[0]["staff_id"] == "sup-sh"


def test_a_breach_at_the_top_rung_alerts_the_holder() -> None:
    top = opened().model_copy(update={"assignee": "mgr", "escalation_level": 2, "priority": "p1"})
    breach = Emit("sla_breached", {"due_at": "2026-03-02T20:00:00+08:00"}, sla_target="resolution")
    same, emits = assignment.staffed(top, [breach], D, MONDAY_9)
    assert same.assignee == "mgr"
    assert [(a["kind"], a["staff_id"], a["reason"]) for a in alerts(emits)] == [
        ("sla_breached", "mgr", "resolution_breached")]


def test_a_low_score_escalation_reassigns_too() -> None:
    rules = replace(RULES, low_score_action="escalate")
    complaint = opened()
    for to in ("acknowledged", "investigating"):
        complaint, _ = domain.transition(complaint, to, now=MONDAY_9, rules=rules, actor="a-sh")
    complaint, _ = domain.transition(complaint, "resolved", now=MONDAY_9, rules=rules, actor="a-sh",
                                     resolution_summary="Refunded", root_cause="logistics")
    scored, emits = domain.record_feedback(complaint, 1, "", now=MONDAY_9, rules=rules, source="f1")
    scored, emits = assignment.staffed(scored, emits, D, MONDAY_9)
    assert [e.kind for e in emits] == ["feedback_received", "escalated", "staff_alert"]
    assert scored.assignee == "sup-sh" and alerts(emits)[0]["reason"] == "low_satisfaction"


def test_with_escalate_on_warning_a_warning_already_moves_the_complaint_up() -> None:
    warned, emits = tick(opened(), WARNING, rules=replace(RULES, escalate_on_warning=True))
    assert [e.kind for e in emits] == ["sla_warning", "escalated", "staff_alert"]
    assert warned.escalation_level == 1 and warned.assignee == "sup-sh"
    assert alerts(emits)[0]["reason"] == "first_response_warning"


def test_assigning_an_agent_by_hand_moves_the_complaint_to_their_team() -> None:
    assigned, emits = domain.assign(opened(), "b-1", now=MONDAY_9, rules=RULES)
    assigned, emits = assignment.staffed(assigned, emits, D, MONDAY_9)
    assert (assigned.assignee, assigned.team) == ("b-1", "billing")
    assert [e.kind for e in emits] == ["assigned"]


def test_operations_that_concern_no_staff_change_nothing() -> None:
    complaint = opened()
    acknowledged, emits = domain.transition(complaint, "acknowledged", now=MONDAY_9, rules=RULES, actor="a-sh")
    assert assignment.staffed(acknowledged, emits, D, MONDAY_9) == (acknowledged, emits)


def test_an_alert_is_published_as_a_contract_event_with_the_complaint_and_the_person() -> None:
    breached, emits = tick(tick(opened(), WARNING)[0], BREACH)
    workflow = Workflow(None, RULES, FixedClock(BREACH), None, D)  # type: ignore[arg-type]
    rendered = workflow._render(breached, emits)
    event = parse_event(rendered[-1].encode(), now=BREACH)
    assert isinstance(event, ComplaintStaffAlert)
    assert (event.subject, event.data.complaint_id, event.data.assignee, event.data.team) == (
        "C1", "K1", "sup-sh", "care")
    assert event.data.alert.staff_id == "sup-sh" and event.data.alert.email == "sup-sh@example.com"
    escalated = parse_event(rendered[-2].encode(), now=BREACH)
    assert escalated.type == "complaint.escalated"
    assert escalated.data.changes["assignee"] == ["a-sh", "sup-sh"]  # type: ignore[attr-defined]


# --- Account managers first -----------------------------------------------------------------------

def _managed(manager: str, at: datetime = MONDAY_9, category: str = "delivery") -> Complaint:
    complaint, _ = domain.open_complaint(complaint_id="K1", customer_id="C1", fields={**FIELDS, "category": category},
                                         tier="vip", opened_at=at, rules=RULES, source="e1")
    return assignment.route_new(complaint, WITH_MANAGERS, at, {}, manager)


def test_a_managed_customers_complaint_goes_to_their_account_manager_on_duty_and_their_team() -> None:
    complaint = _managed("am-east")
    assert (complaint.assignee, complaint.team) == ("am-east", "accounts")
    billing = _managed("am-east", category="billing")
    assert (billing.assignee, billing.team) == ("am-east", "accounts")


def test_with_the_account_manager_off_duty_or_gone_the_complaint_is_routed_as_any_other() -> None:
    saturday = datetime(2026, 3, 7, 10, 0, tzinfo=SHANGHAI)
    assert (_managed("am-east", at=saturday).assignee, _managed("am-east", at=saturday).team) == (None, "care")
    assert (_managed("am-gone").assignee, _managed("am-gone").team) == ("a-sh", "care")
    # Someone of the directory who is not an account manager is not a customer's manager.
    assert _managed("a-sh2").assignee == "a-sh"


def test_an_account_manager_who_is_not_an_agent_takes_the_complaint_in_its_categorys_team() -> None:
    doc = with_managers().model_dump(mode="json")
    for member in doc["staff"]:
        if member["id"] == "mgr":
            member["account_manager"] = True
    complaint, _ = domain.open_complaint(complaint_id="K1", customer_id="C1", fields={**FIELDS, "category": "billing"},
                                         tier=None, opened_at=MONDAY_9, rules=RULES, source="e1")
    routed = assignment.route_new(complaint, Directory.model_validate(doc), MONDAY_9, {}, "mgr")
    assert (routed.assignee, routed.team) == ("mgr", "billing")
