"""One person's or one team's work queue: open complaints and return-visit tasks, the one due
soonest first (the complaints service orders them), and the outcome of a return visit."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .core import Ctx, NotFoundPage, context, down_notice
from .upstream import Reply

router = APIRouter()
#: A person's queue is any assignee's (complaints may be assigned by hand to people outside the
#: directory); letters, digits, spaces and ``. _ - @ :``, never "." or "..".
_STAFF = re.compile(r"^[\w.@: \-]{1,128}$")
_TEAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
_TASK_ID = re.compile(r"^[\w.:\-#]{1,128}$")
OUTCOMES = ("completed", "unreachable", "declined")
CHANNELS = ("visit", "call", "video", "email")
SHOWN = 200


def _staff(value: str) -> str:
    value = value.strip()
    return value if _STAFF.match(value) and value not in (".", "..") else ""


def _team(value: str) -> str:
    value = value.strip()
    return value if _TEAM.match(value) else ""


def task_path(task_id: str) -> str:
    if not _TASK_ID.match(task_id) or task_id in (".", ".."):
        raise NotFoundPage(task_id)
    return quote(task_id, safe="")


def queue_url(staff: str, team: str) -> str:
    chosen = {"staff": staff} if staff else {"team": team} if team else {}
    return "/queue" + (f"?{urlencode(chosen)}" if chosen else "")


def _due(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def rows(items: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The service's items in its order, each with whether its due time has passed."""
    shown = []
    for item in items[:SHOWN]:
        due = _due(item.get("due_at"))
        shown.append({**item, "overdue": due is not None and due < now})
    return shown


def directory(reply: Reply) -> tuple[list[dict[str, Any]], list[str]]:
    """The people and the team names of the staff directory (none when it cannot be read)."""
    body = reply.body if reply.ok and isinstance(reply.body, dict) else {}
    people = [p for p in body.get("staff", []) if isinstance(p, dict) and p.get("id")]
    teams = [str(t["name"]) for t in body.get("teams", []) if isinstance(t, dict) and t.get("name")]
    return people, teams


@router.get("/queue")
async def queue_page(request: Request, staff: str = "", team: str = "") -> Response:
    ctx = await context(request)
    staff, team = _staff(staff), _team(team)
    if staff:
        team = ""  # one queue at a time: a person's, else a team's
    values: dict[str, Any] = {"staff": staff, "team": team, "people": [], "teams": [], "items": None,
                              "counts": {}, "outcomes": OUTCOMES, "channels": CHANNELS}
    if not ctx.may("complaints:read"):
        return ctx.render("queue.html", status=403, notices=[ctx.t("not_allowed")], **values)
    listed, found = await asyncio.gather(ctx.get("complaints", "/staff"), _queue(ctx, staff, team))
    values["people"], values["teams"] = directory(listed)
    notices = [n for n in (down_notice(ctx.t, listed), down_notice(ctx.t, found) if found else None) if n]
    status = 200
    if found is not None:
        if found.ok:
            body = found.body or {}
            values["items"] = rows(body.get("items", []), datetime.now(UTC))
            values["counts"] = {"open": body.get("open"), "tasks": body.get("tasks")}
        elif found.unavailable:
            status = 503
        elif found.status == 404:
            status = 404
    return ctx.render("queue.html", status=status, notices=list(dict.fromkeys(notices)), **values)


async def _queue(ctx: Ctx, staff: str, team: str) -> Reply | None:
    if staff:
        return await ctx.get("complaints", f"/queues/agents/{quote(staff, safe='')}", limit=SHOWN)
    if team:
        return await ctx.get("complaints", f"/queues/teams/{quote(team, safe='')}", limit=SHOWN)
    return None


def outcome_body(form: dict[str, str]) -> dict[str, Any]:
    """The outcome as the service takes it; what it would refuse goes on as given, so that its
    reason is what the user reads."""
    body: dict[str, Any] = {"outcome": form.get("outcome", ""), "channel": form.get("channel", ""),
                            "summary": form.get("summary", "").strip()}
    satisfaction = form.get("satisfaction", "").strip()
    if satisfaction:
        body["satisfaction"] = int(satisfaction) if satisfaction.isdigit() else satisfaction
    return body


@router.post("/queue/tasks/{task_id}/outcome")
async def record_outcome(request: Request, task_id: str) -> Response:
    ctx = await context(request)
    path = task_path(task_id)
    form = await ctx.form()
    back = queue_url(_staff(form.get("staff", "")), _team(form.get("team", "")))
    reply = await ctx.call("complaints", "POST", f"/tasks/{path}/outcome", json=outcome_body(form))
    if reply.ok:
        ctx.say(ctx.t("queue.recorded"))
    elif reply.status in (404, 409, 422):
        ctx.say(ctx.t("refused", detail=reply.detail()), "error")
    else:
        ctx.say(down_notice(ctx.t, reply) or reply.detail(), "error")
    return ctx.redirect(back)
