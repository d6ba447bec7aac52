"""Return visits: the task a due follow-up becomes, its place in the work queue, and its outcome."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.complaints import domain, queues, visits
from services.complaints.domain import DomainError

from .test_assignment import FIELDS, RULES

SHANGHAI = ZoneInfo("Asia/Shanghai")
#: Friday 6 March 2026, 10:00 in Shanghai: two working days later is Tuesday 10:00.
FRIDAY_10 = datetime(2026, 3, 6, 10, 0, tzinfo=SHANGHAI)


def visit(at: datetime = FRIDAY_10, visit_id: str = "return_visit:2026-03-06:C1") -> visits.Task:
    return visits.new_visit(visit_id=visit_id, customer_id="C1", manager="am-1", due_on=at.date(),
                            cadence_days=30, at=at, calendar=RULES.calendar, days=2)


def test_a_return_visit_is_due_in_working_days_after_the_follow_up_fell_due() -> None:
    task = visit()
    assert (task.task_id, task.assignee, task.status, task.due_on) == (
        "return_visit:2026-03-06:C1", "am-1", "open", date(2026, 3, 6))
    assert task.due_at == datetime(2026, 3, 10, 10, 0, tzinfo=SHANGHAI)  # over the weekend


def test_an_outcome_closes_the_task_once_and_the_same_outcome_again_is_a_repeat() -> None:
    done = visits.record_outcome(visit(), outcome="completed", channel="visit", summary="Renewal agreed",
                                 satisfaction=5, actor="am-1", now=FRIDAY_10 + timedelta(days=1))
    assert done is not None
    assert (done.status, done.outcome, done.channel, done.summary, done.satisfaction, done.done_by, done.revision) == (
        "done", "completed", "visit", "Renewal agreed", 5, "am-1", 2)
    again = visits.record_outcome(done, outcome="completed", channel="visit", summary="Renewal agreed",
                                  satisfaction=5, actor="someone", now=FRIDAY_10 + timedelta(days=2))
    assert again is None
    with pytest.raises(DomainError) as refused:
        visits.record_outcome(done, outcome="declined", channel="call", summary="No", satisfaction=None,
                              actor="am-1", now=FRIDAY_10 + timedelta(days=2))
    assert refused.value.code == "task_done"


def test_the_queue_lists_tasks_beside_complaints_by_due_time_tasks_after_complaints_due_alike() -> None:
    complaint, _ = domain.open_complaint(complaint_id="K1", customer_id="C2", fields=FIELDS, tier=None,
                                         opened_at=FRIDAY_10, rules=RULES, source="e1")  # due Saturday 10:00 (24 h)
    early = visit(FRIDAY_10 - timedelta(days=3), "return_visit:2026-03-03:C1")  # due Thursday 10:00
    late = visit(FRIDAY_10 + timedelta(days=3), "return_visit:2026-03-09:C1")  # due next Wednesday 10:00
    items = queues.ordered([complaint], RULES, 10, [late, early])
    assert [(i["kind"], i.get("complaint_id") or i["task_id"]) for i in items] == [
        ("return_visit", "return_visit:2026-03-03:C1"), ("complaint", "K1"),
        ("return_visit", "return_visit:2026-03-09:C1")]
    assert items[0] == {"kind": "return_visit", "task_id": "return_visit:2026-03-03:C1", "customer_id": "C1",
                        "assignee": "am-1", "status": "open", "due_at": early.due_at, "due_on": date(2026, 3, 3),
                        "opened_at": early.created_at}
    same_time = visit(FRIDAY_10 - timedelta(days=1), "return_visit:2026-03-05:C1")
    same_time.due_at = complaint.first_response_due_at  # type: ignore[assignment]
    assert [i["kind"] for i in queues.ordered([complaint], RULES, 10, [same_time])] == ["complaint", "return_visit"]
