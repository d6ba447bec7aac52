"""The dashboard: the report routes of the services, asked side by side, drawn as charts.

Figures are kept for a short while per key (``CONSOLE_REPORT_CACHE_S``): the segments report reads
every customer's classification, which is too slow to repeat on every page view.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from . import charts
from .cache import key_id
from .core import Ctx, context, down_notice
from .i18n import DIMENSIONS, TIERS, Translator
from .upstream import Reply

router = APIRouter()
MONTHS = 6
SLA_DAYS = 90
TEAMS = ("handler", "supervisor", "manager")
#: People shown in the table per person: those holding the most complaints.
PEOPLE = 15


def _month_starts(now: datetime, count: int) -> list[datetime]:
    first = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    starts = [first]
    for _ in range(count - 1):
        starts.insert(0, (starts[0] - timedelta(days=1)).replace(day=1))
    return starts


async def _none(service: str, scope: str) -> Reply:
    return Reply(service, 403, {"detail": f"lacks scope {scope}"})


async def gather_figures(ctx: Ctx) -> dict[str, Any]:
    now = datetime.now(UTC)
    months = _month_starts(now, MONTHS)
    bounds = [(start, months[i + 1] if i + 1 < len(months) else now + timedelta(seconds=1))
              for i, start in enumerate(months)]
    can_t, can_c, can_n = ctx.may("tiers:read"), ctx.may("complaints:read"), ctx.may("notifications:read")
    iso = datetime.isoformat
    wait = ctx.state.settings.report_timeout_s

    def report(service: str, path: str, **params: Any) -> Awaitable[Reply]:
        return ctx.call(service, "GET", path, params=params or None, timeout=wait)
    segments, sla, breached, messages, *monthly = await asyncio.gather(
        report("tiering", "/reports/segments") if can_t else _none("tiering", "tiers:read"),
        report("complaints", "/reports/complaints", **{"from": iso(now - timedelta(days=SLA_DAYS)),
                                                       "to": iso(now + timedelta(seconds=1))})
        if can_c else _none("complaints", "complaints:read"),
        report("complaints", "/complaints", breached="true", limit=500) if can_c else _none("complaints",
                                                                                           "complaints:read"),
        report("notifications", "/reports/notifications") if can_n else _none("notifications", "notifications:read"),
        *((report("complaints", "/reports/complaints", **{"from": iso(a), "to": iso(b)}) for a, b in bounds)
          if can_c else ()),
    )
    return {"segments": segments, "sla": sla, "breached": breached, "messages": messages,
            "monthly": list(zip([m.strftime("%Y-%m") for m in months], monthly, strict=False)), "at": now}


def _why(t: Translator, reply: Reply) -> str:
    if reply.status == 403:
        return t("dashboard.no_scope", scope=reply.detail().split("scope")[-1].strip())
    return down_notice(t, reply) or t("dashboard.no_data")


def holders(groups: Any, limit: int | None = None) -> list[dict[str, Any]]:
    """One row per team or person of the complaints report: the most complaints first."""
    rows = []
    for name, f in (groups or {}).items() if isinstance(groups, dict) else ():
        sla = f.get("sla_attainment") or {}
        rows.append({"name": name, "total": f.get("total", 0), "breached": f.get("breached", 0),
                     "escalated": f.get("escalated", 0),
                     "first_response": (sla.get("first_response") or {}).get("rate"),
                     "resolution": (sla.get("resolution") or {}).get("rate"),
                     "resolution_hours": (f.get("resolution") or {}).get("median_hours"),
                     "csat": (f.get("csat") or {}).get("average"), "responses": (f.get("csat") or {}).get("responses", 0)})
    rows.sort(key=lambda r: (-r["total"], r["name"]))
    return rows[:limit] if limit else rows


def general_satisfaction(figures: Any) -> list[dict[str, Any]]:
    """Per tier, the answers that scored no complaint; empty before there are any."""
    if not isinstance(figures, dict) or not figures.get("responses"):
        return []
    rows = [{"tier": tier, **values} for tier, values in (figures.get("by_tier") or {}).items()]
    return [*rows, {"tier": None, **{k: figures.get(k) for k in ("responses", "average", "satisfied_rate")}}]


def build(t: Translator, figures: dict[str, Any]) -> dict[str, Any]:
    """Each panel: a chart, or the reason it cannot be drawn, and a few figures beside it."""
    panels: dict[str, Any] = {}
    segments: Reply = figures["segments"]
    if segments.ok:
        body = segments.body
        dist = body.get("distribution") or {}
        panels["distribution"] = []
        for dim in DIMENSIONS:
            counts = dist.get(dim) or {}
            order = [v for v in TIERS.get(dim, {}) if v in counts] + sorted(v for v in counts if v not in TIERS.get(dim, {}))
            chart = charts.bars([t.tier(dim, v) for v in order], [(t(f"dim.{dim}"), [counts[v] for v in order])],
                                width=360, height=220, horizontal=True, legend=False) if order else None
            panels["distribution"].append({"dim": dim, "chart": chart})
        pareto = [row for row in body.get("pareto") or [] if row.get("customers")]
        panels["pareto"] = charts.bars(
            [t.tier("abc_class", row["abc_class"]) for row in pareto],
            [(t("dashboard.customer_share"), [row["customer_share"] * 100 for row in pareto]),
             (t("dashboard.revenue_share"), [row["spend_share"] * 100 for row in pareto])],
            percent=True) if pareto else None
        panels["pareto_rows"] = body.get("pareto") or []
        panels["customers"] = body.get("customers", 0)
    else:
        panels["segments_why"] = _why(t, segments)

    sla: Reply = figures["sla"]
    if sla.ok:
        attainment = sla.body.get("sla_attainment") or {}
        targets = [k for k, v in attainment.items() if v.get("rate") is not None]
        panels["sla"] = charts.bars([f"{t(f'target.{k}')} ({attainment[k]['met']}/{attainment[k]['settled']})"
                                     for k in targets],
                                    [("SLA", [attainment[k]["rate"] * 100 for k in targets])], percent=True,
                                    legend=False) if targets else None
        panels["sla_body"] = sla.body
        panels["by_team"] = holders(sla.body.get("by_team"))
        panels["by_assignee"] = holders(sla.body.get("by_assignee"), limit=PEOPLE)
        panels["general"] = general_satisfaction(sla.body.get("general_satisfaction"))
    else:
        panels["sla_why"] = _why(t, sla)

    breached: Reply = figures["breached"]
    if breached.ok:
        levels = {team: 0 for team in TEAMS}
        for item in breached.body.get("items", []):
            levels[item.get("escalated_to") or "handler"] = levels.get(item.get("escalated_to") or "handler", 0) + 1
        panels["escalations"] = charts.bars([t(f"team.{k}") for k in levels], [("", list(levels.values()))],
                                            legend=False) if any(levels.values()) else None
        panels["breached_count"] = breached.body.get("count", 0)
    else:
        panels["escalations_why"] = _why(t, breached)

    monthly = figures["monthly"]
    usable = [(label, r.body.get("csat") or {}) for label, r in monthly if r.ok]
    if usable and any(c.get("responses") for _, c in usable):
        panels["csat"] = charts.lines(
            [label for label, _ in usable],
            [(t("dashboard.csat_avg"), [c.get("average") for _, c in usable], True),
             (t("dashboard.csat_rate"), [None if c.get("satisfied_rate") is None else c["satisfied_rate"] * 100
                                          for _, c in usable], False)])
    else:
        failed = next((r for _, r in monthly if not r.ok), None)
        panels["csat_why"] = _why(t, failed) if failed is not None else (
            _why(t, sla) if not sla.ok else t("dashboard.no_data"))

    messages: Reply = figures["messages"]
    if messages.ok:
        body = messages.body
        rows: list[tuple[str, str, int]] = []  # (label, outcome, count)
        for channel, count in sorted((body.get("by_channel") or {}).get("sent", {}).items()):
            rows.append((f"{t('outcome.sent')} · {channel}", "sent", count))
        for outcome in ("suppressed", "failed"):
            for reason, count in sorted((body.get("by_reason") or {}).get(outcome, {}).items()):
                rows.append((f"{t(f'outcome.{outcome}')} · {t.word('reason', reason)}", outcome, count))
        outcomes = [o for o in ("sent", "suppressed", "failed") if any(r[1] == o for r in rows)]
        series = [(t(f"outcome.{o}"), [c if kind == o else None for _, kind, c in rows]) for o in outcomes]
        panels["messages"] = charts.bars([r[0] for r in rows], series, horizontal=True, width=960,
                                         height=max(200, 90 + 30 * len(rows))) if rows else None
        panels["message_totals"] = body.get("totals") or {}
    else:
        panels["messages_why"] = _why(t, messages)

    if not segments.ok:
        panels["churn_why"] = _why(t, segments)
    else:
        # Per reason, a bar stacked by value tier (the segments report counts them all).
        by_reason = ((segments.body.get("churn_risk") or {}).get("by_reason") or {})
        order = [r for r in sorted(by_reason, key=lambda r: -by_reason[r].get("customers", 0))
                 if by_reason[r].get("customers")]
        tiers = [v for v in (*TIERS.get("value_tier", {}), "none")
                 if any(v in by_reason[r].get("by_value_tier", {}) for r in order)]
        panels["churn"] = charts.bars(
            [t(f"churn.{r}") for r in order],
            [(t.tier("value_tier", v) if v != "none" else t("churn.no_tier"),
              [by_reason[r]["by_value_tier"].get(v, 0) for r in order]) for v in tiers],
            horizontal=True, stacked=True) if order else None
        panels["churn_note"] = t("dashboard.churn_total", total=(segments.body.get("churn_risk") or {}).get(
            "customers", 0)) if order else None
    return panels


@router.get("/dashboard")
async def dashboard(request: Request) -> Response:
    ctx = await context(request)
    assert ctx.session is not None
    cache = ctx.state.cache

    async def compute() -> dict[str, Any]:
        figures = await gather_figures(ctx)
        return {"figures": figures, "panels": build(ctx.t, figures)}

    def complete(value: dict[str, Any]) -> bool:
        # Only what every service answered is kept: a service back up shows at once.
        figures = value["figures"]
        replies = [figures[k] for k in ("segments", "sla", "breached", "messages")] + [r for _, r in figures["monthly"]]
        return not any(isinstance(r, Reply) and r.unavailable for r in replies)

    # The figures of a while ago at once rather than a wait of seconds: the page says as of when.
    result = await cache.get(("dashboard", key_id(ctx.session.key), ctx.t.language), compute, complete, stale_ok=True)
    return ctx.render("dashboard.html", panels=result["panels"], at=result["figures"]["at"], dimensions=DIMENSIONS)
