"""HTTP API of the complaints service."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.encoders import jsonable_encoder
from pydantic import ConfigDict, Field

from shared.auth import require
from shared.contract.events import ComplaintStatus, ComplaintSubmittedData, TeamName
from shared.contract.types import CustomerId, TextModel
from shared.settings import ApiKey

from . import domain, queues, reports, staff, timers
from .policy import ESCALATION_LADDER
from .domain import Complaint, DomainError
from .workflow import NotFound, Workflow

router = APIRouter(tags=["complaints"])
READ = require("complaints:read")
WRITE = require("complaints:write")

RootCause = Literal["product_defect", "process_error", "staff_behaviour", "logistics", "billing_error",
                    "pricing", "customer_misunderstanding", "third_party", "other"]
Actor = Annotated[str, Field(min_length=1, max_length=128)]
QueueLimit = Annotated[int, Query(ge=1, le=500)]


class Body(TextModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ComplaintIn(ComplaintSubmittedData):
    customer_id: CustomerId


class TransitionIn(Body):
    to: ComplaintStatus
    #: Who acts; defaults to the API key's name.
    actor: Actor | None = None
    resolution_summary: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    root_cause: RootCause | None = None


class AssignIn(Body):
    assignee: Actor


class VerifyIn(Body):
    verifier: Actor | None = None


class ReopenIn(Body):
    reason: Annotated[str, Field(max_length=200, pattern=r"^[\w\- ]*$")] = "customer_request"


class CommentIn(Body):
    text: Annotated[str, Field(min_length=1, max_length=5000)]
    author: Actor | None = None


class FeedbackIn(Body):
    score: Annotated[int, Field(ge=1, le=5, strict=True)]
    comment: Annotated[str, Field(max_length=2000)] = ""


def _workflow(request: Request) -> Workflow:
    return request.app.state.workflow


def _actor(request: Request, given: str | None) -> str:
    return given or request.state.api_key.name


def view(complaint: Complaint, rules: domain.Rules) -> dict[str, Any]:
    doc = complaint.model_dump(mode="json", exclude={"applied"})
    doc["allowed_transitions"] = list(domain.allowed_transitions(complaint))
    doc["escalated_to"] = ESCALATION_LADDER[complaint.escalation_level]
    doc["sla"] = jsonable_encoder(timers.sla_summary(complaint, rules))
    return doc


def _conflict(exc: DomainError) -> HTTPException:
    detail: dict[str, Any] = {"error": exc.code, "message": exc.detail}
    if isinstance(exc, domain.InvalidTransition):
        detail["allowed_transitions"] = list(exc.allowed)
    return HTTPException(status.HTTP_409_CONFLICT, detail)


async def _change(request: Request, complaint_id: str, operation: Any) -> dict[str, Any]:
    try:
        workflow = _workflow(request)
        return view(await workflow.change(complaint_id, operation), workflow.rules)
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such complaint") from None
    except DomainError as exc:
        raise _conflict(exc) from None


@router.post("/complaints", status_code=201, dependencies=[WRITE],
             summary="Submit a complaint; the same complaint_id again returns the first one (200)")
async def submit(body: ComplaintIn, request: Request, response: Response) -> dict[str, Any]:
    workflow = _workflow(request)
    now = workflow.now()
    # Without a complaint id, each request is a new complaint.
    source = f"http/{body.complaint_id or uuid.uuid4()}"
    try:
        complaint, created = await workflow.submit(
            body.customer_id, body.model_dump(exclude={"complaint_id", "customer_id"}),
            complaint_id=body.complaint_id, source=source, opened_at=now)
    except DomainError as exc:
        raise _conflict(exc) from None
    if not created:
        response.status_code = status.HTTP_200_OK
    return view(complaint, workflow.rules)


@router.get("/complaints", dependencies=[READ],
            summary="Complaints by status, open or closed, breach, customer and assignee, newest first")
async def search(request: Request, status_: Annotated[ComplaintStatus | None, Query(alias="status")] = None,
                 open_: Annotated[bool | None, Query(alias="open", description="true: not resolved or closed")] = None,
                 breached: bool | None = None, customer: CustomerId | None = None,
                 assignee: Annotated[str, Query(min_length=1, max_length=128)] | None = None,
                 limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
    # An agent's queue names a status, open, an assignee or a customer: each an indexed equality in
    # the store. A listing with none of them reads every complaint.
    workflow = _workflow(request)
    found = await workflow.repo.search(status=status_, open_=open_, breached=breached, customer=customer,
                                       assignee=assignee, limit=limit)
    return {"items": [view(c, workflow.rules) for c in found], "count": len(found)}


@router.get("/complaints/{complaint_id}", dependencies=[READ])
async def get(complaint_id: str, request: Request) -> dict[str, Any]:
    workflow = _workflow(request)
    complaint = await workflow.repo.get(complaint_id)
    if complaint is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such complaint")
    return view(complaint, workflow.rules)


@router.post("/complaints/{complaint_id}/transitions", dependencies=[WRITE],
             summary="Move a complaint to another status; 409 lists the allowed ones")
async def transition(complaint_id: str, body: TransitionIn, request: Request) -> dict[str, Any]:
    rules, actor = _workflow(request).rules, _actor(request, body.actor)
    return await _change(request, complaint_id, lambda c, now: domain.transition(
        c, body.to, now=now, rules=rules, actor=actor, resolution_summary=body.resolution_summary,
        root_cause=body.root_cause))


@router.post("/complaints/{complaint_id}/assignment", dependencies=[WRITE], summary="Assign to a handler")
async def assign(complaint_id: str, body: AssignIn, request: Request) -> dict[str, Any]:
    rules = _workflow(request).rules
    return await _change(request, complaint_id, lambda c, now: domain.assign(c, body.assignee, now=now, rules=rules))


@router.post("/complaints/{complaint_id}/verification", dependencies=[WRITE],
             summary="Verify a resolution; the resolver cannot verify when verification is on")
async def verify(complaint_id: str, body: VerifyIn, request: Request) -> dict[str, Any]:
    rules, actor = _workflow(request).rules, _actor(request, body.verifier)
    return await _change(request, complaint_id, lambda c, now: domain.verify(c, actor, now=now, rules=rules))


@router.post("/complaints/{complaint_id}/comments", dependencies=[WRITE],
             summary="An update to the customer; restarts the periodic-update clock of complex cases")
async def comment(complaint_id: str, body: CommentIn, request: Request) -> dict[str, Any]:
    rules, author = _workflow(request).rules, _actor(request, body.author)
    return await _change(request, complaint_id,
                         lambda c, now: domain.add_comment(c, author, body.text, now=now, rules=rules))


@router.post("/complaints/{complaint_id}/reopen", dependencies=[WRITE],
             summary="Reopen within the window (200), or open a new linked complaint after it (201)")
async def reopen(complaint_id: str, body: ReopenIn, request: Request, response: Response) -> dict[str, Any]:
    workflow = _workflow(request)
    try:
        complaint, created = await workflow.reopen_or_link(complaint_id, body.reason or "customer_request")
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such complaint") from None
    except DomainError as exc:
        raise _conflict(exc) from None
    if created:
        response.status_code = status.HTTP_201_CREATED
    return view(complaint, workflow.rules)


@router.post("/complaints/{complaint_id}/feedback", dependencies=[WRITE],
             summary="Satisfaction 1-5; a low score reopens or escalates, as configured")
async def feedback(complaint_id: str, body: FeedbackIn, request: Request) -> dict[str, Any]:
    rules = _workflow(request).rules
    return await _change(request, complaint_id, lambda c, now: domain.record_feedback(
        c, body.score, body.comment, now=now, rules=rules, source=f"http/{now.isoformat()}/{len(c.feedback)}"))


@router.get("/reports/complaints", dependencies=[READ],
            summary="Counts, response and resolution times, SLA attainment, CSAT, reopen rate, breaches and "
                    "escalations: in all, per team and per person holding the complaints; and the general "
                    "satisfaction (survey answers that scored no complaint) by tier")
async def report(request: Request, from_: Annotated[datetime, Query(alias="from")],
                 to: datetime) -> dict[str, Any]:
    if from_.tzinfo is None or to.tzinfo is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "from and to need a UTC offset")
    if to <= from_:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "to must be after from")
    repo = _workflow(request).repo
    complaints, general = await asyncio.gather(repo.opened_between(from_, to), repo.satisfaction_between(from_, to))
    return reports.complaint_report(complaints, from_, to, general)


@router.get("/queues/agents/{staff_id}", dependencies=[READ], tags=["queues"],
            summary="A person's open complaints and return visits, the one due soonest first")
async def agent_queue(staff_id: Annotated[str, Path(min_length=1, max_length=128)], request: Request,
                      limit: QueueLimit = 100) -> dict[str, Any]:
    # Any assignee has a queue: complaints can be assigned by hand to people outside the directory.
    workflow = _workflow(request)
    found, tasks = await asyncio.gather(workflow.repo.queue(assignee=staff_id),
                                        request.app.state.accounts.repo.open_tasks(staff_id))
    return {"assignee": staff_id, "items": queues.ordered(found, workflow.rules, limit, tasks), "open": len(found),
            "tasks": len(tasks)}


@router.get("/queues/teams/{team}", dependencies=[READ], tags=["queues"],
            summary="A team's open complaints, the one due soonest first")
async def team_queue(team: Annotated[TeamName, Path()], request: Request, limit: QueueLimit = 100) -> dict[str, Any]:
    workflow = _workflow(request)
    if workflow.directory is None or workflow.directory.team(team) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such team")
    found = await workflow.repo.queue(team=team)
    return {"team": team, "items": queues.ordered(found, workflow.rules, limit), "open": len(found)}


@router.get("/staff", tags=["queues"],
            summary="The staff directory and who is on duty; contacts only for a key with pii:read")
async def staff_directory(request: Request, key: ApiKey = READ) -> dict[str, Any]:
    workflow = _workflow(request)
    directory, now = workflow.directory, workflow.now()
    if directory is None:
        return {"teams": [], "staff": [], "routing": None}
    contacts = "pii:read" in key.scopes
    return {"routing": directory.routing.model_dump(mode="json"),
            "teams": [t.model_dump(mode="json") for t in directory.teams],
            "staff": [staff.public_view(m, now, contacts=contacts) for m in directory.staff]}
