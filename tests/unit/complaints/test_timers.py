"""Every target's timer read from the log at once is what reading each target on its own gives."""

from __future__ import annotations

from datetime import timedelta

from services.complaints import domain, timers
from services.complaints.domain import Complaint
from services.complaints.repository import changed_fields

from .test_domain import MONDAY, RULES, at, go, opened


def histories() -> list[Complaint]:
    """Complaints whose timers have started, paused, resumed, warned, breached and been fulfilled."""
    complex_case = opened(complexity="complex")
    waiting = go(complex_case, "acknowledged", "investigating", "waiting_on_customer", at=at(2))
    resumed = go(waiting, "investigating", at=at(30))
    warned, _ = domain.tick(opened(), now=at(19), rules=RULES)
    breached, _ = domain.tick(opened(tier="vip"), now=at(200), rules=RULES)
    resolved = go(opened(), "acknowledged", "investigating", "resolved", at=at(5))
    reopened, _ = domain.reopen(resolved, now=at(50), rules=RULES, reason="back")
    return [opened(), complex_case, waiting, resumed, warned, breached, resolved, reopened]


def test_every_timer_read_at_once_is_each_one_read_alone() -> None:
    for complaint in histories():
        alone = {t: timers.timer_state(complaint, t, RULES) for t in ("first_response", "update", "resolution")}
        assert timers.timer_states(complaint, RULES) == {t: s for t, s in alone.items() if s is not None}


def test_a_tick_leaves_the_timers_as_reading_its_log_again_gives() -> None:
    for complaint in histories():
        for hours in (1, 19, 26, 80, 400):
            ticked, _ = domain.tick(complaint, now=MONDAY + timedelta(hours=hours), rules=RULES)
            again = timers.refresh_sla(ticked.model_copy(), MONDAY + timedelta(hours=hours), RULES)
            assert ticked == again


def test_the_changed_fields_are_those_an_operation_changed() -> None:
    complaint = opened()
    warned, _ = domain.tick(complaint, now=at(19), rules=RULES)
    assert changed_fields(complaint, warned) == {"timers", "next_check_at"}
    noted, _ = domain.add_comment(complaint, "ann", "Called", now=at(1), rules=RULES)
    assert changed_fields(complaint, noted) == {"comments"}
    assert changed_fields(complaint, complaint.model_copy()) == set()
