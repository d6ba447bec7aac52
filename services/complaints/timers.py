"""SLA timers of a complaint, recomputed from its log of timer entries: pure, time from the caller.

Each target's timer is the cycle since its last ``started`` entry: running or paused, how much of
the target it used, when it is due and when the warning falls due.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .policy import TARGETS, Target

if TYPE_CHECKING:
    from .domain import Complaint, Rules, TimerEntry

WARN_AT = 0.75


@dataclass(frozen=True)
class TimerState:
    target: str
    running_since: datetime | None
    consumed: timedelta
    length: timedelta
    fulfilled: bool
    warned: bool
    breached: bool
    due_at: datetime | None
    warn_at: datetime | None
    met: bool | None


#: A target's text parsed once: every timer of every complaint names one of a few.
target_spec = functools.lru_cache(maxsize=256)(Target)


def timer_state(complaint: Complaint, target: str, rules: Rules) -> TimerState | None:
    """Recompute one target's timer from its log: the cycle since the last ``started``."""
    if target not in complaint.targets:
        return None
    return _state(complaint, target, [e for e in complaint.timers if e.target == target], rules)


def timer_states(complaint: Complaint, rules: Rules) -> dict[str, TimerState]:
    """The timer of every target that has one, in ``TARGETS`` order, from one reading of the log."""
    logs: dict[str, list[TimerEntry]] = {}
    for entry in complaint.timers:
        logs.setdefault(entry.target, []).append(entry)
    states = {}
    for target in TARGETS:
        if target in complaint.targets and target in logs:
            state = _state(complaint, target, logs[target], rules)
            if state is not None:
                states[target] = state
    return states


def _state(complaint: Complaint, target: str, entries: list[TimerEntry], rules: Rules) -> TimerState | None:
    starts = [i for i, e in enumerate(entries) if e.kind == "started"]
    if not starts:
        return None
    spec = target_spec(complaint.targets[target])
    cal = rules.calendar
    running: datetime | None = None
    consumed = timedelta()
    fulfilled = warned = breached = False
    met: bool | None = None
    for entry in entries[starts[-1]:]:
        if entry.kind in ("started", "resumed"):
            running = entry.at
        elif entry.kind in ("paused", "fulfilled") and running is not None:
            consumed += spec.measure(cal, running, entry.at)
            running = None
        if entry.kind == "fulfilled":
            fulfilled, met = True, entry.met
        warned = warned or entry.kind == "warned"
        breached = breached or entry.kind == "breached"
    length = spec.length(cal)
    due_at = warn_at = None
    if running is not None:
        due_at = spec.advance(cal, running, length - consumed)
        warn_at = spec.advance(cal, running, length * WARN_AT - consumed)
    return TimerState(target, running, consumed, length, fulfilled, warned, breached, due_at, warn_at, met)


def sla_summary(complaint: Complaint, rules: Rules) -> dict[str, dict[str, Any]]:
    """Each target's timer as recomputed from the log, for readers of the complaint."""
    summary: dict[str, dict[str, Any]] = {}
    for target, state in timer_states(complaint, rules).items():
        phase = "fulfilled" if state.fulfilled else "running" if state.running_since else "paused"
        summary[target] = {"target": complaint.targets[target], "state": phase, "due_at": state.due_at,
                           "used_seconds": int(state.consumed.total_seconds()), "warned": state.warned,
                           "breached": state.breached, "met": state.met}
    return summary


def refresh_sla(complaint: Complaint, now: datetime, rules: Rules,
                states: dict[str, TimerState] | None = None) -> Complaint:
    """Due times and the next moment the scheduler must look at this complaint. ``states``: the
    timers as they stand, when the caller has them already (``timer_states`` otherwise)."""
    c = complaint
    if states is None:
        states = timer_states(c, rules)
    checks: list[datetime] = []
    for target in TARGETS:
        state = states.get(target)
        setattr(c, f"{target}_due_at", state.due_at if state else None)
        if state and state.due_at is not None:
            if not state.warned:
                checks.append(state.warn_at or state.due_at)
            elif not state.breached:
                checks.append(state.due_at)
    if c.status == "resolved" and c.resolved_at is not None and (c.verified_by or not rules.verification):
        checks.append(c.resolved_at + timedelta(days=rules.auto_close_days))
    c.breached = any(e.kind == "breached" for e in c.timers)
    c.next_check_at = min(checks) if checks else None
    return c
