"""The staff directory of the complaints service, and the pure rules that pick people from it.

The directory says who works in which team, who supervises each team and manages each supervisor,
when each person is on duty and how to reach them. It is read once at start from a YAML or JSON
file (``COMPLAINTS_STAFF_FILE``); a reference to an unknown team or person, a duplicate id or a
role that does not fit is a startup error. E-mail addresses are personal data: they are never part
of a model's repr or of a validation message.

The rules take the moment from the caller:

- on duty: a shift covers the local time of the person's time zone; a shift whose end is before its
  start runs overnight into the next day, which counts as the shift's day.
- a rung of the ladder (supervisor, manager) is a person and their deputies, in that order: the
  first of them on duty, else the person (``on_duty`` False). A team without a supervisor escalates
  to its manager. The handler rung has no fixed person: routing picks the agent.
- routing: a category goes to its team, else to the default team; a team that assigns to agents
  gives a new complaint to the least loaded of its agents on duty (fewest open complaints, ties by
  id), none on duty leaves it in the team's queue.
- account managers: anyone of the directory may also look after customers of their own
  (``account_manager: true``), optionally only those of some regions or industries (empty: any).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.contract.events import (
    ComplaintCategory,
    Locale,
    StaffId,
    StaffRole,
    StaffWebhook,
    TeamName,
    Timezone,
)

DEFAULT_STAFF_FILE = Path(__file__).with_name("staff.default.yaml")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = Weekday.__args__  # type: ignore[attr-defined]
DAY_MINUTES = 24 * 60


class StaffFileError(ValueError):
    """The staff directory file cannot be used; the message says where and why."""


def _minutes(value: str, *, end: bool) -> int:
    hours, _, minutes = value.partition(":")
    if not (len(hours) == 2 and len(minutes) == 2 and hours.isdigit() and minutes.isdigit()):
        raise ValueError(f"time {value[:16]!r} is not HH:MM")
    total = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or total > DAY_MINUTES or (total == DAY_MINUTES and not end):
        raise ValueError(f"time {value[:16]!r} is not a time of day (24:00 only ends a shift)")
    return total


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True, str_strip_whitespace=True)


class Shift(_Model):
    """Weekdays and a local time window, e.g. mon-fri 09:00-18:00, or 22:00-06:00 overnight."""

    days: Annotated[tuple[Weekday, ...], Field(min_length=1)]
    start: str
    end: str
    #: ``start`` and ``end`` in minutes of the day, worked out once: every alert asks who is on duty.
    _window_minutes: tuple[int, int] = PrivateAttr(default=(0, 0))

    @model_validator(mode="after")
    def _window(self) -> Shift:
        start, end = _minutes(self.start, end=False), _minutes(self.end, end=True)
        if start == end:
            raise ValueError("a shift's start and end are the same time; 00:00-24:00 is the whole day")
        self._window_minutes = (start, end)
        return self

    def covers(self, local: datetime) -> bool:
        """Whether the shift covers ``local``, a time on the person's own clock."""
        start, end = self._window_minutes
        minute = local.hour * 60 + local.minute
        today, yesterday = WEEKDAYS[local.weekday()], WEEKDAYS[(local.weekday() - 1) % 7]
        if start < end:
            return today in self.days and start <= minute < end
        return (today in self.days and minute >= start) or (yesterday in self.days and minute < end)


class Member(_Model):
    id: StaffId
    name: Annotated[str, Field(min_length=1, max_length=200)]
    role: StaffRole
    #: An agent's team (required); a supervisor's or manager's, for reference only.
    team: TeamName | None = None
    #: A supervisor's manager, to whom the supervisor's complaints escalate.
    manager: StaffId | None = None
    #: People of the same role who stand in, in this order, while this person is off duty.
    deputies: tuple[StaffId, ...] = ()
    email: Annotated[EmailStr, Field(max_length=254)] | None = Field(default=None, repr=False)
    webhook: StaffWebhook | None = Field(default=None, repr=False)
    locale: Locale | None = None
    timezone: Timezone
    hours: Annotated[tuple[Shift, ...], Field(min_length=1)]
    #: Also looks after customers of their own (VIP or custom needs, as the account rule says).
    account_manager: bool = False
    #: An account manager's customers by the profile's region and industry; empty: any.
    regions: tuple[Annotated[str, Field(min_length=1, max_length=100)], ...] = ()
    industries: tuple[Annotated[str, Field(min_length=1, max_length=100)], ...] = ()

    @model_validator(mode="after")
    def _reachable(self) -> Member:
        if not self.email and not self.webhook:
            raise ValueError("needs an email or a webhook")
        if (self.regions or self.industries) and not self.account_manager:
            raise ValueError("regions and industries are an account manager's: set account_manager")
        return self

    def serves(self, region: str | None, industry: str | None) -> bool:
        """Whether this account manager may take a customer of ``region`` and ``industry``."""
        return self.account_manager and (not self.regions or region in self.regions) and (
            not self.industries or industry in self.industries)

    def on_duty(self, now: datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.timezone))
        return any(shift.covers(local) for shift in self.hours)


class Team(_Model):
    name: TeamName
    supervisor: StaffId | None = None
    #: The manager a team without a supervisor escalates to.
    manager: StaffId | None = None
    #: ``agent``: a new complaint goes to the least loaded agent on duty; ``team``: to the team's queue.
    assign: Literal["agent", "team"] = "team"


class Routing(_Model):
    default_team: TeamName
    categories: dict[ComplaintCategory, TeamName] = {}


class Directory(_Model):
    routing: Routing
    teams: Annotated[tuple[Team, ...], Field(min_length=1)]
    staff: Annotated[tuple[Member, ...], Field(min_length=1)]
    _members: dict[str, Member] = PrivateAttr(default_factory=dict)
    _teams: dict[str, Team] = PrivateAttr(default_factory=dict)

    @field_validator("teams")
    @classmethod
    def _unique_teams(cls, teams: tuple[Team, ...]) -> tuple[Team, ...]:
        _unique("team", [t.name for t in teams])
        return teams

    @field_validator("staff")
    @classmethod
    def _unique_staff(cls, staff: tuple[Member, ...]) -> tuple[Member, ...]:
        _unique("staff id", [m.id for m in staff])
        return staff

    @model_validator(mode="after")
    def _references(self) -> Directory:
        members = {m.id: m for m in self.staff}
        teams = {t.name: t for t in self.teams}
        problems: list[str] = []

        def person(ref: str | None, role: str, where: str) -> None:
            if ref is None:
                return
            found = members.get(ref)
            if found is None:
                problems.append(f"{where} names unknown staff id {ref!r}")
            elif found.role != role:
                problems.append(f"{where} names {ref!r} ({found.role}) where a {role} is needed")

        def team(ref: str | None, where: str) -> None:
            if ref is not None and ref not in teams:
                problems.append(f"{where} names unknown team {ref!r}")

        for m in self.staff:
            where = f"staff {m.id!r}"
            team(m.team, where)
            if m.role == "agent" and m.team is None:
                problems.append(f"{where}: an agent needs a team")
            if m.role == "supervisor" and m.manager is None:
                problems.append(f"{where}: a supervisor needs a manager")
            if m.role != "supervisor" and m.manager is not None:
                problems.append(f"{where}: only a supervisor has a manager")
            person(m.manager, "manager", where)
            for deputy in m.deputies:
                if deputy == m.id:
                    problems.append(f"{where} is their own deputy")
                person(deputy, m.role, f"{where} (deputies)")
        for t in self.teams:
            where = f"team {t.name!r}"
            person(t.supervisor, "supervisor", where)
            person(t.manager, "manager", where)
            if t.supervisor is None and t.manager is None:
                problems.append(f"{where} needs a supervisor or a manager to escalate to")
            if t.assign == "agent" and not any(m.team == t.name and m.role == "agent" for m in self.staff):
                problems.append(f"{where} assigns to agents but has none")
        team(self.routing.default_team, "routing.default_team")
        for category, name in self.routing.categories.items():
            team(name, f"routing.categories.{category}")
        if problems:
            raise ValueError("; ".join(problems))
        self._members, self._teams = members, teams
        return self

    def member(self, staff_id: str | None) -> Member | None:
        return self._members.get(staff_id) if staff_id else None

    def team(self, name: str | None) -> Team | None:
        return self._teams.get(name) if name else None

    def team_for(self, category: str) -> str:
        return self.routing.categories.get(category, self.routing.default_team)  # type: ignore[call-overload]

    def agents(self, team: str) -> list[Member]:
        return [m for m in self.staff if m.role == "agent" and m.team == team]

    def account_managers(self) -> list[Member]:
        return [m for m in self.staff if m.account_manager]


def _unique(what: str, values: list[str]) -> None:
    seen: set[str] = set()
    twice: set[str] = set()
    for value in values:
        (twice if value in seen else seen).add(value)
    if twice:
        raise ValueError(f"duplicate {what}: {', '.join(twice)}")


def load(path: str | Path | None = None) -> Directory:
    """The directory in ``path`` (``.json`` as JSON, anything else as YAML), or the shipped
    development one; ``StaffFileError`` says what is wrong with it."""
    source = Path(path) if path else DEFAULT_STAFF_FILE
    try:
        text = source.read_text(encoding="utf-8")
        raw = json.loads(text) if source.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise StaffFileError(f"staff file {source.name}: cannot be read: {type(exc).__name__}") from None
    try:
        return Directory.model_validate(raw)
    except ValidationError as exc:
        raise StaffFileError(f"staff file {source.name}: {'; '.join(map(_reason, exc.errors()))}") from None


def _reason(error: Any) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "file"
    # The e-mail validator quotes parts of the address it refuses: say only that it is refused.
    message = "not a valid e-mail address" if "email" in error["loc"] else error["msg"]
    return f"{where}: {message.removeprefix('Value error, ')}"


# --- Rules --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pick:
    """The person a rule chose, the rung they stand on and whether they are on duty now."""

    member: Member
    rung: str
    on_duty: bool


def rung_person(directory: Directory, team: str, rung: str, now: datetime) -> Pick | None:
    """The person of ``rung`` for ``team`` at ``now``; None for the handler rung or an unknown team."""
    found = directory.team(team)
    if found is None or rung == "handler":
        return None
    if rung == "supervisor":
        if found.supervisor is None:  # nobody between the handler and the manager
            return rung_person(directory, team, "manager", now)
        primary = directory.member(found.supervisor)
    else:
        supervisor = directory.member(found.supervisor)
        primary = directory.member(supervisor.manager if supervisor else found.manager)
    if primary is None:
        return None
    candidates = [primary, *(d for d in map(directory.member, primary.deputies) if d is not None)]
    for candidate in candidates:
        if candidate.on_duty(now):
            return Pick(candidate, rung, True)
    return Pick(primary, rung, False)


def least_loaded(agents: list[Member], loads: Mapping[str, int]) -> Member | None:
    """The agent with the fewest open complaints; ties go to the smallest id."""
    return min(agents, key=lambda m: (loads.get(m.id, 0), m.id), default=None)


def route(directory: Directory, category: str, now: datetime, loads: Mapping[str, int]) -> tuple[str, str | None]:
    """The team a new complaint of ``category`` goes to, and its agent where the team assigns to one."""
    team = directory.team_for(category)
    if directory.team(team).assign != "agent":  # type: ignore[union-attr]
        return team, None
    agent = least_loaded(on_duty_agents(directory, team, now), loads)
    return team, agent.id if agent else None


def on_duty_agents(directory: Directory, team: str, now: datetime) -> list[Member]:
    return [m for m in directory.agents(team) if m.on_duty(now)]


def agent_teams(directory: Directory) -> list[str]:
    """The teams whose new complaints go to an agent."""
    return [t.name for t in directory.teams if t.assign == "agent"]


def public_view(member: Member, now: datetime, *, contacts: bool) -> dict[str, Any]:
    """A member as the API lists them: contacts only for a reader allowed personal data."""
    view = member.model_dump(mode="json", exclude={"email", "webhook"})
    view["on_duty"] = member.on_duty(now)
    if contacts:
        view.update(email=member.email, webhook=member.webhook)
    return view
