"""The demo's results: aggregations of the events it reads back (pure), the printed summary, and the
HTML report with its charts as inline SVG (``.run/report.html``, nothing to fetch)."""

from __future__ import annotations

import html
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from deploy.replay import LONDON

ATTRIBUTION = ('UCI Machine Learning Repository dataset #352 "Online Retail" (Dr Daqing Chen, London South Bank '
               "University), CC BY 4.0; Chen, Sain & Guo (2012), doi:10.1057/dbm.2012.17")
MAPPING_RULES = (
    "A purchase invoice is order.purchase.completed (order_id = invoice number, GBP, channel online, "
    "UK local time).",
    "A cancellation (C... invoice) is order.purchase.refunded without order_id, since the data does not name "
    "the cancelled invoice; it lowers the customer's spend, never below zero.",
    "An invoice summing to zero or less breaks the contract (amounts are > 0): it is rejected and counted, "
    "never published.",
)
LIFECYCLE_STAGES = ("prospect", "new", "repeat", "loyal", "at_risk", "churned", "reactivated")
DIRECTIONS = ("initial", "upgrade", "downgrade", "lateral")


# --- Aggregations (pure) ----------------------------------------------------------------------------

def _unique(events: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """Each event once: a producer's retry repeats an event under the same id."""
    seen: set[str] = set()
    for event in events:
        if event.get("id") not in seen:
            seen.add(event.get("id"))
            yield event


def _month(at: datetime) -> str:
    return at.astimezone(LONDON).strftime("%Y-%m")  # the retailer's months, in UK time


def months(start: str | datetime, end: str | datetime) -> list[str]:
    """The months from ``start`` to ``end``, both included, as YYYY-MM."""
    first, last = (_month(datetime.fromisoformat(t) if isinstance(t, str) else t) for t in (start, end))
    out, (year, month) = [], (int(first[:4]), int(first[5:]))
    while f"{year:04d}-{month:02d}" <= last:
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def lifecycle_changes(tier_changes: Iterable[Mapping[str, Any]]) -> list[tuple[str, datetime, str]]:
    """(customer, effective time, stage) of each lifecycle change on ``crm.tier-changes.v1``."""
    return [(e["subject"], datetime.fromisoformat(e["data"]["effective_at"]), e["data"]["current"])
            for e in _unique(tier_changes) if e.get("data", {}).get("dimension") == "lifecycle"]


def lifecycle_by_month(changes: Iterable[tuple[str, datetime, str]], periods: list[str]) -> dict[str, dict[str, int]]:
    """Per month, how many customers were in each lifecycle stage at its end.

    A customer counts from their first lifecycle change on, in the stage of their latest change
    effective by the end of the month; changes are applied in effective-time order, whatever order
    they arrive in. Changes after the last month are ignored."""
    by_month: dict[str, list[tuple[datetime, str, str]]] = defaultdict(list)
    for customer, at, stage in changes:
        by_month[_month(at)].append((at, customer, stage))
    stage_of: dict[str, str] = {}
    for month in sorted(m for m in by_month if periods and m < periods[0]):
        stage_of.update((c, s) for _, c, s in sorted(by_month[month], key=lambda x: x[0]))
    out: dict[str, dict[str, int]] = {}
    for month in periods:
        stage_of.update((c, s) for _, c, s in sorted(by_month.get(month, []), key=lambda x: x[0]))
        counts = Counter(stage_of.values())
        out[month] = {s: counts[s] for s in [*LIFECYCLE_STAGES, *sorted(set(counts) - set(LIFECYCLE_STAGES))]}
    return out


def tier_change_counts(tier_changes: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Tier changes per dimension and direction, and how many of them were bulk (sent to nobody)."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    bulk = 0
    for event in _unique(tier_changes):
        data = event.get("data") or {}
        counts[data.get("dimension", "?")][data.get("direction", "?")] += 1
        bulk += bool(data.get("bulk"))
    return {"by_dimension": {dim: {d: counts[dim][d] for d in DIRECTIONS} for dim in sorted(counts)},
            "total": sum(sum(c.values()) for c in counts.values()), "bulk": bulk}


def complaint_event_counts(complaint_events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Lifecycle events of ``crm.complaints.v1`` by type, escalations by level and reason, breaches by target."""
    types: Counter[str] = Counter()
    levels: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    breaches: Counter[str] = Counter()
    for event in _unique(complaint_events):
        kind = str(event.get("type", "?")).removeprefix("complaint.")
        types[kind] += 1
        data = event.get("data") or {}
        changes = data.get("changes") or {}
        if kind == "escalated":
            levels[str(changes.get("escalated_to", "?"))] += 1
            reasons[str(changes.get("reason", "?"))] += 1
        elif kind == "sla_breached":
            breaches[str(data.get("sla_target", "?"))] += 1
    return {"by_type": dict(sorted(types.items())), "escalations": sum(levels.values()),
            "escalated_to": dict(levels), "escalation_reasons": dict(reasons.most_common()),
            "breaches_by_target": dict(breaches)}


# --- Summary and report -----------------------------------------------------------------------------

def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _sla_lines(reports: dict[str, Any]) -> list[str]:
    complaints, events = reports["complaints"], reports.get("complaint_events") or {}
    lines = []
    for target, figures in (complaints.get("sla_attainment") or {}).items():
        lines.append(f"  SLA {target.replace('_', ' ')}: {_rate(figures.get('rate'))} met "
                     f"({figures.get('met')} of {figures.get('settled')} settled)")
    escalated = ", ".join(f"{k} {v}" for k, v in (events.get("escalated_to") or {}).items())
    lines.append(f"  breached complaints: {complaints.get('breached')}; escalations: {events.get('escalations', 0)}"
                 + (f" ({escalated})" if escalated else ""))
    csat = complaints.get("csat") or {}
    lines.append(f"  CSAT: {csat.get('responses')} answers, average {csat.get('average')}, satisfied "
                 f"{_rate(csat.get('satisfied_rate'))}; reopen rate {_rate(complaints.get('reopen_rate'))}")
    return lines


def summary(counts: Counter[str], reports: dict[str, Any], rejected: Counter[str] | None = None,
            care: Counter[str] | None = None) -> str:
    seg = reports["segments"]
    lines = [f"Replayed {sum(counts.values())} events: " + ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))]
    if rejected is not None:
        lines.append(f"Rejected rows (break the contract, not published): {sum(rejected.values())}"
                     + "".join(f"; {n} x {reason}" for reason, n in rejected.most_common()))
    lines += [f"Classified customers: {seg.get('customers')} (policy {seg.get('policy_version')})", "",
              "ABC Pareto: class, customers, share of customers, share of revenue"]
    for row in seg.get("pareto", []):
        lines.append(f"  {row['abc_class']}  {row['customers']:>6}  {row['customer_share']:>7.1%}  "
                     f"{row['spend_share']:>7.1%}")
    for dim, values in seg.get("distribution", {}).items():
        lines.append(f"{dim:<12} " + ", ".join(f"{k}: {v}" for k, v in sorted(values.items())))
    lines += ["", f"Complaints: {reports['complaints'].get('total')} opened", *_sla_lines(reports)]
    if care:
        lines.append("Care team: " + ", ".join(f"{k} {v}" for k, v in sorted(care.items())))
    lines.append("Notifications: " + _flat(reports["notifications"]))
    return "\n".join(lines)


def _flat(report: dict[str, Any], keys: int = 8) -> str:
    return ", ".join(f"{k}={json.dumps(v)[:60]}" for k, v in list(report.items())[:keys])


def _bars(title: str, values: dict[str, float], unit: str = "") -> str:
    top = max(values.values(), default=0) or 1
    rows = "".join(
        f'<tr><td>{html.escape(str(k))}</td><td><div class="bar" style="width:{300 * v / top:.0f}px"></div></td>'
        f"<td>{v:,.4g}{unit}</td></tr>" for k, v in values.items())
    return f"<h3>{html.escape(title)}</h3><table>{rows}</table>"


def _table(value: Any) -> str:
    if isinstance(value, dict):
        return "<table>" + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_table(v)}</td></tr>"
                                   for k, v in value.items()) + "</table>"
    if isinstance(value, list) and value and isinstance(value[0], dict):
        cols = list(value[0])
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c)))}</td>" for c in cols) + "</tr>"
                       for r in value)
        return f"<table><tr>{head}</tr>{body}</table>"
    return html.escape(json.dumps(value) if isinstance(value, list) else str(value))


COLOURS = {"prospect": "#b0b7c3", "new": "#7fb8f0", "repeat": "#3b7dd8", "loyal": "#1f4e9c",
           "at_risk": "#f0a03c", "churned": "#c8463c", "reactivated": "#49a35b",
           "initial": "#b0b7c3", "upgrade": "#49a35b", "downgrade": "#c8463c", "lateral": "#f0a03c"}


def _legend(keys: Iterable[str]) -> str:
    return "<p>" + " ".join(f'<span class="key" style="background:{COLOURS.get(k, "#888")}"></span>'
                            f"{html.escape(k)}" for k in keys) + "</p>"


def stacked_columns_svg(series: Mapping[str, Mapping[str, int]], keys: Iterable[str]) -> str:
    """A stacked column per period (inline SVG, nothing to fetch); each segment has a tooltip."""
    keys = list(keys)
    width, height, column, gap, axis = 0, 220, 34, 10, 40
    top = max((sum(v.get(k, 0) for k in keys) for v in series.values()), default=0) or 1
    shapes = [f'<text x="{axis - 6}" y="12" text-anchor="end">{top:,}</text>',
              f'<text x="{axis - 6}" y="{height}" text-anchor="end">0</text>',
              f'<line x1="{axis}" y1="{height}" x2="{axis + len(series) * (column + gap)}" y2="{height}" '
              'stroke="#999"/>']
    for n, (period, values) in enumerate(series.items()):
        x, y = axis + gap / 2 + n * (column + gap), float(height)
        for key in keys:
            count = values.get(key, 0)
            if not count:
                continue
            h = (height - 4) * count / top
            y -= h
            shapes.append(f'<rect x="{x:.0f}" y="{y:.1f}" width="{column}" height="{h:.1f}" '
                          f'fill="{COLOURS.get(key, "#888")}"><title>{html.escape(period)} {html.escape(key)}: '
                          f"{count:,}</title></rect>")
        shapes.append(f'<text x="{x + column / 2:.0f}" y="{height + 14}" text-anchor="middle">'
                      f"{html.escape(period[2:])}</text>")
        width = int(x + column + gap)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{max(width, 200)}" height="{height + 20}" '
            f'font-size="10" role="img">{"".join(shapes)}</svg>')


def stacked_bars(rows: Mapping[str, Mapping[str, int]], keys: Iterable[str]) -> str:
    """A horizontal stacked bar per row (plain CSS), with the counts beside it."""
    keys = list(keys)
    top = max((sum(v.get(k, 0) for k in keys) for v in rows.values()), default=0) or 1
    body = []
    for name, values in rows.items():
        segments = "".join(
            f'<div class="seg" style="width:{400 * values.get(k, 0) / top:.1f}px;background:{COLOURS.get(k, "#888")}" '
            f'title="{html.escape(k)}: {values.get(k, 0):,}"></div>' for k in keys if values.get(k, 0))
        figures = ", ".join(f"{k} {values.get(k, 0):,}" for k in keys if values.get(k, 0))
        body.append(f"<tr><td>{html.escape(name)}</td><td><div class=\"stack\">{segments}</div></td>"
                    f"<td>{figures}</td></tr>")
    return f"<table>{''.join(body)}</table>"


def _lifecycle_table(series: Mapping[str, Mapping[str, int]]) -> str:
    head = "".join(f"<th>{html.escape(s)}</th>" for s in LIFECYCLE_STAGES)
    body = "".join(f"<tr><td>{html.escape(m)}</td>" + "".join(f"<td>{v.get(s, 0):,}</td>" for s in LIFECYCLE_STAGES)
                   + f"<td>{sum(v.values()):,}</td></tr>" for m, v in series.items())
    return f"<table><tr><th>month</th>{head}<th>customers</th></tr>{body}</table>"


def _complaints_html(reports: dict[str, Any], care: Mapping[str, int]) -> list[str]:
    complaints, events = reports["complaints"], reports.get("complaint_events") or {}
    attainment = {t.replace("_", " "): 100 * (f.get("rate") or 0)
                  for t, f in (complaints.get("sla_attainment") or {}).items()}
    parts = ["<h2>Complaints</h2>",
             "<p>From the complaints service's report (GET /reports/complaints) for the replayed period; "
             "escalations and breaches per target counted from its events on crm.complaints.v1.</p>",
             "<ul>" + "".join(f"<li>{html.escape(line.strip())}</li>" for line in _sla_lines(reports)) + "</ul>",
             _bars("SLA attainment (share of settled targets met)", attainment, " %")]
    if events.get("escalated_to"):
        parts.append(_bars("Escalations by level reached", events["escalated_to"]))
    if events.get("escalation_reasons"):
        parts.append(_bars("Escalations by reason", events["escalation_reasons"]))
    if events.get("by_type"):
        parts.append(_bars("Complaint lifecycle events on crm.complaints.v1", events["by_type"]))
    if care:
        parts.append(_bars("The care team's steps (outcome of each planned step)", dict(sorted(care.items()))))
    parts += ["<h3>The full complaints report</h3>", _table(complaints)]
    return parts


def report_html(counts: Counter[str], reports: dict[str, Any], rejected: Counter[str] | None = None,
                care: Mapping[str, int] | None = None) -> str:
    seg = reports["segments"]
    pareto = seg.get("pareto", [])
    rejected = rejected if rejected is not None else Counter()
    lifecycle = reports.get("lifecycle") or {}
    changes = reports.get("tier_changes") or {}
    rules = "".join(f"<li>{html.escape(rule)}</li>" for rule in MAPPING_RULES)
    rejections = "".join(f"<li>{n} x {html.escape(reason)}</li>" for reason, n in rejected.most_common())
    parts = [
        "<h2>How the data maps to the contract</h2>", f"<ul>{rules}</ul>",
        f"<p>Rejected rows: {sum(rejected.values())}</p>" + (f"<ul>{rejections}</ul>" if rejections else ""),
        "<h2>ABC Pareto</h2>",
        _bars("Share of customers", {r["abc_class"]: 100 * r["customer_share"] for r in pareto}, " %"),
        _bars("Share of revenue", {r["abc_class"]: 100 * r["spend_share"] for r in pareto}, " %"),
        "<h2>Distribution per dimension</h2>",
        *(_bars(dim, values) for dim, values in seg.get("distribution", {}).items() if values),
        "<h2>Lifecycle counts over time</h2>",
        "<p>Customers in each lifecycle stage at the end of each month (UK time), rebuilt from the lifecycle "
        "changes on crm.tier-changes.v1 and their effective times; a customer counts from their first "
        "classification on.</p>",
        stacked_columns_svg(lifecycle, LIFECYCLE_STAGES), _legend(LIFECYCLE_STAGES), _lifecycle_table(lifecycle),
        "<h2>Tier changes</h2>",
        f"<p>{changes.get('total', 0):,} changes on crm.tier-changes.v1, per dimension and direction; "
        f"{changes.get('bulk', 0):,} of them bulk (a population refresh or a reclassification: recorded, sent to "
        "nobody).</p>",
        stacked_bars(changes.get("by_dimension") or {}, DIRECTIONS), _legend(DIRECTIONS),
        "<h2>New customers and churn per first-purchase month</h2>", _table(seg.get("periods", [])),
        *_complaints_html(reports, care or {}),
        "<h2>Notifications</h2>", _table(reports["notifications"]),
        "<h2>Population refresh</h2>", _table(reports["refresh"]),
    ]
    style = ("body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}"
             ".bar{background:#3b7dd8;height:12px}.stack{display:flex;height:12px}.seg{height:12px}"
             ".key{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}")
    replayed = ", ".join(f"{n} {html.escape(t)}" for t, n in sorted(counts.items()))
    return (f"<!doctype html><meta charset=utf-8><title>carecrm demo</title><style>{style}</style>"
            f"<h1>carecrm on the Online Retail data</h1><p>Replayed: {replayed}.</p>{''.join(parts)}"
            f"<p><small>Data: {html.escape(ATTRIBUTION)}.</small></p>")
