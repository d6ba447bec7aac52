"""HTTP API of the tiering service."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request, status
from pydantic import ConfigDict, Field

from shared.auth import require
from shared.contract.events import DIMENSIONS, Dimension
from shared.contract.types import AwareTime, CustomerId, TextModel

from . import reports
from .domain import Override, validate_override_value
from .policy import Policy
from .repository import Repository
from .workflow import Workflow

router = APIRouter(tags=["tiering"])
Customer = Annotated[CustomerId, Path(description="Customer id")]


def _workflow(request: Request) -> Workflow:
    return request.app.state.workflow


def _repo(request: Request) -> Repository:
    return request.app.state.repo


def _classification(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "customer_id": doc["customer_id"],
        **{dim: (doc.get("output") or {}).get(dim) for dim in DIMENSIONS},
        "reasons": doc.get("reasons") or {},
        "downgrade_pending": doc.get("pending") or {},
        "overrides": doc.get("overrides") or {},
        "metrics": doc.get("metrics") or {},
        "policy_version": doc.get("policy_version"),
        "updated_at": doc.get("updated_at"),
        "next_evaluation_at": doc.get("next_eval_at"),
    }


@router.get("/customers/{customer_id}/classification", dependencies=[require("tiers:read")],
            summary="The current classification of a customer, with the metrics behind it")
async def classification(request: Request, customer_id: Customer) -> dict[str, Any]:
    doc = await _workflow(request).classification(customer_id)
    if doc is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "customer not classified")
    return _classification(doc)


@router.get("/customers/{customer_id}/tier-history", dependencies=[require("tiers:read")],
            summary="Every tier change of a customer, oldest first, and the audit of overrides")
async def tier_history(request: Request, customer_id: Customer) -> dict[str, Any]:
    changes, overrides = await asyncio.gather(_workflow(request).tier_history(customer_id),
                                              _repo(request).override_audit(customer_id))
    return {"customer_id": customer_id, "changes": changes, "overrides": overrides}


class OverrideRequest(TextModel):
    model_config = ConfigDict(extra="forbid")

    value: Annotated[str, Field(min_length=1, max_length=32)]
    mode: Literal["floor", "lock"] = "floor"
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    expires_at: AwareTime | None = None


@router.put("/customers/{customer_id}/overrides/{dimension}", summary="Set a manual override (floor or lock)")
async def put_override(request: Request, customer_id: Customer, dimension: Dimension, body: OverrideRequest,
                       key: Any = require("tiers:write")) -> dict[str, Any]:
    try:
        validate_override_value(dimension, body.value)
    except ValueError as exc:
        raise HTTPException(422, f"value: {exc}") from None
    workflow = _workflow(request)
    now = workflow.clock.now()
    if body.expires_at is not None and body.expires_at <= now:
        raise HTTPException(422, "expires_at: must be in the future")
    override = Override(value=body.value, mode=body.mode, reason=body.reason, actor=key.name, set_at=now,
                        expires_at=body.expires_at)
    doc = await workflow.set_override(customer_id, dimension, override, key.name, body.reason)
    if doc is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "customer not known to tiering")
    return _classification(doc)


@router.delete("/customers/{customer_id}/overrides/{dimension}", summary="Remove a manual override")
async def delete_override(request: Request, customer_id: Customer, dimension: Dimension,
                          reason: Annotated[str, Query(min_length=1, max_length=500)] = "override removed",
                          key: Any = require("tiers:write")) -> dict[str, Any]:
    doc = await _workflow(request).set_override(customer_id, dimension, None, key.name, reason)
    if doc is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "customer not known to tiering")
    return _classification(doc)


@router.get("/policy", dependencies=[require("tiers:read")], summary="The active policy")
async def get_policy(request: Request) -> dict[str, Any]:
    policy = await _workflow(request).ready()
    return policy.model_dump(mode="json")


@router.post("/policy", dependencies=[require("policy:write")], status_code=status.HTTP_201_CREATED,
             summary="Validate and store a new policy version (apply it with POST /reclassify)")
async def post_policy(request: Request, policy: Annotated[Policy, Body()]) -> dict[str, Any]:
    workflow = _workflow(request)
    if not await workflow.repo.store_policy(policy, workflow.clock.now()):
        raise HTTPException(status.HTTP_409_CONFLICT, f"policy version {policy.version!r} exists; versions are "
                                                      "immutable, use a new one")
    return {"version": policy.version, "stored": True}


@router.post("/reclassify", dependencies=[require("policy:write")],
             summary="Transition counts under a policy version, with a sample of who moves; unless dry_run, "
                     "activate it and publish in bulk")
async def reclassify(request: Request, dry_run: bool = True,
                     policy_version: Annotated[str | None, Query(max_length=64)] = None) -> dict[str, Any]:
    workflow = _workflow(request)
    policy = await workflow.ready() if policy_version is None else await workflow.repo.policy(policy_version)
    if policy is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"policy_version: no policy {policy_version!r}")
    return await workflow.reclassify(policy, dry_run=dry_run)


@router.post("/population/refresh", dependencies=[require("policy:write")],
             summary="Recompute the population cut-offs now; returns when done")
async def refresh(request: Request) -> dict[str, Any]:
    return await _workflow(request).refresh()


@router.get("/reports/segments", dependencies=[require("tiers:read")],
            summary="Distribution per dimension, the ABC Pareto table, rates per first-purchase month "
                    "and the customers at risk of churn per reason and value tier")
async def segments(request: Request) -> dict[str, Any]:
    # Kept as each customer's revision moves (``Workflow.segments``): nothing is read to answer.
    workflow = _workflow(request)
    await workflow.ready()
    return {
        "policy_version": workflow.policy.version if workflow.policy else None,
        "cutoffs_version": workflow.cutoffs.version if workflow.cutoffs else None,
        **workflow.segments.report(),
    }


@router.get("/reports/periods", dependencies=[require("tiers:read")],
            summary="Per calendar period: buyers, repeat-purchase and referral rates among them, churn rate "
                    "against the customers not churned at its start, reactivations")
async def periods(request: Request, months: Annotated[Literal[1, 3, 12], Query(
        description="Period length: 1 (months), 3 (quarters) or 12 (years), calendar-aligned in UTC")] = 1,
                  ) -> dict[str, Any]:
    workflow = _workflow(request)
    policy = await workflow.ready()
    latest: dict[str, reports.Activity] = {}
    async for doc in workflow.repo.scan(reports.LEDGER_PROJECTION):  # one revision per customer held at a time
        reports.keep_newest(latest, doc)
    for waiting in workflow.saving.pending():  # and the newest, not written yet
        latest[waiting.state.customer_id] = reports.Activity.of_entries(waiting.state.rev,
                                                                        waiting.state.ledger.values())
    churned_days = policy.lifecycle.churned_days
    return {"months": months, "churned_days": churned_days, "policy_version": policy.version,
            "periods": reports.period_report(latest.values(), workflow.clock.now(), churned_days, months)}
