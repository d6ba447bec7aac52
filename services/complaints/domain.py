"""Pure rules of the complaints service: no I/O, time comes from the caller.

Every operation takes a complaint and ``now`` and returns the changed complaint together with the
lifecycle events it causes (``Emit``); the caller persists both at once and publishes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .calendar import BusinessCalendar
from .policy import (
    ESCALATION_LADDER,
    TARGETS,
    SlaPolicy,
    TargetName,
    match_policy,
    priority_for,
    raise_priority,
)
from .timers import refresh_sla, target_spec, timer_state, timer_states

Status = Literal["received", "acknowledged", "investigating", "waiting_on_customer", "waiting_on_third_party",
                 "resolved", "closed"]
TimerKind = Literal["started", "paused", "resumed", "fulfilled", "warned", "breached"]

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "received": ("acknowledged",),
    "acknowledged": ("investigating",),
    "investigating": ("waiting_on_customer", "waiting_on_third_party", "resolved"),
    "waiting_on_customer": ("investigating",),
    "waiting_on_third_party": ("investigating",),
    "resolved": ("closed",),
    "closed": (),
}
PAUSED_STATES = frozenset({"waiting_on_customer", "waiting_on_third_party"})
REOPENABLE = frozenset({"resolved", "closed"})


class DomainError(Exception):
    """A request the rules refuse; ``allowed`` lists what the current state permits."""

    def __init__(self, code: str, detail: str, *, allowed: tuple[str, ...] = ()) -> None:
        self.code = code
        self.detail = detail
        self.allowed = allowed
        super().__init__(f"{code}: {detail}")


class InvalidTransition(DomainError):
    pass


class TimerEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    target: TargetName
    kind: TimerKind
    at: datetime
    #: On ``fulfilled``: whether the target was met.
    met: bool | None = None


class Feedback(BaseModel):
    score: int
    comment: str = ""
    at: datetime
    source: str


class Comment(BaseModel):
    author: str
    text: str
    at: datetime


class Complaint(BaseModel):
    model_config = ConfigDict(extra="ignore")

    complaint_id: str
    customer_id: str
    channel: str
    category: str
    severity: str
    complexity: str
    subject: str
    description: str = ""
    order_id: str | None = None
    status: Status = "received"
    priority: str
    customer_tier: str | None = None
    sla_policy: str
    targets: dict[str, str]
    timers: list[TimerEntry] = []
    first_response_due_at: datetime | None = None
    update_due_at: datetime | None = None
    resolution_due_at: datetime | None = None
    next_check_at: datetime | None = None
    breached: bool = False
    escalation_level: int = 0
    assignee: str | None = None
    #: The team whose queue holds the complaint (see ``staff.py``).
    team: str | None = None
    resolved_by: str | None = None
    verified_by: str | None = None
    resolution_summary: str | None = None
    root_cause: str | None = None
    opened_at: datetime
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    first_resolved_at: datetime | None = None
    closed_at: datetime | None = None
    reopen_count: int = 0
    linked_complaint_id: str | None = None
    feedback: list[Feedback] = []
    comments: list[Comment] = []
    #: Ids of the inputs already applied (intake events, survey interactions): replays change nothing.
    applied: list[str] = []
    erased: bool = False
    revision: int = 0


def copy_of(complaint: Complaint) -> Complaint:
    """A copy an operation may change without touching the original. Operations only append to the
    lists or replace them, and their entries are never changed in place, so copying the lists (not
    their entries, as a deep copy does at several times the cost of the whole tick) is enough."""
    return complaint.model_copy(update={"targets": dict(complaint.targets), "timers": list(complaint.timers),
                                        "feedback": list(complaint.feedback), "comments": list(complaint.comments),
                                        "applied": list(complaint.applied)})


@dataclass(frozen=True)
class Emit:
    """A lifecycle event to publish: ``complaint.<kind>`` with the fields that changed."""

    kind: str
    changes: dict[str, Any] = field(default_factory=dict)
    sla_target: str | None = None
    #: For ``staff_alert``: who is told, and why (``shared.contract.events.StaffAlert``).
    alert: dict[str, Any] | None = None


@dataclass(frozen=True)
class Rules:
    calendar: BusinessCalendar
    policies: tuple[SlaPolicy, ...]
    policy_version: str
    verification: bool = False
    reopen_days: int = 30
    auto_close_days: int = 7
    low_score: int = 2
    low_score_action: Literal["reopen", "escalate"] = "reopen"
    #: A survey answer naming no complaint scores the latest one only if resolved this recently.
    survey_window_days: int = 14
    #: An SLA warning already moves the complaint one rung up, as a breach does.
    escalate_on_warning: bool = False


Result = tuple[Complaint, list[Emit]]


# --- Intake -------------------------------------------------------------------------------------

def open_complaint(*, complaint_id: str, customer_id: str, fields: dict[str, Any], tier: str | None,
                   opened_at: datetime, rules: Rules, source: str | None = None,
                   linked_complaint_id: str | None = None) -> Result:
    priority = priority_for(fields["severity"], tier)
    policy = match_policy(rules.policies, priority=priority, category=fields["category"],
                          complexity=fields["complexity"], tier=tier)
    timers = [TimerEntry(target=t, kind="started", at=opened_at) for t in ("first_response", "resolution")
              if t in policy.targets]
    complaint = Complaint(
        complaint_id=complaint_id, customer_id=customer_id, priority=priority, customer_tier=tier,
        sla_policy=f"{policy.name}@{rules.policy_version}", targets=dict(policy.targets), timers=timers,
        opened_at=opened_at, linked_complaint_id=linked_complaint_id, applied=[source] if source else [],
        **fields,
    )
    complaint = refresh_sla(complaint, opened_at, rules)
    return complaint, [Emit("opened")]


# --- State machine ------------------------------------------------------------------------------

def allowed_transitions(complaint: Complaint) -> tuple[str, ...]:
    return TRANSITIONS[complaint.status]


def transition(complaint: Complaint, to: str, *, now: datetime, rules: Rules, actor: str,
               resolution_summary: str | None = None, root_cause: str | None = None) -> Result:
    allowed = allowed_transitions(complaint)
    if to not in allowed:
        raise InvalidTransition("invalid_transition", f"cannot go from {complaint.status} to {to}", allowed=allowed)
    c = copy_of(complaint)
    previous = c.status
    emits: list[Emit] = []
    if to == "acknowledged":
        c.first_response_at = c.first_response_at or now
        _fulfil(c, "first_response", now, rules)
        if "update" in c.targets:
            _log(c, "update", "started", now)
        emits.append(Emit("acknowledged", {"status": [previous, to]}))
    elif to in PAUSED_STATES:
        for target in _running(c):
            _log(c, target, "paused", now)
    elif to == "investigating":
        if previous in PAUSED_STATES:
            for target in _paused(c):
                _log(c, target, "resumed", now)
    elif to == "resolved":
        if not resolution_summary or not root_cause:
            raise DomainError("resolution_incomplete", "resolving needs resolution_summary and root_cause")
        c.resolution_summary, c.root_cause = resolution_summary, root_cause
        c.resolved_by, c.verified_by = actor, None
        c.resolved_at = now
        c.first_resolved_at = c.first_resolved_at or now
        for target in ("update", "resolution"):
            _fulfil(c, target, now, rules)
        emits.append(Emit("resolved", {"status": [previous, to], "root_cause": root_cause}))
    elif to == "closed":
        if rules.verification and not c.verified_by:
            raise DomainError("verification_required", "a resolved complaint is verified before it is closed")
        c.closed_at = now
        emits.append(Emit("closed", {"status": [previous, to]}))
    # A complex case's periodic update is due again after each change of state.
    if to not in ("acknowledged", "resolved", "closed") and "update" in c.targets and _cycle_running(c, "update"):
        _fulfil(c, "update", now, rules)
        _log(c, "update", "started", now)
        if to in PAUSED_STATES:
            _log(c, "update", "paused", now)
    c.status = to  # type: ignore[assignment]
    return refresh_sla(c, now, rules), emits


def assign(complaint: Complaint, assignee: str, *, now: datetime, rules: Rules) -> Result:
    if complaint.status == "closed":
        raise InvalidTransition("complaint_closed", "a closed complaint cannot be assigned", allowed=())
    c = copy_of(complaint)
    previous, c.assignee = c.assignee, assignee
    return refresh_sla(c, now, rules), [Emit("assigned", {"assignee": [previous, assignee]})]


def verify(complaint: Complaint, verifier: str, *, now: datetime, rules: Rules) -> Result:
    if complaint.status != "resolved":
        raise InvalidTransition("not_resolved", "only a resolved complaint is verified",
                                allowed=allowed_transitions(complaint))
    if rules.verification and verifier == complaint.resolved_by:
        raise DomainError("verifier_is_resolver", "the handler who resolved a complaint cannot verify it")
    c = copy_of(complaint)
    c.verified_by = verifier
    return c, []


def add_comment(complaint: Complaint, author: str, text: str, *, now: datetime, rules: Rules) -> Result:
    """A handler's update to the customer: restarts the periodic-update timer of complex cases."""
    c = copy_of(complaint)
    c.comments.append(Comment(author=author, text=text, at=now))
    if "update" in c.targets and _cycle_running(c, "update"):
        _fulfil(c, "update", now, rules)
        _log(c, "update", "started", now)
    return refresh_sla(c, now, rules), []


def can_reopen(complaint: Complaint, now: datetime, rules: Rules) -> bool:
    resolved = complaint.resolved_at
    return (complaint.status in REOPENABLE and resolved is not None
            and now - resolved <= timedelta(days=rules.reopen_days))


def reopen(complaint: Complaint, *, now: datetime, rules: Rules, reason: str) -> Result:
    """Back to investigating with a new resolution clock; the caller opens a linked complaint when
    ``can_reopen`` is false."""
    if complaint.status not in REOPENABLE:
        raise InvalidTransition("not_reopenable", f"a {complaint.status} complaint cannot be reopened",
                                allowed=allowed_transitions(complaint))
    if not can_reopen(complaint, now, rules):
        raise DomainError("reopen_window_passed", f"resolved more than {rules.reopen_days} days ago")
    c = copy_of(complaint)
    previous = c.status
    c.status = "investigating"
    c.reopen_count += 1
    c.resolved_at = c.closed_at = c.resolved_by = c.verified_by = None
    for target in ("update", "resolution"):
        if target in c.targets:
            _log(c, target, "started", now)
    return refresh_sla(c, now, rules), [Emit("reopened", {"status": [previous, "investigating"], "reason": reason})]


def linked_fields(complaint: Complaint) -> dict[str, Any]:
    """What a new complaint linked to an old one carries over."""
    return {k: getattr(complaint, k) for k in ("channel", "category", "severity", "complexity", "subject",
                                               "description", "order_id")}


def erase_personal_text(complaint: Complaint) -> Complaint:
    """The customer asked to be forgotten: drop every free text they or staff wrote about them."""
    c = copy_of(complaint)
    c.subject = c.description = ""
    c.comments = []
    c.resolution_summary = None
    c.feedback = [f.model_copy(update={"comment": ""}) for f in c.feedback]
    c.erased = True
    return c


# --- Satisfaction -------------------------------------------------------------------------------

def record_feedback(complaint: Complaint, score: int, comment: str, *, now: datetime, rules: Rules,
                    source: str, customer_id: str | None = None) -> Result:
    if source in complaint.applied:
        return complaint, []
    if customer_id is not None and customer_id != complaint.customer_id:
        raise DomainError("customer_mismatch", "the complaint belongs to another customer")
    if complaint.status not in REOPENABLE:
        raise InvalidTransition("not_resolved", "feedback is taken once a complaint is resolved",
                                allowed=allowed_transitions(complaint))
    c = copy_of(complaint)
    c.feedback.append(Feedback(score=score, comment=comment, at=now, source=source))
    c.applied.append(source)
    emits = [Emit("feedback_received", {"feedback_score": score})]
    if score <= rules.low_score:
        if rules.low_score_action == "reopen" and can_reopen(c, now, rules):
            c, more = reopen(c, now=now, rules=rules, reason="low_satisfaction")
        else:
            c, more = escalate(c, now=now, reason="low_satisfaction")
        emits += more
    elif c.status == "resolved" and (c.verified_by or not rules.verification):
        c, more = transition(c, "closed", now=now, rules=rules, actor="feedback")
        emits += more
    return refresh_sla(c, now, rules), emits


# --- SLA timers ---------------------------------------------------------------------------------

def tick(complaint: Complaint, *, now: datetime, rules: Rules) -> Result:
    """What time alone causes: warnings at 75 %, breaches at the target, auto-close after N days."""
    c = copy_of(complaint)
    emits: list[Emit] = []
    # Read from the log once: a warning or a breach logged here changes only that flag of its timer.
    states = timer_states(c, rules)
    for target, state in states.items():
        if state.due_at is None:
            continue
        if not state.warned and state.warn_at is not None and now >= state.warn_at:
            _log(c, target, "warned", state.warn_at)
            states[target] = state = replace(state, warned=True)
            emits.append(Emit("sla_warning", {"due_at": state.due_at.isoformat()}, sla_target=target))
            if rules.escalate_on_warning:
                c, more = escalate(c, now=now, reason=f"{target}_warning")
                emits += more
        if not state.breached and now >= state.due_at:
            _log(c, target, "breached", state.due_at)
            states[target] = replace(state, breached=True)
            emits.append(Emit("sla_breached", {"due_at": state.due_at.isoformat()}, sla_target=target))
            c, more = escalate(c, now=now, reason=f"{target}_breached")
            emits += more
    if (c.status == "resolved" and c.resolved_at is not None and (c.verified_by or not rules.verification)
            and now >= c.resolved_at + timedelta(days=rules.auto_close_days)):
        c, more = transition(c, "closed", now=now, rules=rules, actor="auto_close")
        return refresh_sla(c, now, rules), emits + more
    return refresh_sla(c, now, rules, states), emits


def escalate(complaint: Complaint, *, now: datetime, reason: str) -> Result:
    """One level up the ladder (handler, supervisor, manager) and one priority level up."""
    c = copy_of(complaint)
    before = (c.escalation_level, c.priority)
    c.escalation_level = min(c.escalation_level + 1, len(ESCALATION_LADDER) - 1)
    c.priority = raise_priority(c.priority)
    if (c.escalation_level, c.priority) == before:
        return c, []
    return c, [Emit("escalated", {"escalation_level": [before[0], c.escalation_level],
                                  "escalated_to": ESCALATION_LADDER[c.escalation_level],
                                  "priority": [before[1], c.priority], "reason": reason})]


def _log(c: Complaint, target: str, kind: str, at: datetime, met: bool | None = None) -> None:
    c.timers.append(TimerEntry(target=target, kind=kind, at=at, met=met))  # type: ignore[arg-type]


def _fulfil(c: Complaint, target: str, now: datetime, rules: Rules) -> None:
    state = timer_state(c, target, rules)
    if state is None or state.fulfilled:
        return
    used = state.consumed
    if state.running_since is not None:
        used += target_spec(c.targets[target]).measure(rules.calendar, state.running_since, now)
    _log(c, target, "fulfilled", now, met=used <= state.length and not state.breached)


def _phase(c: Complaint, target: str) -> str | None:
    """``running``, ``paused`` or ``done`` for the target's current cycle; None if never started."""
    phase: str | None = None
    for e in c.timers:
        if e.target != target:
            continue
        if e.kind in ("started", "resumed"):
            phase = "running"
        elif e.kind == "paused":
            phase = "paused"
        elif e.kind == "fulfilled":
            phase = "done"
    return phase


def _cycle_running(c: Complaint, target: str) -> bool:
    return _phase(c, target) in ("running", "paused")


def _running(c: Complaint) -> list[str]:
    return [t for t in TARGETS if _phase(c, t) == "running"]


def _paused(c: Complaint) -> list[str]:
    return [t for t in TARGETS if _phase(c, t) == "paused"]
