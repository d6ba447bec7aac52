"""The tiering policy: read it, edit it as JSON, see a dry run, then apply it or walk away.

The tiering service keeps policy versions immutable: a dry run stores the edited document as a new,
inactive version (``POST /policy``) and asks what it would move (``POST /reclassify?dry_run=true``);
applying activates that same version (``dry_run=false``). Walking away leaves it stored, inactive.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .core import Ctx, context, down_notice
from .i18n import DIMENSIONS

router = APIRouter()
#: A reclassification reads every customer: give it longer than a page's usual wait.
RECLASSIFY_TIMEOUT_S = 120.0
MAX_DOCUMENT = 200_000


def _suggested(policy: dict[str, Any]) -> dict[str, Any]:
    """The active policy under a fresh version name, as the starting point of an edit."""
    base = re.sub(r"\.\d{20}$", "", str(policy.get("version") or "policy"))[:40]
    return {**policy, "version": f"{base}.{datetime.now(UTC):%Y%m%d%H%M%S%f}"}


async def _current(ctx: Ctx) -> tuple[dict[str, Any] | None, str | None, int]:
    reply = await ctx.get("tiering", "/policy")
    if reply.ok:
        return reply.body, None, 200
    return None, down_notice(ctx.t, reply), 503 if reply.unavailable else reply.status


def _page(ctx: Ctx, current: dict[str, Any] | None, notice: str | None, status: int = 200, *,
          document: str | None = None, dry_run: dict[str, Any] | None = None, error: str | None = None) -> Response:
    if document is None and current is not None:
        document = json.dumps(_suggested(current), indent=2, ensure_ascii=False)
    return ctx.render("policy.html", status=status, current=current, notice=notice, document=document or "",
                      dry_run=dry_run, error=error, dimensions=DIMENSIONS)


@router.get("/policy")
async def policy_page(request: Request) -> Response:
    ctx = await context(request)
    if not ctx.may("tiers:read"):
        return _page(ctx, None, ctx.t("not_allowed"), 403)
    current, notice, status = await _current(ctx)
    return _page(ctx, current, notice, status)


@router.post("/policy/dry-run")
async def dry_run(request: Request) -> Response:
    ctx = await context(request)
    form = await ctx.form()
    document = form.get("document", "")[:MAX_DOCUMENT]
    current, notice, status = await _current(ctx)
    try:
        parsed = json.loads(document)
    except ValueError as exc:
        return _page(ctx, current, notice, 422, document=document, error=ctx.t("policy.bad_json", detail=str(exc)))
    stored = await ctx.call("tiering", "POST", "/policy", json=parsed)
    if not stored.ok:
        return _page(ctx, current, notice, stored.status or 503, document=document,
                     error=down_notice(ctx.t, stored) or stored.detail())
    version = stored.body.get("version") if isinstance(stored.body, dict) else None
    result = await ctx.call("tiering", "POST", "/reclassify", params={"dry_run": "true", "policy_version": version},
                            timeout=RECLASSIFY_TIMEOUT_S)
    if not result.ok:
        return _page(ctx, current, notice, result.status or 503, document=document,
                     error=down_notice(ctx.t, result) or result.detail())
    return _page(ctx, current, notice, document=document, dry_run=result.body)


@router.post("/policy/apply")
async def apply(request: Request) -> Response:
    ctx = await context(request)
    form = await ctx.form()
    version = form.get("version", "")[:64]
    result = await ctx.call("tiering", "POST", "/reclassify", params={"dry_run": "false", "policy_version": version},
                            timeout=RECLASSIFY_TIMEOUT_S)
    if result.ok:
        ctx.say(ctx.t("policy.applied", version=version, events=result.body.get("events", 0)))
    else:
        ctx.say(down_notice(ctx.t, result) or result.detail(), "error")
    return ctx.redirect("/policy")
