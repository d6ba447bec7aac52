"""Return visits: a managed customer's follow-up as a task in their account manager's work queue.

Pure: the due follow-up (``care.return_visit.due``), the manager and the calendar go in, the task
comes out; an outcome closes it once and becomes the ``return_visit`` interaction that tells the
rest of the system what the visit found.

- A task's id is the visit's (``return_visit:<day>:<customer>``): the same follow-up read again is
  the same task.
- It is due ``COMPLAINTS_RETURN_VISIT_DAYS`` working days after the follow-up fell due.
- An outcome is recorded once; the same outcome again is a repeat (answered as before), another one
  is refused.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from .calendar import BusinessCalendar
from .domain import DomainError

Outcome = Literal["completed", "unreachable", "declined"]
VisitChannel = Literal["visit", "call", "video", "email"]


class Task(BaseModel):
    model_config = ConfigDict(extra="ignore")

    task_id: str
    kind: Literal["return_visit"] = "return_visit"
    customer_id: str
    #: The account manager whose queue holds it.
    assignee: str
    status: Literal["open", "done"] = "open"
    due_on: date
    due_at: datetime
    cadence_days: int
    created_at: datetime
    outcome: Outcome | None = None
    channel: VisitChannel | None = None
    summary: str | None = None
    satisfaction: int | None = None
    done_at: datetime | None = None
    done_by: str | None = None
    revision: int = 1


def new_visit(*, visit_id: str, customer_id: str, manager: str, due_on: date, cadence_days: int, at: datetime,
              calendar: BusinessCalendar, days: float) -> Task:
    """The task for a follow-up that fell due at ``at``: due ``days`` working days later."""
    return Task(task_id=visit_id, customer_id=customer_id, assignee=manager, due_on=due_on,
                due_at=calendar.add_working_days(at, days), cadence_days=cadence_days, created_at=at)


def record_outcome(task: Task, *, outcome: Outcome, channel: VisitChannel, summary: str, satisfaction: int | None,
                   actor: str, now: datetime) -> Task | None:
    """The task done with its outcome; None when exactly this outcome is recorded already."""
    if task.status == "done":
        if (task.outcome, task.channel, task.summary, task.satisfaction) == (outcome, channel, summary, satisfaction):
            return None
        raise DomainError("task_done", f"the outcome was recorded at {task.done_at.isoformat() if task.done_at else '?'}")
    return task.model_copy(update={"status": "done", "outcome": outcome, "channel": channel, "summary": summary,
                                   "satisfaction": satisfaction, "done_at": now, "done_by": actor,
                                   "revision": task.revision + 1})


def queue_item(task: Task) -> dict[str, object]:
    """A task as a work queue lists it beside complaints (no summary)."""
    return {"kind": task.kind, "task_id": task.task_id, "customer_id": task.customer_id, "assignee": task.assignee,
            "status": task.status, "due_at": task.due_at, "due_on": task.due_on, "opened_at": task.created_at}
