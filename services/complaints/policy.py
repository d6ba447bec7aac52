"""SLA policies and priority: ordered policies, first match wins; priority from severity and tier."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .calendar import BusinessCalendar

TargetName = Literal["first_response", "update", "resolution"]
TARGETS: tuple[TargetName, ...] = ("first_response", "update", "resolution")
PRIORITIES = ("p1", "p2", "p3", "p4")
SEVERITY_PRIORITY = {"critical": "p1", "high": "p2", "normal": "p3", "low": "p4"}
#: Tiers served first: their complaints rise one priority level and match the shorter targets.
PREFERRED_TIERS = frozenset({"vip", "high"})
ESCALATION_LADDER = ("handler", "supervisor", "manager")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(h|wh|wd)$")


def _duration(value: str) -> str:
    if not _DURATION.match(value):
        raise ValueError("a target is a number and a unit: 24h (clock hours), 8wh (working hours), 3wd (working days)")
    return value


Duration = Annotated[str, AfterValidator(_duration)]


class Target:
    """A target as clock hours (``h``) or working time on the business calendar (``wh``, ``wd``)."""

    def __init__(self, text: str) -> None:
        match = _DURATION.match(text)
        if not match:
            raise ValueError(f"bad target {text!r}")
        self.text = text
        self.amount = float(match.group(1))
        self.unit = match.group(2)

    def length(self, calendar: BusinessCalendar) -> timedelta:
        if self.unit == "h":
            return timedelta(hours=self.amount)
        if self.unit == "wh":
            return timedelta(hours=self.amount)
        return calendar.day_length * self.amount

    def measure(self, calendar: BusinessCalendar, start: datetime, end: datetime) -> timedelta:
        """Time that counts against this target between two moments."""
        if self.unit == "h":
            return max(end - start, timedelta())
        return calendar.between(start, end)

    def advance(self, calendar: BusinessCalendar, start: datetime, amount: timedelta) -> datetime:
        if self.unit == "h":
            return start + max(amount, timedelta())
        return calendar.add(start, amount)


class SlaPolicy(BaseModel):
    """One policy: empty match lists match anything. Targets absent from ``targets`` do not apply."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_\-]+$")]
    priorities: frozenset[Literal["p1", "p2", "p3", "p4"]] = frozenset()
    categories: frozenset[str] = frozenset()
    complexities: frozenset[Literal["standard", "complex"]] = frozenset()
    tiers: frozenset[str] = frozenset()
    targets: dict[TargetName, Duration]

    def matches(self, *, priority: str, category: str, complexity: str, tier: str | None) -> bool:
        return ((not self.priorities or priority in self.priorities)
                and (not self.categories or category in self.categories)
                and (not self.complexities or complexity in self.complexities)
                and (not self.tiers or tier in self.tiers))


DEFAULT_POLICIES: tuple[SlaPolicy, ...] = (
    SlaPolicy(name="critical", priorities=frozenset({"p1"}),
              targets={"first_response": "2h", "update": "4wh", "resolution": "1wd"}),
    SlaPolicy(name="preferred-complex", tiers=PREFERRED_TIERS, complexities=frozenset({"complex"}),
              targets={"first_response": "4h", "update": "1wd", "resolution": "5wd"}),
    SlaPolicy(name="preferred", tiers=PREFERRED_TIERS,
              targets={"first_response": "4h", "resolution": "2wd"}),
    SlaPolicy(name="complex", complexities=frozenset({"complex"}),
              targets={"first_response": "24h", "update": "2wd", "resolution": "7wd"}),
    SlaPolicy(name="standard", targets={"first_response": "24h", "resolution": "3wd"}),
)


def match_policy(policies: tuple[SlaPolicy, ...], *, priority: str, category: str, complexity: str,
                 tier: str | None) -> SlaPolicy:
    for policy in policies:
        if policy.matches(priority=priority, category=category, complexity=complexity, tier=tier):
            return policy
    raise LookupError("no SLA policy matches; the last policy should match everything")


def customer_tier(vip: str | None, value_tier: str | None) -> str | None:
    """The one tier label complaints use: ``vip`` outranks the value tier."""
    return "vip" if vip == "vip" else value_tier


def priority_for(severity: str, tier: str | None) -> str:
    base = SEVERITY_PRIORITY[severity]
    return raise_priority(base) if tier in PREFERRED_TIERS else base


def raise_priority(priority: str) -> str:
    return PRIORITIES[max(0, PRIORITIES.index(priority) - 1)]
