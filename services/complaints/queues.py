"""Work queues: a team's or a person's open complaints (and a person's open return visits, see
``visits``), the one due soonest first.

A complaint's next target is the running SLA target (acknowledgement, periodic update, resolution)
due soonest, as the domain computes it from the timer log; an overdue one (breached, still running)
is due in the past and so comes first. Complaints with no running target (waiting on the
customer or a third party) come last. Ties go to the higher priority (a task after every
complaint), then to the older item.
"""

from __future__ import annotations

from datetime import datetime
from collections.abc import Sequence
from typing import Any

from . import visits
from .domain import Complaint, Rules
from .policy import ESCALATION_LADDER, PRIORITIES
from .timers import sla_summary


def next_target(complaint: Complaint, rules: Rules) -> tuple[str | None, dict[str, Any] | None]:
    """The running target due soonest and its timer, or ``(None, None)``."""
    running = [(name, timer) for name, timer in sla_summary(complaint, rules).items() if timer["due_at"] is not None]
    if not running:
        return None, None
    return min(running, key=lambda item: item[1]["due_at"])


def item(complaint: Complaint, rules: Rules) -> dict[str, Any]:
    target, timer = next_target(complaint, rules)
    return {
        "kind": "complaint", "complaint_id": complaint.complaint_id, "customer_id": complaint.customer_id,
        "priority": complaint.priority, "customer_tier": complaint.customer_tier, "status": complaint.status,
        "assignee": complaint.assignee, "team": complaint.team, "next_target": target,
        "due_at": timer["due_at"] if timer else None,
        # The next target's own flags; ``breached`` also covers an earlier target's breach.
        "warned": bool(timer and timer["warned"]), "breached": bool(timer and timer["breached"]) or complaint.breached,
        "escalation_level": complaint.escalation_level, "escalated_to": ESCALATION_LADDER[complaint.escalation_level],
        "opened_at": complaint.opened_at,
    }


def ordered(complaints: list[Complaint], rules: Rules, limit: int,
            tasks: Sequence[visits.Task] = ()) -> list[dict[str, Any]]:
    """The queue's first ``limit`` items, nearest due time first."""
    items = [item(c, rules) for c in complaints] + [visits.queue_item(t) for t in tasks]
    items.sort(key=_order)
    return items[:limit]


def _order(entry: dict[str, Any]) -> tuple[bool, datetime | str, int, datetime]:
    due: datetime | None = entry["due_at"]
    rank = PRIORITIES.index(entry["priority"]) if entry["kind"] == "complaint" else len(PRIORITIES)
    return (due is None, due or "", rank, entry["opened_at"])
