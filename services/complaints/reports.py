"""The complaints report, computed here from the complaints of a window (not in the store)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from .domain import Complaint


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least ``q`` of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _hours(values: list[float]) -> dict[str, float | None]:
    med, p90 = median(values), percentile(values, 0.9)
    return {"count": len(values), "median_hours": None if med is None else round(med, 3),
            "p90_hours": None if p90 is None else round(p90, 3)}


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def csat(scores: list[int]) -> dict[str, Any]:
    return {"responses": len(scores), "average": round(sum(scores) / len(scores), 3) if scores else None,
            # The usual CSAT: share of satisfied answers (4 or 5 on the 1-5 scale).
            "satisfied_rate": _rate(sum(1 for s in scores if s >= 4), len(scores))}


def general_satisfaction(answers: Iterable[tuple[str | None, int]]) -> dict[str, Any]:
    """CSAT of the survey answers that scored no complaint, in all and by the customer's tier when
    they answered (``vip``, else the value tier; ``none`` before any classification)."""
    by_tier: dict[str, list[int]] = {}
    for tier, score in answers:
        by_tier.setdefault(tier or "none", []).append(score)
    return {**csat([s for scores in by_tier.values() for s in scores]),
            "by_tier": {tier: csat(scores) for tier, scores in sorted(by_tier.items())}}


def figures(complaints: list[Complaint]) -> dict[str, Any]:
    """First response and resolution times, SLA attainment, CSAT and reopen rate of ``complaints``."""
    first_response = [(c.first_response_at - c.opened_at).total_seconds() / 3600
                      for c in complaints if c.first_response_at]
    resolution = [(c.first_resolved_at - c.opened_at).total_seconds() / 3600
                  for c in complaints if c.first_resolved_at]
    met: dict[str, list[bool]] = {"first_response": [], "resolution": []}
    for c in complaints:
        for target, outcomes in met.items():
            # A target counts once it is settled: fulfilled (met or late) or breached while open.
            fulfilled = [e.met for e in c.timers if e.target == target and e.kind == "fulfilled"]
            breached = any(e.target == target and e.kind == "breached" for e in c.timers)
            if fulfilled:
                outcomes.append(bool(fulfilled[0]) and not breached)
            elif breached:
                outcomes.append(False)
    scores = [c.feedback[-1].score for c in complaints if c.feedback]
    resolved = [c for c in complaints if c.first_resolved_at]
    return {
        "total": len(complaints),
        "first_response": _hours(first_response),
        "resolution": _hours(resolution),
        "sla_attainment": {target: {"settled": len(v), "met": sum(v), "rate": _rate(sum(v), len(v))}
                           for target, v in met.items()},
        "csat": csat(scores),
        "reopen_rate": _rate(sum(1 for c in resolved if c.reopen_count), len(resolved)),
        "breached": sum(1 for c in complaints if c.breached),
        "escalated": sum(1 for c in complaints if c.escalation_level > 0),
    }


def _grouped(complaints: list[Complaint], key: Any) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Complaint]] = {}
    for c in complaints:
        groups.setdefault(key(c) or "unassigned", []).append(c)
    return {name: figures(group) for name, group in sorted(groups.items())}


def complaint_report(complaints: list[Complaint], start: datetime, end: datetime,
                     general: Iterable[tuple[str | None, int]] = ()) -> dict[str, Any]:
    """Figures for the complaints opened in ``[start, end)``: for all of them, and per team and per
    person who holds each complaint now (an escalated complaint counts for whoever it went to); and
    the general satisfaction of the answers given in the window (``(tier, score)`` each)."""
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        **figures(complaints),
        "by_category": dict(Counter(c.category for c in complaints)),
        "by_channel": dict(Counter(c.channel for c in complaints)),
        "by_team": _grouped(complaints, lambda c: c.team),
        "by_assignee": _grouped(complaints, lambda c: c.assignee),
        "general_satisfaction": general_satisfaction(general),
    }
