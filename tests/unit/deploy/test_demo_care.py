"""The demo's care team: the plan of its steps, the contacts it records, and the timeline it plays in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from deploy.demo_care import AgentAction, agent_plan, complaint_plan, contact, timeline
from shared.contract.events import ComplaintSubmitted, ComplaintSubmittedData

T0 = datetime(2011, 3, 1, 10, 0, tzinfo=UTC)


def _complaint(n: int, *, complexity: str = "standard", at: datetime = T0) -> ComplaintSubmitted:
    return ComplaintSubmitted(
        id=f"00000000-0000-4000-8000-{n:012d}", source="test", subject=f"C{n % 97}", time=at,
        data=ComplaintSubmittedData(complaint_id=f"CP-{n}", channel="email", category="delivery", severity="normal",
                                    complexity=complexity, subject="late", description=""),
    )


COMPLAINTS = [_complaint(n, complexity="complex" if n % 4 == 0 else "standard", at=T0 + timedelta(hours=n))
              for n in range(600)]


# --- the plan -----------------------------------------------------------------------------------------

def test_the_plan_is_the_same_for_the_same_seed_and_differs_for_another() -> None:
    assert agent_plan(COMPLAINTS, 7) == agent_plan(COMPLAINTS, 7)
    assert agent_plan(COMPLAINTS, 7) != agent_plan(COMPLAINTS, 8)


def test_a_complaint_is_handled_alike_whatever_else_is_replayed() -> None:
    alone = complaint_plan(COMPLAINTS[42], 7)
    among = [a for a in agent_plan(COMPLAINTS, 7) if a.complaint_id == "CP-42"]
    assert alone == among


def test_the_plan_is_in_time_order_and_steps_of_a_complaint_follow_its_opening() -> None:
    plan = agent_plan(COMPLAINTS, 7)
    assert [a.at for a in plan] == sorted(a.at for a in plan)
    opened = {c.data.complaint_id: c.time for c in COMPLAINTS}
    assert all(a.at > opened[a.complaint_id] for a in plan)


def test_each_complaint_is_acknowledged_before_it_is_resolved_and_surveyed_after() -> None:
    for complaint in COMPLAINTS:
        kinds = [a.kind for a in complaint_plan(complaint, 7)]
        if not kinds:
            continue
        assert kinds[0] == "acknowledge"
        assert kinds.count("acknowledge") == 1
        if "survey" in kinds:
            assert "resolve" in kinds[:kinds.index("survey")]
        steps = complaint_plan(complaint, 7)
        assert [a.step for a in steps] == list(range(len(steps)))
        assert [a.at for a in steps] == sorted(a.at for a in steps)


def test_a_seeded_share_is_left_unhandled_and_some_are_handled_late() -> None:
    plans = {c.data.complaint_id: complaint_plan(c, 7) for c in COMPLAINTS}
    unhandled = sum(1 for p in plans.values() if not p)
    assert 0.03 * len(plans) < unhandled < 0.15 * len(plans)
    opened = {c.data.complaint_id: c.time for c in COMPLAINTS}
    delays = [(p[0].at - opened[cid]) / timedelta(hours=1) for cid, p in plans.items() if p]
    # Some within the tightest first-response target (2 h), some beyond the loosest (24 h).
    assert sum(d <= 2 for d in delays) > 0.3 * len(delays)
    assert 0.03 * len(delays) < sum(d > 24 for d in delays) < 0.25 * len(delays)


def test_only_complex_complaints_get_progress_updates() -> None:
    plan = agent_plan(COMPLAINTS, 7)
    complex_ids = {c.data.complaint_id for c in COMPLAINTS if c.data.complexity == "complex"}
    updated = {a.complaint_id for a in plan if a.kind == "update"}
    assert updated and updated <= complex_ids


def test_a_low_survey_score_is_followed_by_a_second_resolution() -> None:
    plan = agent_plan(COMPLAINTS, 7)
    surveys = [a for a in plan if a.kind == "survey"]
    assert {a.score for a in surveys} == {1, 2, 3, 4, 5}
    for survey in surveys:
        later = [a for a in plan if a.complaint_id == survey.complaint_id and a.step > survey.step]
        assert [a.kind for a in later] == (["resolve"] if survey.score <= 2 else [])


def test_steps_after_the_end_of_the_replay_are_left_out() -> None:
    end = T0 + timedelta(days=3)
    assert all(a.at <= end for a in agent_plan(COMPLAINTS, 7, until=end))
    assert len(agent_plan(COMPLAINTS, 7, until=end)) < len(agent_plan(COMPLAINTS, 7))


def test_the_contact_of_a_step_names_its_complaint_and_is_the_same_on_a_second_run() -> None:
    step = AgentAction(T0, "acknowledge", "CP-1", "C1", "care.ana", 0)
    event = contact(step)
    assert (event.subject, event.time, event.data.kind, event.data.complaint_id) == ("C1", T0, "call", "CP-1")
    assert event.data.satisfaction is None
    assert contact(step).id == event.id
    survey = contact(AgentAction(T0, "survey", "CP-1", "C1", "care.ana", 2, score=4))
    assert (survey.data.kind, survey.data.satisfaction, survey.data.direction) == ("survey_response", 4, "inbound")
    assert survey.id != event.id


def test_the_timeline_puts_steps_among_the_events_by_time_events_first_on_a_tie() -> None:
    events = [_complaint(1, at=T0), _complaint(2, at=T0 + timedelta(hours=2))]
    steps = [AgentAction(T0 + timedelta(hours=1), "acknowledge", "CP-1", "C1", "care.ana", 0),
             AgentAction(T0 + timedelta(hours=2), "resolve", "CP-1", "C1", "care.ana", 1)]
    assert list(timeline(events, steps)) == [events[0], steps[0], events[1], steps[1]]
