"""HTTP API of the complaints service's account managers and return-visit tasks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, status
from pydantic import ConfigDict, Field

from shared.auth import require
from shared.contract.events import StaffId
from shared.contract.types import CustomerId, TextModel

from . import visits
from .accounts import Account
from .accounts_workflow import AccountsWorkflow, NotFound
from .domain import DomainError

router = APIRouter(tags=["accounts"])
READ = require("complaints:read")
WRITE = require("complaints:write")
TaskId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[\w.:\-/#]+$")]
Actor = Annotated[str, Field(min_length=1, max_length=128)]


class Body(TextModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ManagerIn(Body):
    #: The account manager (an ``account_manager`` of the staff directory); null: none.
    manager_id: StaffId | None
    #: Why, for the audit record.
    reason: Annotated[str, Field(min_length=1, max_length=200)]
    #: Who; defaults to the API key's name.
    actor: Actor | None = None


class OutcomeIn(Body):
    outcome: visits.Outcome
    channel: visits.VisitChannel
    summary: Annotated[str, Field(min_length=1, max_length=2000)]
    satisfaction: Annotated[int, Field(ge=1, le=5, strict=True)] | None = None
    actor: Actor | None = None


def _accounts(request: Request) -> AccountsWorkflow:
    return request.app.state.accounts


def _view(account: Account) -> dict[str, Any]:
    return {"customer_id": account.customer_id, "manager_id": account.manager, "manager_name": account.manager_name,
            "revision": account.revision, "needs": account.needs, "region": account.region,
            "industry": account.industry,
            "history": [change.model_dump(mode="json") for change in reversed(account.history)]}


def _task_view(task: visits.Task) -> dict[str, Any]:
    return task.model_dump(mode="json")


@router.get("/accounts/{customer_id}", dependencies=[READ],
            summary="A customer's account manager and every change of it (newest first: who, when, from, to, why)")
async def get_account(customer_id: CustomerId, request: Request) -> dict[str, Any]:
    return _view(await _accounts(request).account(customer_id))


@router.put("/accounts/{customer_id}/manager", dependencies=[WRITE],
            summary="Set or remove a customer's account manager, with the reason for the audit record")
async def set_manager(customer_id: CustomerId, body: ManagerIn, request: Request) -> dict[str, Any]:
    actor = body.actor or request.state.api_key.name
    try:
        account = await _accounts(request).set_manager(customer_id, body.manager_id, actor=actor, reason=body.reason)
    except DomainError as exc:
        raise HTTPException(422, [{"loc": ["body", "manager_id"], "msg": exc.detail, "type": exc.code}]) from None
    return _view(account)


@router.get("/tasks/{task_id}", dependencies=[READ], tags=["queues"], summary="A return-visit task")
async def get_task(task_id: TaskId, request: Request) -> dict[str, Any]:
    try:
        return _task_view(await _accounts(request).task(task_id))
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such task") from None


@router.post("/tasks/{task_id}/outcome", dependencies=[WRITE], tags=["queues"],
             summary="Close a return visit with its outcome; published as a return_visit interaction. The "
                     "same outcome again answers as before; another one is refused (409)")
async def record_outcome(task_id: TaskId, body: OutcomeIn, request: Request) -> dict[str, Any]:
    actor = body.actor or request.state.api_key.name
    try:
        task = await _accounts(request).record_outcome(task_id, outcome=body.outcome, channel=body.channel,
                                                      summary=body.summary, satisfaction=body.satisfaction,
                                                      actor=actor)
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such task") from None
    except DomainError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, {"error": exc.code, "message": exc.detail}) from None
    return _task_view(task)
