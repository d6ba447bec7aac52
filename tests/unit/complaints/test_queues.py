"""Work queues: the next SLA target of each complaint, nearest due first, overdue before, waiting last."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.complaints import domain, queues
from services.complaints.calendar import BusinessCalendar, parse_periods
from services.complaints.domain import Complaint, Rules
from services.complaints.policy import DEFAULT_POLICIES

SHANGHAI = ZoneInfo("Asia/Shanghai")
RULES = Rules(calendar=BusinessCalendar("Asia/Shanghai", parse_periods("09:00-12:00,13:30-18:00"), country="CN"),
              policies=DEFAULT_POLICIES, policy_version="2026.1")
MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)
FIELDS = {"channel": "phone", "category": "delivery", "severity": "normal", "complexity": "standard",
          "subject": "Parcel late"}


def opened(complaint_id: str, *, at: datetime = MONDAY, tier: str | None = None, **fields: str) -> Complaint:
    complaint, _ = domain.open_complaint(complaint_id=complaint_id, customer_id="C1", fields={**FIELDS, **fields},
                                         tier=tier, opened_at=at, rules=RULES, source=complaint_id)
    return complaint.model_copy(update={"team": "care", "assignee": "a-sh"})


def move(complaint: Complaint, *path: str, at: datetime = MONDAY) -> Complaint:
    for to in path:
        complaint, _ = domain.transition(complaint, to, now=at, rules=RULES, actor="a-sh")
    return complaint


def test_the_next_target_is_the_running_one_due_soonest() -> None:
    complaint = opened("K1")
    target, timer = queues.next_target(complaint, RULES)
    assert target == "first_response" and timer is not None and timer["due_at"] == MONDAY + timedelta(hours=24)
    acknowledged = move(complaint, "acknowledged")
    assert queues.next_target(acknowledged, RULES)[0] == "resolution"


def test_the_queue_is_ordered_by_due_time_overdue_first_and_waiting_last() -> None:
    regular = opened("K-regular")  # first response due Tuesday 09:00
    vip = opened("K-vip", tier="vip")  # p2, first response due Monday 13:00
    late, _ = domain.tick(opened("K-late", at=MONDAY - timedelta(days=2)), now=MONDAY, rules=RULES)  # overdue
    waiting = move(opened("K-waiting"), "acknowledged", "investigating", "waiting_on_customer")
    items = queues.ordered([waiting, regular, vip, late], RULES, limit=10)
    assert [i["complaint_id"] for i in items] == ["K-late", "K-vip", "K-regular", "K-waiting"]
    first = items[0]
    assert (first["next_target"], first["warned"], first["breached"]) == ("first_response", True, True)
    assert items[1] | {"opened_at": None, "due_at": None} == {
        "kind": "complaint", "complaint_id": "K-vip", "customer_id": "C1", "priority": "p2", "customer_tier": "vip",
        "status": "received", "assignee": "a-sh", "team": "care", "next_target": "first_response",
        "due_at": None, "warned": False, "breached": False, "escalation_level": 0, "escalated_to": "handler",
        "opened_at": None}
    assert items[1]["due_at"] == MONDAY + timedelta(hours=4)
    assert (items[-1]["next_target"], items[-1]["due_at"]) == (None, None)


def test_ties_go_to_the_higher_priority_then_the_older_complaint_and_the_limit_cuts_the_tail() -> None:
    older = opened("K-older", at=MONDAY)
    newer = opened("K-newer", at=MONDAY)
    newer.opened_at = MONDAY + timedelta(minutes=1)
    urgent = opened("K-urgent", severity="high")  # p2, on the same 24 h target as the p3 ones
    items = queues.ordered([newer, older, urgent], RULES, limit=2)
    assert [i["complaint_id"] for i in items] == ["K-urgent", "K-older"]
