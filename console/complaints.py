"""Complaints: the work queue by nearest SLA target, and one complaint with its timers, history
and the actions the complaints service allows on it."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .core import Ctx, NotFoundPage, complaint_path, context, customer_path, down_notice

router = APIRouter()
OPEN = ("received", "acknowledged", "investigating", "waiting_on_customer", "waiting_on_third_party")
STATUSES = (*OPEN, "resolved", "closed")
#: The rungs of the escalation ladder: who holds a complaint now.
LEVELS = ("handler", "supervisor", "manager")
_TEAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
ROOT_CAUSES = ("product_defect", "process_error", "staff_behaviour", "logistics", "billing_error", "pricing",
               "customer_misunderstanding", "third_party", "other")
#: The most complaints one request lists (the service's own limit).
LISTED = 500
SHOWN = 200
HISTORY = 200
#: The events of a complaint's history that concern staff: who was told, and who it went up to.
ALERT_EVENTS = ("complaint.staff_alert", "complaint.escalated", "complaint.sla_warning", "complaint.sla_breached")


def next_target(complaint: dict[str, Any]) -> dict[str, Any] | None:
    """The running SLA target due first: its name, due time and whether it was warned or breached."""
    best = None
    for name, timer in (complaint.get("sla") or {}).items():
        if timer.get("state") != "running" or not timer.get("due_at"):
            continue
        due = _time(timer["due_at"])
        if due is not None and (best is None or due < best["due"]):
            best = {"target": name, "due": due, "due_at": timer["due_at"], "warned": bool(timer.get("warned")),
                    "breached": bool(timer.get("breached"))}
    return best


def _time(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def queue(ctx: Ctx, status: str, assignee: str, team: str,
                level: str) -> tuple[list[dict[str, Any]], list[str], bool, list[str]]:
    """Rows ordered by the nearest due time (the service lists newest first, so the console sorts),
    the notices to show, whether the service could not be read at all, and the teams it knows."""
    # Every open complaint in one request (an indexed equality on ``open``), or those of one status.
    which = {"status": status} if status in STATUSES else {"open": "true"}
    directory, reply = await asyncio.gather(
        ctx.get("complaints", "/staff"),
        ctx.get("complaints", "/complaints", **which, assignee=assignee or None, limit=LISTED))
    # The staff directory names the teams; a service without one has none (and the filter hides).
    teams = [str(t.get("name")) for t in (directory.body or {}).get("teams", [])] if directory.ok else []
    notice = down_notice(ctx.t, reply)
    rows = []
    for item in (reply.body or {}).get("items", []) if reply.ok else []:
        if (team and item.get("team") != team) or (level and item.get("escalated_to") != level):
            continue
        rows.append({**item, "next": next_target(item)})
    far = datetime.max.replace(tzinfo=UTC)
    rows.sort(key=lambda r: (r["next"]["due"] if r["next"] else far, r.get("opened_at") or ""))
    return rows[:SHOWN], [notice] if notice else [], reply.unavailable, teams


def _filters(status: str, assignee: str, team: str, level: str) -> dict[str, str]:
    return {"status": status if status in STATUSES else "", "assignee": assignee.strip()[:128],
            "team": team if _TEAM.match(team) else "", "level": level if level in LEVELS else ""}


@router.get("/complaints")
async def queue_page(request: Request, status: str = "", assignee: str = "", team: str = "",
                     level: str = "") -> Response:
    ctx = await context(request)
    filters = _filters(status, assignee, team, level)
    if not ctx.may("complaints:read"):
        return ctx.render("complaints.html", rows=[], notices=[ctx.t("not_allowed")], filters=filters,
                          statuses=STATUSES, teams=[], levels=LEVELS)
    rows, notices, down, teams = await queue(ctx, **filters)
    return ctx.render("complaints.html", status=503 if down else 200, rows=rows, notices=notices, filters=filters,
                      statuses=STATUSES, teams=teams, levels=LEVELS)


@router.get("/complaints/rows")
async def queue_rows(request: Request, status: str = "", assignee: str = "", team: str = "",
                     level: str = "") -> Response:
    """The queue's rows alone, for the page's periodic refresh."""
    ctx = await context(request)
    if not ctx.may("complaints:read"):
        return ctx.render("complaint_rows.html", status=403, rows=[], notices=[ctx.t("not_allowed")])
    rows, notices, _, _ = await queue(ctx, **_filters(status, assignee, team, level))
    return ctx.render("complaint_rows.html", rows=rows, notices=notices)


@router.get("/complaints/{complaint_id}")
async def complaint_page(request: Request, complaint_id: str) -> Response:
    ctx = await context(request)
    path = complaint_path(complaint_id)
    if not ctx.may("complaints:read"):
        return ctx.render("error.html", status=403, message=ctx.t("not_allowed"))
    reply = await ctx.get("complaints", f"/complaints/{path}")
    if not reply.ok:
        status = 503 if reply.unavailable else reply.status
        return ctx.render("error.html", status=status, message=down_notice(ctx.t, reply) or reply.detail())
    complaint = reply.body
    history, history_notice = await _history(ctx, complaint)
    alerts = None if history is None else [e for e in history if e.get("event_type") in ALERT_EVENTS]
    return ctx.render("complaint.html", c=complaint, path=path, next=next_target(complaint),
                      root_causes=ROOT_CAUSES, reopenable=complaint.get("status") in ("resolved", "closed"),
                      history=history, history_notice=history_notice, alerts=alerts)


async def _history(ctx: Ctx, complaint: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The complaint's lifecycle events, as the customer's timeline recorded them (the complaints
    service keeps the timers and comments, not the event list)."""
    if not ctx.may("customers:read"):
        return None, None
    try:
        customer = customer_path(str(complaint.get("customer_id", "")))
    except NotFoundPage:
        return None, None
    reply = await ctx.get("customer", f"/customers/{customer}/timeline", kind="complaint", limit=HISTORY)
    if not reply.ok:
        return None, None if reply.status in (404, 410) else down_notice(ctx.t, reply)
    own = [e for e in reply.body.get("items", []) if e.get("complaint_id") == complaint.get("complaint_id")]
    return own, None


async def _act(request: Request, complaint_id: str, action: str, body: Any) -> Response:
    """Send one action and come back to the complaint with the service's answer."""
    ctx = await context(request)
    path = complaint_path(complaint_id)
    form = await ctx.form()
    reply = await ctx.call("complaints", "POST", f"/complaints/{path}/{action}", json=body(form))
    if reply.ok:
        ctx.say(ctx.t("done"))
        new_id = (reply.body or {}).get("complaint_id")
        if new_id and new_id != complaint_id:  # reopened after the window: a new, linked complaint
            return ctx.redirect(f"/complaints/{complaint_path(new_id)}")
    elif reply.status in (409, 422, 404):
        ctx.say(ctx.t("complaint.refused", detail=reply.detail()), "error")
    else:
        ctx.say(down_notice(ctx.t, reply) or reply.detail(), "error")
    return ctx.redirect(f"/complaints/{path}")


def _transition(form: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {"to": form.get("to", "")}
    if form.get("resolution_summary", "").strip():
        body["resolution_summary"] = form["resolution_summary"].strip()
    if form.get("root_cause"):
        body["root_cause"] = form["root_cause"]
    return body


@router.post("/complaints/{complaint_id}/transition")
async def transition(request: Request, complaint_id: str) -> Response:
    return await _act(request, complaint_id, "transitions", _transition)


@router.post("/complaints/{complaint_id}/assign")
async def assign(request: Request, complaint_id: str) -> Response:
    return await _act(request, complaint_id, "assignment", lambda f: {"assignee": f.get("assignee", "").strip()})


@router.post("/complaints/{complaint_id}/comment")
async def comment(request: Request, complaint_id: str) -> Response:
    return await _act(request, complaint_id, "comments", lambda f: {"text": f.get("text", "").strip()})


@router.post("/complaints/{complaint_id}/verify")
async def verify(request: Request, complaint_id: str) -> Response:
    return await _act(request, complaint_id, "verification", lambda f: {})


@router.post("/complaints/{complaint_id}/reopen")
async def reopen(request: Request, complaint_id: str) -> Response:
    return await _act(request, complaint_id, "reopen",
                      lambda f: {"reason": f.get("reason", "").strip() or "customer_request"})
