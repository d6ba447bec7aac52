"""Who holds a complaint: routing of new ones, reassignment up the ladder, and the staff alerts.

Pure, as ``domain`` is: a complaint and the events an operation emitted go in, with the staff
directory and the moment; the complaint with its assignee and team, and the events with the
alerts they cause, come out. The workflow applies it after every domain operation.

- A new complaint of a customer with an account manager goes to that manager while they are on
  duty (and to their team, if they are an agent; else to the category's team); otherwise to its
  category's team and, where the team assigns to agents, to the least loaded agent on duty
  (``staff.route``).
- ``assigned`` (by hand): a complaint given to an agent of the directory moves to the agent's team.
- ``escalated``: the complaint goes to the person of its new rung for its team
  (``staff.rung_person``: on duty if anyone on the rung is), who is alerted; the escalation event
  records the change of assignee and whether that person is on duty.
- ``sla_warning``, and ``sla_breached`` that escalates no further (the top rung already): the
  person responsible now is alerted: the assignee when on duty, else the person of the rung above
  the handler (or of the complaint's rung) for its team.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from .domain import Complaint, Emit, Result, copy_of
from .policy import ESCALATION_LADDER
from .staff import Directory, Pick, route, rung_person

ROLE_RUNG = {"agent": "handler", "supervisor": "supervisor", "manager": "manager"}
#: What an alert of each kind is about: an SLA target ran late, or the complaint moved up.
_SLA = ("sla_warning", "sla_breached")
_TRIGGERS = frozenset({"assigned", "escalated", *_SLA})


def route_new(complaint: Complaint, directory: Directory, now: datetime, loads: Mapping[str, int],
              account_manager: str | None = None) -> Complaint:
    """A new complaint with its team and, where the team assigns to agents, its agent; the
    customer's account manager first, when they are one of the directory and on duty."""
    if complaint.assignee is not None or complaint.team is not None:
        return complaint
    manager = directory.member(account_manager)
    if manager is not None and manager.account_manager and manager.on_duty(now):
        team = manager.team if manager.role == "agent" else directory.team_for(complaint.category)
        return complaint.model_copy(update={"team": team, "assignee": manager.id})
    team, agent = route(directory, complaint.category, now, loads)
    return complaint.model_copy(update={"team": team, "assignee": agent})


def team_of(complaint: Complaint, directory: Directory) -> str:
    """The complaint's team; for one without (opened before the directory, or its team removed):
    its agent's team, else its category's."""
    if directory.team(complaint.team):
        return complaint.team  # type: ignore[return-value]
    holder = directory.member(complaint.assignee)
    if holder is not None and directory.team(holder.team):
        return holder.team  # type: ignore[return-value]
    return directory.team_for(complaint.category)


def responsible(complaint: Complaint, directory: Directory, now: datetime) -> Pick | None:
    """Whom a warning or a breach concerns now: the assignee on duty, else the rung above the
    handler (or the complaint's own rung) of its team; an assignee off duty when nobody is."""
    holder = directory.member(complaint.assignee)
    if holder is not None and holder.on_duty(now):
        return Pick(holder, ROLE_RUNG[holder.role], True)
    rung = ESCALATION_LADDER[max(1, complaint.escalation_level)]
    pick = rung_person(directory, team_of(complaint, directory), rung, now)
    if pick is not None and (pick.on_duty or holder is None):
        return pick
    return Pick(holder, ROLE_RUNG[holder.role], False) if holder is not None else pick


def staffed(complaint: Complaint, emits: list[Emit], directory: Directory, now: datetime) -> Result:
    """Reassignments and alerts caused by ``emits``; the complaint and the events unchanged when
    none of them concerns the staff."""
    if not any(e.kind in _TRIGGERS for e in emits):
        return complaint, emits
    c = copy_of(complaint)
    out: list[Emit] = []
    last_sla: Emit | None = None
    for position, emit in enumerate(emits):
        following = emits[position + 1] if position + 1 < len(emits) else None
        if emit.kind == "assigned":
            member = directory.member(c.assignee)
            if member is not None and member.role == "agent":
                c.team = member.team
            out.append(emit)
        elif emit.kind in _SLA:
            last_sla = emit
            out.append(emit)
            if following is not None and following.kind == "escalated":
                continue  # the escalation that follows moves the complaint and tells its new holder
            pick = responsible(c, directory, now)
            if pick is not None:
                out.append(_alert(emit.kind, pick, emit, reason=_sla_reason(emit), previous=None))
        elif emit.kind == "escalated":
            c.team = team_of(c, directory)
            level = emit.changes.get("escalation_level", [None, c.escalation_level])[1]
            pick = rung_person(directory, c.team, ESCALATION_LADDER[level], now)
            if pick is None:
                out.append(emit)
                continue
            previous, changes = c.assignee, dict(emit.changes)
            if pick.member.id != previous:
                c.assignee = pick.member.id
                changes["assignee"] = [previous, pick.member.id]
            changes["on_duty"] = pick.on_duty
            out.append(replace(emit, changes=changes))
            cause = last_sla if last_sla is not None and str(changes.get("reason", "")).startswith(
                str(last_sla.sla_target)) else None
            out.append(_alert("escalated", pick, cause, reason=changes.get("reason"), previous=previous))
        else:
            out.append(emit)
    return c, out


def _sla_reason(emit: Emit) -> str:
    return f"{emit.sla_target}_{'warning' if emit.kind == 'sla_warning' else 'breached'}"


def _alert(kind: str, pick: Pick, cause: Emit | None, *, reason: Any, previous: str | None) -> Emit:
    member = pick.member
    alert: dict[str, Any] = {
        "kind": kind, "staff_id": member.id, "staff_name": member.name, "role": member.role, "rung": pick.rung,
        "on_duty": pick.on_duty, "email": member.email, "webhook": member.webhook, "locale": member.locale,
        "timezone": member.timezone, "reason": reason, "previous_assignee": previous,
        "due_at": cause.changes.get("due_at") if cause is not None else None,
    }
    return Emit("staff_alert", {}, sla_target=cause.sla_target if cause is not None else None,
                alert={k: v for k, v in alert.items() if v is not None})
