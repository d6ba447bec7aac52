"""Customers: search (id, or phone and e-mail through the blind-index lookup), filters, the
360-degree view, and the actions on it (record an interaction, set or lift a tier override, change
the account manager)."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .core import Ctx, NotFoundPage, context, customer_path, down_notice
from .i18n import DIMENSIONS, TIERS
from .upstream import Reply

router = APIRouter()
LIFECYCLES = ("prospect", "new", "repeat", "loyal", "at_risk", "churned", "reactivated")
VALUE_TIERS = ("high", "medium", "low")
INTERACTION_KINDS = ("call", "visit", "inquiry", "consultation", "suggestion", "email", "chat", "event",
                     "survey_response", "care_message")
_PHONE = re.compile(r"^\+?[\d\s\-().]{5,31}$")
PAGE = 50
MONEY_METRICS = frozenset({"spend_12m", "spend_90d", "spend_prev_90d", "lifetime_spend"})


@router.get("/customers")
async def search(request: Request, q: str = "", tier: str = "", lifecycle: str = "", tag: str = "",
                 cursor: str = "", browse: str = "") -> Response:
    ctx = await context(request)
    q = q.strip()[:254]
    filters = {"tier": tier if tier in VALUE_TIERS else "", "lifecycle": lifecycle if lifecycle in LIFECYCLES else "",
               "tag": tag.strip()[:64]}
    items: list[dict[str, Any]] = []
    notice = None
    next_cursor = None
    reply: Reply | None = None
    if not ctx.may("customers:read"):
        notice = ctx.t("not_allowed")
    elif q:
        # An id is tried beside the contact lookup: some sources' customer ids are all digits.
        id_path = _id_path(q)
        field = "email" if "@" in q else "phone" if _PHONE.match(q) else None
        by_id, found = await asyncio.gather(
            ctx.get("customer", f"/customers/{id_path}") if id_path else _none(),
            ctx.get("customer", "/customers/lookup", **{field: q}) if field and ctx.may("pii:read") else _none())
        if by_id is not None and by_id.ok:
            return ctx.redirect(f"/customers/{id_path}")
        reply = found or by_id
        if field and not ctx.may("pii:read"):
            notice = ctx.t("customers.pii_needed")
        elif found is not None and found.status == 422:
            notice = ctx.t("customers.bad_query", detail=found.detail())
        elif reply is None or reply.status in (404, 410, 422):
            notice = ctx.t("customers.none")
        else:
            notice = down_notice(ctx.t, reply)
            items = reply.body.get("items", []) if reply.ok else []
            notice = notice or (None if items else ctx.t("customers.none"))
    elif any(filters.values()) or browse or cursor:
        # Only on request: the customer service's listing walks its buckets, which takes a while.
        reply = await ctx.get("customer", "/customers", limit=PAGE, cursor=cursor[:400] or None, **filters)
        notice = down_notice(ctx.t, reply)
        if reply.ok:
            items, next_cursor = reply.body.get("items", []), reply.body.get("next_cursor")
    return ctx.render("customers.html", status=503 if reply is not None and reply.unavailable else 200,
                      q=q, filters=filters, items=items, notice=notice, next_cursor=next_cursor,
                      lifecycles=LIFECYCLES, value_tiers=VALUE_TIERS, searched=bool(q),
                      listed=reply is not None)


def _id_path(text: str) -> str | None:
    try:
        return customer_path(text)
    except NotFoundPage:
        return None


async def _none() -> None:
    return None


async def _skip(service: str) -> Reply:
    return Reply(service, 403, {"detail": "scope"})


@router.get("/customers/{customer_id}")
async def customer(request: Request, customer_id: str, before: str = "") -> Response:
    ctx = await context(request)
    path = customer_path(customer_id)
    if not ctx.may("customers:read"):
        return ctx.render("error.html", status=403, message=ctx.t("not_allowed"))

    def allowed(scope: str, service: str, path: str, **params: Any) -> Any:
        # A section the key may not read is not asked for; the page says so instead.
        return ctx.get(service, path, **params) if ctx.may(scope) else _skip(service)

    (profile, timeline, consents, classification, history, messages, complaints, policy, account,
     directory) = await asyncio.gather(
        ctx.get("customer", f"/customers/{path}"),
        ctx.get("customer", f"/customers/{path}/timeline", limit=PAGE, cursor=before[:400] or None),
        ctx.get("customer", f"/customers/{path}/consents"),
        allowed("tiers:read", "tiering", f"/customers/{path}/classification"),
        allowed("tiers:read", "tiering", f"/customers/{path}/tier-history"),
        allowed("notifications:read", "notifications", f"/customers/{path}/notifications", limit=PAGE),
        allowed("complaints:read", "complaints", "/complaints", customer=customer_id, limit=50),
        # Tiering's metrics hold amounts in cents of the policy's base currency.
        allowed("tiers:read", "tiering", "/policy"),
        # The manager's audit record; the directory only for a key that may change the manager.
        allowed("complaints:read", "complaints", f"/accounts/{path}"),
        ctx.get("complaints", "/staff") if ctx.can("complaints:write") else _skip("complaints"),
    )
    if profile.status in (404, 410):
        return ctx.render("error.html", status=profile.status,
                          message=f"{customer_id}: {profile.detail()}")
    if not profile.ok:
        return ctx.render("error.html", status=503 if profile.unavailable else profile.status,
                          message=down_notice(ctx.t, profile) or "")
    unclassified = classification.status == 404
    notices = [n for n in (down_notice(ctx.t, r) for r in (timeline, consents, classification, history, messages,
                                                          complaints, account)
                           if not (r is classification and unclassified)) if n]
    body = profile.body
    return ctx.render(
        "customer.html", customer=body, summary=body.get("summary") or {},
        timeline=timeline.body.get("items", []) if timeline.ok else None,
        next_cursor=timeline.body.get("next_cursor") if timeline.ok else None,
        consents=consents.body if consents.ok else None,
        classification=classification.body if classification.ok else None, unclassified=unclassified,
        history=history.body if history.ok else None,
        messages=messages.body.get("notifications", []) if messages.ok else None,
        complaints=complaints.body.get("items", []) if complaints.ok else None,
        notices=list(dict.fromkeys(notices)), dimensions=DIMENSIONS, tier_values=TIERS,
        interaction_kinds=INTERACTION_KINDS, path=path, money_metrics=MONEY_METRICS,
        base_currency=policy.body.get("base_currency", "") if policy.ok and isinstance(policy.body, dict) else "",
        account=account.body if account.ok and isinstance(account.body, dict) else None,
        managers=account_managers(directory))


def account_managers(directory: Reply) -> list[dict[str, Any]] | None:
    """The directory's account managers, whom the manager may be changed to (None: not offered)."""
    if not directory.ok or not isinstance(directory.body, dict):
        return None
    return [p for p in directory.body.get("staff", []) if isinstance(p, dict) and p.get("account_manager")]


@router.post("/customers/{customer_id}/interactions")
async def record_interaction(request: Request, customer_id: str) -> Response:
    ctx = await context(request)
    path = customer_path(customer_id)
    form = await ctx.form()
    body: dict[str, Any] = {"kind": form.get("kind") or "call", "channel": (form.get("channel") or "phone").strip(),
                            "direction": form.get("direction") or "outbound"}
    if form.get("summary", "").strip():
        body["summary"] = form["summary"].strip()
    if form.get("satisfaction", "").strip().isdigit():
        body["satisfaction"] = int(form["satisfaction"])
    reply = await ctx.call("customer", "POST", f"/customers/{path}/interactions", json=body)
    _outcome(ctx, reply, ctx.t("action.recorded"))
    return ctx.redirect(f"/customers/{path}")


@router.post("/customers/{customer_id}/manager")
async def change_manager(request: Request, customer_id: str) -> Response:
    ctx = await context(request)
    path = customer_path(customer_id)
    form = await ctx.form()
    body = {"manager_id": form.get("manager_id", "").strip() or None, "reason": form.get("reason", "").strip()}
    reply = await ctx.call("complaints", "PUT", f"/accounts/{path}/manager", json=body)
    _outcome(ctx, reply, ctx.t("manager.changed"))
    return ctx.redirect(f"/customers/{path}")


@router.post("/customers/{customer_id}/overrides")
async def set_override(request: Request, customer_id: str) -> Response:
    ctx = await context(request)
    path = customer_path(customer_id)
    form = await ctx.form()
    dimension = form.get("dimension", "")
    if dimension not in DIMENSIONS:
        ctx.say(ctx.t("service_error", service=ctx.t("svc.tiering"), detail="dimension"), "error")
        return ctx.redirect(f"/customers/{path}")
    body: dict[str, Any] = {"value": form.get("value", ""), "mode": form.get("mode") or "floor",
                            "reason": form.get("reason", "").strip()}
    expires = _aware(form.get("expires_at", ""), ctx)
    if expires:
        body["expires_at"] = expires
    reply = await ctx.call("tiering", "PUT", f"/customers/{path}/overrides/{dimension}", json=body)
    _outcome(ctx, reply, ctx.t("action.override_set"))
    return ctx.redirect(f"/customers/{path}")


@router.post("/customers/{customer_id}/overrides/{dimension}/lift")
async def lift_override(request: Request, customer_id: str, dimension: str) -> Response:
    ctx = await context(request)
    path = customer_path(customer_id)
    form = await ctx.form()
    if dimension not in DIMENSIONS:
        return ctx.redirect(f"/customers/{path}")
    reason = form.get("reason", "").strip() or "override removed"
    reply = await ctx.call("tiering", "DELETE", f"/customers/{path}/overrides/{dimension}", params={"reason": reason})
    _outcome(ctx, reply, ctx.t("action.override_lifted"))
    return ctx.redirect(f"/customers/{path}")


def _outcome(ctx: Ctx, reply: Reply, success: str) -> None:
    if reply.ok:
        ctx.say(success)
    else:
        ctx.say(down_notice(ctx.t, reply) or reply.detail(), "error")


def _aware(value: str, ctx: Ctx) -> str | None:
    """A ``datetime-local`` value, read in the console's time zone, as an ISO time with offset."""
    value = value.strip()
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value  # the service names what is wrong with it
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ctx.t.zone)
    return moment.isoformat()
