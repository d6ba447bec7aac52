"""The staff directory: loading and its refusals, who is on duty, the ladder, routing of new complaints."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from services.complaints import staff
from services.complaints.app import build_app
from services.complaints.settings import ComplaintsSettings
from services.complaints.staff import Directory, StaffFileError
from shared.clock import FixedClock

SHANGHAI, LONDON = ZoneInfo("Asia/Shanghai"), ZoneInfo("Europe/London")
WEEKDAYS_9_TO_6 = [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "18:00"}]


def person(staff_id: str, role: str, *, tz: str = "Asia/Shanghai", hours: list | None = None, **more: Any) -> dict:
    return {"id": staff_id, "name": staff_id.title(), "role": role, "email": f"{staff_id}@example.com",
            "timezone": tz, "hours": hours or WEEKDAYS_9_TO_6, **more}


#: Care assigns to agents in Shanghai and London and a night agent; billing has no supervisor.
DIRECTORY: dict[str, Any] = {
    "routing": {"default_team": "care", "categories": {"billing": "billing"}},
    "teams": [{"name": "care", "supervisor": "sup-sh", "assign": "agent"},
              {"name": "billing", "manager": "mgr", "assign": "team"}],
    "staff": [
        person("a-sh", "agent", team="care"),
        person("a-sh2", "agent", team="care"),
        person("a-ldn", "agent", team="care", tz="Europe/London",
               hours=[{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}]),
        person("a-night", "agent", team="care",
               hours=[{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "22:00", "end": "06:00"}]),
        person("b-1", "agent", team="billing"),
        person("sup-sh", "supervisor", team="care", manager="mgr", deputies=["sup-ldn"]),
        person("sup-ldn", "supervisor", manager="mgr", tz="Europe/London",
               hours=[{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}]),
        person("mgr", "manager", hours=[{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00",
                                         "end": "20:00"}]),
    ],
}
#: Monday 2 March 2026 (Shanghai UTC+8, London UTC+0 until the end of March).
MONDAY_10_SH = FixedClock(datetime(2026, 3, 2, 10, 0, tzinfo=SHANGHAI)).now()
MONDAY_1830_SH = FixedClock(datetime(2026, 3, 2, 18, 30, tzinfo=SHANGHAI)).now()  # 10:30 in London
SATURDAY_10_SH = FixedClock(datetime(2026, 3, 7, 10, 0, tzinfo=SHANGHAI)).now()


def directory(doc: dict[str, Any] | None = None) -> Directory:
    return Directory.model_validate(doc or DIRECTORY)


def ids(members: list[staff.Member]) -> list[str]:
    return [m.id for m in members]


# --- On duty --------------------------------------------------------------------------------------

def test_on_duty_follows_each_persons_own_time_zone() -> None:
    d = directory()
    assert ids(staff.on_duty_agents(d, "care", MONDAY_10_SH)) == ["a-sh", "a-sh2"]
    # 18:30 in Shanghai is 10:30 in London: the Shanghai day shift is over, London's has begun.
    assert ids(staff.on_duty_agents(d, "care", MONDAY_1830_SH)) == ["a-ldn"]


def test_nobody_is_on_duty_at_the_weekend_on_weekday_shifts() -> None:
    assert staff.on_duty_agents(directory(), "care", SATURDAY_10_SH) == []


def test_an_overnight_shift_belongs_to_the_day_it_starts() -> None:
    night = directory().member("a-night")
    assert night is not None
    assert night.on_duty(datetime(2026, 3, 2, 23, 0, tzinfo=SHANGHAI))  # Monday night
    assert night.on_duty(datetime(2026, 3, 3, 5, 59, tzinfo=SHANGHAI))  # Monday's shift, Tuesday morning
    assert not night.on_duty(datetime(2026, 3, 3, 6, 0, tzinfo=SHANGHAI))
    assert night.on_duty(datetime(2026, 3, 7, 3, 0, tzinfo=SHANGHAI))  # Friday's shift runs into Saturday
    assert not night.on_duty(datetime(2026, 3, 2, 3, 0, tzinfo=SHANGHAI))  # Sunday night is not a shift


def test_a_shift_to_2400_covers_the_last_minute_of_the_day() -> None:
    doc = copy.deepcopy(DIRECTORY)
    doc["staff"][-1]["hours"] = [{"days": ["sat"], "start": "00:00", "end": "24:00"}]
    manager = directory(doc).member("mgr")
    assert manager is not None
    assert manager.on_duty(datetime(2026, 3, 7, 0, 0, tzinfo=SHANGHAI))
    assert manager.on_duty(datetime(2026, 3, 7, 23, 59, tzinfo=SHANGHAI))
    assert not manager.on_duty(datetime(2026, 3, 8, 0, 0, tzinfo=SHANGHAI))


# --- The ladder -----------------------------------------------------------------------------------

def test_the_supervisor_rung_is_the_teams_supervisor_while_on_duty() -> None:
    pick = staff.rung_person(directory(), "care", "supervisor", MONDAY_10_SH)
    assert pick is not None and (pick.member.id, pick.rung, pick.on_duty) == ("sup-sh", "supervisor", True)


def test_a_deputy_on_duty_stands_in_for_a_supervisor_who_is_not() -> None:
    pick = staff.rung_person(directory(), "care", "supervisor", MONDAY_1830_SH)
    assert pick is not None and (pick.member.id, pick.on_duty) == ("sup-ldn", True)


def test_with_nobody_of_the_rung_on_duty_the_rungs_person_is_picked_and_marked_off_duty() -> None:
    pick = staff.rung_person(directory(), "care", "supervisor", SATURDAY_10_SH)
    assert pick is not None and (pick.member.id, pick.on_duty) == ("sup-sh", False)


def test_the_manager_rung_is_the_supervisors_manager() -> None:
    pick = staff.rung_person(directory(), "care", "manager", MONDAY_10_SH)
    assert pick is not None and (pick.member.id, pick.rung, pick.on_duty) == ("mgr", "manager", True)


def test_a_team_without_a_supervisor_escalates_straight_to_its_manager() -> None:
    pick = staff.rung_person(directory(), "billing", "supervisor", MONDAY_10_SH)
    assert pick is not None and (pick.member.id, pick.rung) == ("mgr", "manager")


def test_the_handler_rung_and_an_unknown_team_have_no_fixed_person() -> None:
    assert staff.rung_person(directory(), "care", "handler", MONDAY_10_SH) is None
    assert staff.rung_person(directory(), "nowhere", "supervisor", MONDAY_10_SH) is None


# --- Routing of new complaints -------------------------------------------------------------------

def test_a_new_complaint_goes_to_the_least_loaded_agent_on_duty_ties_to_the_smallest_id() -> None:
    d = directory()
    assert staff.route(d, "delivery", MONDAY_10_SH, {}) == ("care", "a-sh")
    assert staff.route(d, "delivery", MONDAY_10_SH, {"a-sh": 2, "a-sh2": 1}) == ("care", "a-sh2")
    # The least loaded agent off duty is not picked.
    assert staff.route(d, "delivery", MONDAY_10_SH, {"a-sh": 2, "a-sh2": 2, "a-ldn": 0}) == ("care", "a-sh")


def test_with_no_agent_on_duty_a_new_complaint_waits_in_its_teams_queue() -> None:
    assert staff.route(directory(), "delivery", SATURDAY_10_SH, {}) == ("care", None)


def test_a_category_goes_to_its_team_and_a_team_queue_team_assigns_nobody() -> None:
    assert staff.route(directory(), "billing", MONDAY_10_SH, {}) == ("billing", None)
    assert staff.route(directory(), "price", MONDAY_10_SH, {}) == ("care", "a-sh")  # the default team


# --- Loading and refusing files -------------------------------------------------------------------

def test_the_shipped_development_directory_loads() -> None:
    d = staff.load()
    assert {t.name for t in d.teams} >= {d.routing.default_team}
    assert all(m.email or m.webhook for m in d.staff)


def test_a_json_file_loads_as_json(tmp_path: Path) -> None:
    path = tmp_path / "staff.json"
    path.write_text(json.dumps(DIRECTORY))
    assert staff.load(path).member("mgr") is not None


def _write(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "staff.yaml"
    path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return path


def _broken(**edits: Any) -> dict[str, Any]:
    doc = copy.deepcopy(DIRECTORY)
    for where, value in edits.items():
        section, index, field = where.split("__")
        doc[section][int(index)][field] = value
    return doc


@pytest.mark.parametrize(("doc", "message"), [
    (_broken(staff__0__team="nowhere"), "staff 'a-sh' names unknown team 'nowhere'"),
    (_broken(staff__1__id="a-sh"), "duplicate staff id: a-sh"),
    (_broken(teams__1__name="care"), "duplicate team: care"),
    (_broken(teams__0__supervisor="a-sh"), "team 'care' names 'a-sh' (agent) where a supervisor is needed"),
    (_broken(teams__0__supervisor="sup-gone"), "team 'care' names unknown staff id 'sup-gone'"),
    (_broken(staff__5__manager=None), "staff 'sup-sh': a supervisor needs a manager"),
    (_broken(staff__5__deputies=["a-sh"]), "(deputies) names 'a-sh' (agent) where a supervisor is needed"),
    (_broken(staff__0__team=None), "staff 'a-sh': an agent needs a team"),
    (_broken(teams__1__manager=None), "team 'billing' needs a supervisor or a manager"),
    (_broken(staff__0__email=None), "staff.0: needs an email or a webhook"),
    (_broken(staff__0__timezone="Mars/Olympus"), "staff.0.timezone"),
    (_broken(staff__0__hours=[{"days": ["mon"], "start": "25:00", "end": "26:00"}]), "is not a time of day"),
    (_broken(staff__0__hours=[{"days": ["moonday"], "start": "09:00", "end": "17:00"}]), "staff.0.hours.0.days.0"),
    (_broken(staff__0__role="ceo"), "staff.0.role"),
    (_broken(staff__0__regions=["East China"]), "regions and industries are an account manager's"),
    (_broken(staff__0__account_manager="perhaps"), "staff.0.account_manager"),
    (_broken(staff__0__account_manager=True, staff__0__industries=["x" * 101]), "staff.0.industries.0"),
    ({**DIRECTORY, "routing": {"default_team": "nowhere"}}, "routing.default_team names unknown team 'nowhere'"),
    ({**DIRECTORY, "extra": 1}, "extra: Extra inputs are not permitted"),
    ("staff: [unclosed", "cannot be read"),
], ids=["unknown-team", "duplicate-id", "duplicate-team", "supervisor-is-an-agent", "unknown-supervisor",
        "supervisor-without-manager", "deputy-of-another-role", "agent-without-team", "team-without-ladder",
        "no-contact", "bad-timezone", "bad-time", "bad-weekday", "bad-role", "regions-without-accounts",
        "bad-account-flag", "long-industry", "unknown-default-team",
        "unknown-key", "not-yaml"])
def test_a_hostile_staff_file_is_refused_at_start_saying_where_and_why(tmp_path: Path, doc: Any,
                                                                       message: str) -> None:
    path = _write(tmp_path, doc)
    with pytest.raises(StaffFileError, match="staff file staff.yaml: ") as refused:
        staff.load(path)
    assert message in str(refused.value)
    # The service does not start with it.
    with pytest.raises(StaffFileError):
        build_app(ComplaintsSettings(staff_file=str(path)))


def test_a_refused_email_address_is_not_quoted_in_the_error(tmp_path: Path) -> None:
    path = _write(tmp_path, _broken(staff__0__email="wang.secret@@corp..example"))
    with pytest.raises(StaffFileError) as refused:
        staff.load(path)
    assert "staff.0.email: not a valid e-mail address" in str(refused.value)
    assert "secret" not in str(refused.value) and "corp" not in str(refused.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StaffFileError, match="cannot be read"):
        staff.load(tmp_path / "absent.yaml")


def test_contacts_are_listed_only_for_a_reader_of_personal_data_and_never_in_a_repr() -> None:
    member = directory().member("sup-sh")
    assert member is not None
    assert "sup-sh@example.com" not in repr(member)
    hidden = staff.public_view(member, MONDAY_10_SH, contacts=False)
    shown = staff.public_view(member, MONDAY_10_SH, contacts=True)
    assert "email" not in hidden and hidden["on_duty"] is True
    assert shown["email"] == "sup-sh@example.com"
