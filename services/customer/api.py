"""HTTP API of the customer service."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import EmailStr, Field, TypeAdapter, ValidationError

from shared.auth import require
from shared.contract.events import (
    Consents,
    CustomerProfile,
    CustomerProfileData,
    InteractionData,
    Industry,
    InteractionRecorded,
    Model,
    Needs,
    Phone,
    Region,
    Tag,
)
from shared.contract.types import CustomerId, Identifier, ShortText
from shared.settings import ApiKey

from . import domain
from .repository import LIST_BUCKETS, Repository, Stored, list_bucket
from .workflow import SOURCE, AlreadyExists, Cause, Conflict, Erased, NotFound, Workflow

router = APIRouter(prefix="/customers", tags=["customers"])

Lifecycle = Literal["prospect", "new", "repeat", "loyal", "at_risk", "churned", "reactivated"]
ValueTier = Literal["high", "medium", "low"]
TimelineKind = Literal["purchase", "refund", "interaction", "complaint", "classification", "notification"]
_PHONE: TypeAdapter[str] = TypeAdapter(Phone)
_EMAIL: TypeAdapter[str] = TypeAdapter(Annotated[EmailStr, Field(max_length=254)])


class NewCustomer(CustomerProfileData):
    """A profile to create; without ``customer_id`` the service assigns one."""

    customer_id: CustomerId | None = None


class ConsentUpdate(Model):
    email: bool | None = None
    sms: bool | None = None
    care_messages: bool | None = None
    marketing: bool | None = None
    #: Where the customer gave or withdrew it (e.g. ``store/sh-01``, ``call``); ``api`` by default.
    source: ShortText | None = None


class NewInteraction(InteractionData):
    """A follow-up call or visit; without ``interaction_id`` the service assigns one."""

    interaction_id: Identifier | None = None  # type: ignore[assignment]
    direction: Literal["inbound", "outbound"] = "outbound"


# --- helpers ---------------------------------------------------------------------------------------

def _workflow(request: Request) -> Workflow:
    return request.app.state.workflow


def _repo(request: Request) -> Repository:
    return request.app.state.repo


def _can_read_pii(key: ApiKey) -> bool:
    return "pii:read" in key.scopes


def _view(customer_id: str, profile: CustomerProfile, key: ApiKey) -> dict[str, Any]:
    body = profile.model_dump(mode="json")
    return {"customer_id": customer_id, **(body if _can_read_pii(key) else domain.masked(body))}


def _cause(request: Request, key: ApiKey, source: str | None = None) -> Cause:
    return Cause(id=str(uuid.uuid4()), at=_workflow(request).clock.now(), source=source or "api", actor=key.name)


def _http_error(exc: Exception, customer_id: str) -> HTTPException:
    if isinstance(exc, NotFound):
        return HTTPException(status.HTTP_404_NOT_FOUND, f"no customer {customer_id}")
    if isinstance(exc, Erased):
        return HTTPException(status.HTTP_410_GONE, f"customer {customer_id} was erased")
    if isinstance(exc, AlreadyExists):
        return HTTPException(status.HTTP_409_CONFLICT, f"customer {customer_id} already exists")
    if isinstance(exc, Conflict):
        return HTTPException(status.HTTP_409_CONFLICT, f"customer {customer_id} changed meanwhile; try again")
    raise exc


def _invalid(location: str, field: str, message: str) -> HTTPException:
    return HTTPException(422,
                         [{"loc": [location, field], "msg": message, "type": "value_error"}])


def _encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def _decode_cursor(cursor: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError):
        raise _invalid("query", "cursor", "cursor is not one this API returned") from None


async def _active(request: Request, customer_id: str) -> Stored:
    try:
        return await _workflow(request).load_active(customer_id)
    except (NotFound, Erased) as exc:
        raise _http_error(exc, customer_id) from None


# --- profiles --------------------------------------------------------------------------------------

@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a customer (or register a prospect)")
async def create_customer(request: Request, body: NewCustomer,
                          key: ApiKey = require("customers:write")) -> dict[str, Any]:
    customer_id = body.customer_id or f"C-{uuid.uuid4().hex}"
    changes = {name: getattr(body, name) for name in body.model_fields_set if name != "customer_id"}
    try:
        profile = await _workflow(request).change(customer_id, changes, _cause(request, key), activate=True,
                                                 create=True)
    except (AlreadyExists, Erased, Conflict) as exc:
        raise _http_error(exc, customer_id) from None
    return _view(customer_id, profile, key)


@router.get("", summary="List customers by tier, lifecycle, tag, needs, industry or region, a page at a time "
                        "(in an order of their own, stable across pages)")
async def list_customers(
    request: Request,
    tier: ValueTier | None = None,
    lifecycle: Lifecycle | None = None,
    tag: Tag | None = None,
    needs: Needs | None = None,
    industry: Industry | None = None,
    region: Region | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
    key: ApiKey = require("customers:read"),
) -> dict[str, Any]:
    limit = min(limit, request.app.state.settings.max_page_size)
    after = _decode_cursor(cursor) if cursor else None
    if after is not None:
        # [list bucket, customer id] of the last customer of the page before
        if not (isinstance(after, list) and len(after) == 2 and type(after[0]) is int
                and 0 <= after[0] < LIST_BUCKETS and isinstance(after[1], str)):
            raise _invalid("query", "cursor", "cursor is not one this API returned")
        after = (after[0], after[1])
    page = await _repo(request).list(tier=tier, lifecycle=lifecycle, tag=tag, needs=needs, after=after,
                                     limit=limit + 1, industry=industry, region=region)
    items = [_view(s.customer_id, s.profile, key) for s in page[:limit] if s.profile]
    more = len(page) > limit
    last = page[limit - 1].customer_id if more else None
    return {"items": items, "next_cursor": _encode_cursor([list_bucket(last), last]) if last else None}


@router.get("/lookup", summary="Find customers by exact phone or e-mail (blind index)")
async def lookup(
    request: Request,
    phone: Annotated[str | None, Query(max_length=32)] = None,
    email: Annotated[str | None, Query(max_length=254)] = None,
    key: ApiKey = require("customers:read", "pii:read"),
) -> dict[str, Any]:
    repo = _repo(request)
    if (phone is None) == (email is None):
        raise _invalid("query", "phone", "give exactly one of phone or email")
    if phone is not None:
        try:
            normalised = _PHONE.validate_python(domain.normalise_phone(phone))
        except (ValueError, ValidationError) as exc:
            raise _invalid("query", "phone", _message(exc)) from None
        found = await repo.find_by_phone(normalised)
    else:
        try:
            address = _EMAIL.validate_python(email)
        except ValidationError as exc:
            raise _invalid("query", "email", _message(exc)) from None
        found = await repo.find_by_email(address)
    return {"items": [_view(s.customer_id, s.profile, key) for s in found if s.profile]}


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
    return str(exc)


@router.get("/{customer_id}", summary="The 360-degree view: profile, classification, account manager and activity "
                                     "summary")
async def get_customer(request: Request, customer_id: CustomerId,
                       key: ApiKey = require("customers:read")) -> dict[str, Any]:
    stored = await _active(request, customer_id)
    assert stored.profile is not None
    repo = _repo(request)
    activity = await repo.activity(customer_id)
    complaints = await repo.complaints(customer_id)
    counts: dict[str, int] = {}
    last: dict[str, datetime] = {}
    for entry in activity:
        counts[entry["kind"]] = counts.get(entry["kind"], 0) + 1
        last[entry["kind"]] = max(last.get(entry["kind"], entry["at"]), entry["at"])
    summary = {
        "orders": counts.get("purchase", 0),
        "refunds": counts.get("refund", 0),
        "net_spend": domain.net_spend(e for e in activity if e["kind"] in ("purchase", "refund")),
        "last_purchase_at": last["purchase"].isoformat() if "purchase" in last else None,
        "interactions": counts.get("interaction", 0),
        "last_interaction_at": last["interaction"].isoformat() if "interaction" in last else None,
        "complaints": len(complaints),
        "open_complaints": sum(1 for c in complaints if c.get("status") not in ("resolved", "closed")),
        "messages": counts.get("notification", 0),
    }
    classification = dict(stored.classification) if stored.classification else None
    if classification and isinstance(classification.get("updated_at"), datetime):
        classification["updated_at"] = classification["updated_at"].isoformat()
    manager = dict(stored.account_manager) if stored.account_manager else None
    if manager and isinstance(manager.get("since"), datetime):
        manager["since"] = manager["since"].isoformat()
    return {**_view(customer_id, stored.profile, key), "classification": classification, "account_manager": manager,
            "summary": summary}


@router.patch("/{customer_id}", summary="Change profile fields; null clears a field")
async def update_customer(request: Request, customer_id: CustomerId, body: CustomerProfileData,
                          key: ApiKey = require("customers:write")) -> dict[str, Any]:
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    try:
        profile = await _workflow(request).change(customer_id, changes, _cause(request, key), activate=False,
                                                 create=False)
    except (NotFound, Erased, Conflict) as exc:
        raise _http_error(exc, customer_id) from None
    return _view(customer_id, profile, key)


@router.delete("/{customer_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               summary="Erase the customer's personal data; ids and amounts stay, anonymised")
async def erase_customer(request: Request, customer_id: CustomerId,
                         reason: Annotated[str | None, Query(max_length=200)] = None,
                         key: ApiKey = require("customers:erase")) -> Response:
    try:
        await _workflow(request).erase(customer_id, at=_workflow(request).clock.now(), reason=reason)
    except NotFound as exc:
        raise _http_error(exc, customer_id) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- timeline and interactions ---------------------------------------------------------------------

@router.get("/{customer_id}/timeline",
            summary="Purchases, interactions, complaints, classification changes and messages, newest first")
async def timeline(
    request: Request,
    customer_id: CustomerId,
    kind: Annotated[list[TimelineKind] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
    key: ApiKey = require("customers:read"),
) -> dict[str, Any]:
    await _active(request, customer_id)
    limit = min(limit, request.app.state.settings.max_page_size)
    before = None
    if cursor:
        value = _decode_cursor(cursor)
        try:
            before = (datetime.fromisoformat(value[0]), str(value[1]))
        except (TypeError, ValueError, IndexError, KeyError):
            raise _invalid("query", "cursor", "cursor is not one this API returned") from None
    entries = await _repo(request).timeline(customer_id, before=before, limit=limit + 1, kinds=kind)
    items = []
    for entry in entries[:limit]:
        entry_id = entry.pop("_id")
        entry.pop("customer_id", None)
        if not _can_read_pii(key):
            entry.pop("summary", None)
        items.append({"id": entry_id, **entry, "at": entry["at"].isoformat()})
    more = len(entries) > limit
    next_cursor = _encode_cursor([entries[limit - 1]["at"].isoformat(), items[-1]["id"]]) if more else None
    return {"items": items, "next_cursor": next_cursor}


@router.post("/{customer_id}/interactions", status_code=status.HTTP_202_ACCEPTED,
             summary="Record a follow-up call or visit; published on crm.interactions.v1")
async def record_interaction(request: Request, customer_id: CustomerId, body: NewInteraction,
                             key: ApiKey = require("customers:write")) -> dict[str, Any]:
    await _active(request, customer_id)
    interaction_id = body.interaction_id or f"I-{uuid.uuid4().hex}"
    data = InteractionData(**{**body.model_dump(exclude={"interaction_id"}), "interaction_id": interaction_id})
    event = InteractionRecorded(id=domain.event_id("interaction", customer_id, interaction_id), source=SOURCE,
                                subject=customer_id, time=_workflow(request).clock.now(), data=data)
    await _workflow(request).publisher.publish([event])
    return {"interaction_id": interaction_id, "event_id": event.id}


# --- consents --------------------------------------------------------------------------------------

@router.get("/{customer_id}/consents", summary="Current consents and every change with time, source and actor")
async def consents(request: Request, customer_id: CustomerId,
                   key: ApiKey = require("customers:read")) -> dict[str, Any]:
    stored = await _active(request, customer_id)
    assert stored.profile is not None
    history = await _repo(request).consent_history(customer_id)
    current = stored.profile.consents or Consents()
    return {
        "customer_id": customer_id,
        "current": current.model_dump(),
        "history": [{"id": h.pop("_id"), **h, "at": h["at"].isoformat()} for h in history],
    }


@router.put("/{customer_id}/consents", summary="Give or withdraw consents; withdrawal takes effect at once")
async def change_consents(request: Request, customer_id: CustomerId, body: ConsentUpdate,
                          key: ApiKey = require("customers:write")) -> dict[str, Any]:
    stated = Consents(**body.model_dump(exclude={"source"}))
    if not stated.model_dump(exclude_none=True):
        raise _invalid("body", "consents", "state at least one of email, sms, care_messages, marketing")
    try:
        profile = await _workflow(request).change(customer_id, {"consents": stated},
                                                 _cause(request, key, body.source), activate=False, create=False)
    except (NotFound, Erased, Conflict) as exc:
        raise _http_error(exc, customer_id) from None
    return {"customer_id": customer_id, "current": (profile.consents or Consents()).model_dump()}
