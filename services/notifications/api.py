"""HTTP API of the notifications service."""

from __future__ import annotations

import json
from datetime import datetime
from html import escape
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.responses import HTMLResponse
from pydantic import AwareDatetime, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from shared.auth import require
from shared.contract.events import InteractionData, InteractionRecorded, Timezone
from shared.contract.types import CustomerId, TextModel

from . import reports, surveys
from .domain import Profile, SuppressionEntry, template_context
from .domain import Request as MessageRequest
from .repository import Repository
from .templates import TemplateError
from .workflow import SOURCE, Workflow

router = APIRouter(tags=["notifications"])
CUSTOMER_ID = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$"
_CUSTOMER_ID: TypeAdapter[str] = TypeAdapter(CustomerId)
HISTORY_FIELDS = ("trigger", "template", "status", "reason", "channel", "locale", "attempts", "created_at",
                  "due_at", "sent_at")


class Body(TextModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PreviewBody(Body):
    template: Annotated[str, Field(pattern=r"^[a-z_]+$", max_length=64)]
    locale: Annotated[str, Field(max_length=35)] | None = None
    channel: Literal["email", "sms", "webhook"] = "email"
    name: Annotated[str, Field(max_length=200)] = "顾客"
    timezone: Timezone | None = None
    params: dict[Annotated[str, Field(pattern=r"^[a-z_]+$", max_length=64)], str | int | None] = Field(
        default_factory=dict, max_length=50)


class SuppressionBody(Body):
    kind: Literal["customer", "email", "phone"]
    value: Annotated[str, Field(min_length=1, max_length=254)]
    channel: Literal["email", "sms", "webhook"] | None = None
    all_messages: bool = False
    reason: Annotated[str, Field(min_length=1, max_length=200)] = "requested"


def _repo(request: Request) -> Repository:
    return request.app.state.repo


def _workflow(request: Request) -> Workflow:
    return request.app.state.workflow


@router.get("/customers/{customer_id}/notifications", dependencies=[require("notifications:read")],
            summary="A customer's messages, newest first: what was sent, deferred or suppressed and why")
async def history(request: Request, customer_id: Annotated[str, Path(pattern=CUSTOMER_ID)],
                  limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
    docs = await _repo(request).history(customer_id, limit)
    return {"customer_id": customer_id,
            "notifications": [{"dedupe_key": d["_id"], **{k: d.get(k) for k in HISTORY_FIELDS}} for d in docs]}


@router.post("/preview", dependencies=[require("notifications:read")],
             summary="Render a template for a locale and channel with sample values")
async def preview(request: Request, body: PreviewBody) -> dict[str, Any]:
    workflow = _workflow(request)
    templates = workflow.templates
    if body.template not in templates.types:
        raise HTTPException(422, f"template: unknown template {body.template!r}; known: {', '.join(templates.types)}")
    message = MessageRequest("preview", "tier", body.template, body.template, "preview", "preview",
                             {k: v for k, v in body.params.items()})
    profile = Profile("preview", name=body.name, locale=body.locale, timezone=body.timezone)
    care = not body.template.startswith("complaint_")
    try:
        context = template_context(message, profile, body.locale or workflow.policy.default_locale,
                                   workflow.policy)
        rendered = templates.render(body.template, body.locale, body.channel, context, care=care,
                                    unsubscribe_url=workflow.unsubscribe_url("preview"))
    except (TemplateError, ValueError) as exc:
        raise HTTPException(422, f"params: {exc}") from exc
    return {"template": rendered.template, "locale": rendered.locale, "channel": rendered.channel,
            "subject": rendered.subject, "body": rendered.body, "sms_code": rendered.sms_code,
            "sms_params": dict(rendered.sms_params)}


@router.get("/suppressions", dependencies=[require("notifications:read")], summary="The suppression list")
async def list_suppressions(request: Request, kind: Literal["customer", "email", "phone"] | None = None,
                            limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    docs = await _repo(request).suppression_list.entries(kind, limit)
    return {"suppressions": [{"id": d["_id"], **{k: d.get(k) for k in (
        "kind", "value", "channel", "all_messages", "reason", "created_at")}} for d in docs]}


@router.post("/suppressions", status_code=status.HTTP_201_CREATED, dependencies=[require("notifications:write")],
             summary="Stop messages to a customer, an e-mail address or a phone number")
async def add_suppression(request: Request, body: SuppressionBody) -> dict[str, Any]:
    value = body.value.lower() if body.kind == "email" else body.value
    if body.kind == "customer" and not _valid_customer(value):
        raise HTTPException(422, "value: not a customer id")
    entry = SuppressionEntry(kind=body.kind, value=value, channel=body.channel, all_messages=body.all_messages)
    doc = await _repo(request).suppression_list.add(entry, body.reason, _workflow(request).clock.now())
    return {"id": doc["_id"], "kind": doc["kind"], "value": doc["value"], "channel": doc["channel"],
            "all_messages": doc["all_messages"], "reason": doc["reason"]}


@router.delete("/suppressions/{suppression_id}", status_code=status.HTTP_204_NO_CONTENT,
               dependencies=[require("notifications:write")], summary="Remove an entry of the suppression list")
async def remove_suppression(request: Request, suppression_id: Annotated[str, Path(max_length=300)]) -> None:
    if not await _repo(request).suppression_list.remove(suppression_id):
        raise HTTPException(404, "no such suppression")


@router.post("/unsubscribe", status_code=status.HTTP_204_NO_CONTENT,
             summary="One-click unsubscribe from care messages; the link in each care message signs the customer")
async def unsubscribe(request: Request, customer_id: Annotated[str, Query(pattern=CUSTOMER_ID)],
                      token: Annotated[str, Query(max_length=64)]) -> None:
    workflow = _workflow(request)
    if not workflow.verify_unsubscribe(customer_id, token):
        raise HTTPException(403, "token: does not match the customer")
    await _repo(request).suppression_list.add(SuppressionEntry(kind="customer", value=customer_id), "unsubscribed",
                                              workflow.clock.now())


COMPLAINT_ID = r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$"


class SurveyAnswer(Body):
    customer_id: Annotated[str, Field(pattern=CUSTOMER_ID)]
    #: A complaint's survey link names the complaint; a general one (a purchase, a period) its survey.
    complaint_id: Annotated[str, Field(min_length=1, max_length=128, pattern=COMPLAINT_ID)] | None = None
    survey: Annotated[str, Field(max_length=170, pattern=surveys.GENERAL)] | None = None
    expires: Annotated[int, Field(ge=0, le=2**40)]
    token: Annotated[str, Field(min_length=1, max_length=64)]
    score: Annotated[int, Field(ge=1, le=5)]
    comment: Annotated[str, Field(max_length=2000)] = ""

    @model_validator(mode="after")
    def _one_subject(self) -> SurveyAnswer:
        if (self.complaint_id is None) == (self.survey is None):
            raise ValueError("give complaint_id (a complaint's survey) or survey (a general one), not both")
        return self


_SURVEY_FORM = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>How did we do?</title>
<meta name="viewport" content="width=device-width"><link rel="icon" href="data:,"></head><body>
<form method="post" action="surveys"><p>{question}</p>
<p>{scores}</p><p><textarea name="comment" maxlength="2000" rows="4" cols="40"></textarea></p>
<input type="hidden" name="customer_id" value="{customer}">{subject}<input type="hidden" name="expires"
value="{expires}"><input type="hidden" name="token" value="{token}"><button type="submit">Send / 提交</button>
</form></body></html>"""


def _question(complaint_id: str | None, survey: str | None) -> str:
    if complaint_id is not None:
        return (f"How satisfied are you with how we handled complaint {escape(complaint_id)}? "
                f"您对投诉 {escape(complaint_id)} 的处理满意吗？")
    kind, _, what = (survey or "").partition(":")
    if kind == "purchase":
        return f"How satisfied are you with your order {escape(what)}? 您对订单 {escape(what)} 满意吗？"
    return "How satisfied are you with us lately? 您对我们近来的服务满意吗？"


def _refusal(workflow: Workflow, answer: SurveyAnswer) -> str | None:
    if answer.complaint_id is not None:
        return workflow.survey_refusal(answer.customer_id, answer.complaint_id, answer.expires, answer.token)
    return workflow.general_survey_refusal(answer.customer_id, answer.survey or "", answer.expires, answer.token)


def _answer(raw: Any) -> SurveyAnswer:
    try:
        return SurveyAnswer.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY,
                            f"{'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}") from None


@router.get("/surveys", response_class=HTMLResponse, tags=["surveys"],
            summary="The page a survey link opens: a score from 1 to 5 and a comment, for the signed link only "
                    "(a complaint's link names complaint_id, a general one survey)")
async def survey_page(request: Request, customer_id: Annotated[str, Query(pattern=CUSTOMER_ID)],
                      expires: Annotated[int, Query(ge=0, le=2**40)],
                      token: Annotated[str, Query(min_length=1, max_length=64)],
                      complaint_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
                      survey: Annotated[str | None, Query(max_length=170)] = None) -> HTMLResponse:
    # The score is not on the page yet: the link's fields are checked as an answer's would be.
    link = _answer({"customer_id": customer_id, "complaint_id": complaint_id, "survey": survey, "expires": expires,
                    "token": token, "score": 5})
    why = _refusal(_workflow(request), link)
    if why is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, why)
    scores = " ".join(f'<label><input type="radio" name="score" value="{n}" required> {n}</label>' for n in range(1, 6))
    name, value = ("complaint_id", complaint_id) if complaint_id is not None else ("survey", survey)
    subject = f'<input type="hidden" name="{name}" value="{escape(value or "")}">'
    return HTMLResponse(_SURVEY_FORM.format(question=_question(complaint_id, survey), customer=escape(customer_id),
                                            subject=subject, expires=expires, token=escape(token), scores=scores))


@router.post("/surveys", status_code=status.HTTP_202_ACCEPTED, tags=["surveys"],
             summary="Answer a survey through its signed link (form or JSON); published as a survey response "
                     "on crm.interactions.v1, once per link (a general survey's with no complaint_id)")
async def answer_survey(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raw: Any = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace"),
                                                   max_num_fields=10).items()}
    else:
        try:
            raw = json.loads(await request.body())
        except ValueError:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "body: not JSON or a form") from None
    answer = _answer(raw)
    workflow = _workflow(request)
    why = _refusal(workflow, answer)
    if why is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, why)
    now = workflow.clock.now()
    interaction_id = surveys.answer_id(answer.token)
    if not await _repo(request).record_survey_answer(interaction_id, answer.customer_id, answer.complaint_id, now,
                                                     answer.survey):
        raise HTTPException(status.HTTP_409_CONFLICT, "token: this link has been answered already")
    # Judged against the service's clock, as every event it builds (a replay runs on another date).
    await workflow.publisher.publish([InteractionRecorded.model_validate({
        "id": interaction_id, "source": SOURCE, "subject": answer.customer_id, "time": now,
        "data": InteractionData(interaction_id=interaction_id, kind="survey_response", channel="web",
                                direction="inbound", summary=answer.comment or None, satisfaction=answer.score,
                                complaint_id=answer.complaint_id)}, context={"now": now})])
    return {"interaction_id": interaction_id}


@router.get("/reports/notifications", dependencies=[require("notifications:read")],
            summary="Messages sent, failed and suppressed, by reason and channel; what the win-back messages "
                    "achieved (reactivations after one, by its outcome)")
async def report(request: Request, since: AwareDatetime | None = None) -> dict[str, Any]:
    rows = await _repo(request).report(since)
    totals: dict[str, int] = {}
    by_channel: dict[str, dict[str, int]] = {}
    by_reason: dict[str, dict[str, int]] = {}
    for row in rows:
        key = row["_id"]
        outcome, count = key.get("status"), row["count"]
        totals[outcome] = totals.get(outcome, 0) + count
        if key.get("channel") and outcome in ("sent", "failed"):
            by_channel.setdefault(outcome, {})[key["channel"]] = by_channel.get(outcome, {}).get(
                key["channel"], 0) + count
        if key.get("reason"):
            by_reason.setdefault(outcome, {})[key["reason"]] = by_reason.get(outcome, {}).get(
                key["reason"], 0) + count
    win_back = reports.win_back_report(await _repo(request).with_triggers(reports.TRIGGERS))
    return {"since": since.isoformat() if isinstance(since, datetime) else None, "totals": totals,
            "by_channel": by_channel, "by_reason": by_reason, "win_back": win_back}


def _valid_customer(value: str) -> bool:
    try:
        _CUSTOMER_ID.validate_python(value)
    except ValueError:
        return False
    return True
