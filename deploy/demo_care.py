"""The demo's care team: the plan of its steps on each complaint (pure), and taking them.

The complaints service stamps every action taken through its HTTP API with its clock, and on the
event-time clock that is the newest event time it has seen; its scheduler breaches a target as that
watermark passes the due time. Acting after the replay would stamp every acknowledgement December
2011 and every complaint would miss its targets. So the team acts during the replay: ``agent_plan``
gives each complaint, from the seed, its steps and their event times (a share is never handled;
acknowledgements and resolutions come some within and some beyond the targets; complex cases get
progress updates; some customers answer a survey). When the replay reaches a step, the demo
publishes the contact that goes with it to ``crm.interactions.v1``, as a CRM would record it (the
agent's call acknowledging the complaint, the e-mail with an update or the resolution, the
customer's survey answer naming the complaint), waits until the complaints service's consumer group
has committed past that record, so that its clock stands exactly at the step's time (nothing later
has been published yet), and only then calls the HTTP API: the transitions to acknowledged and
investigating, a comment, the transition to resolved, each in the agent's name. A survey answer
needs no call: the service takes it as feedback, closes the complaint on a good score and reopens it
on a low one (the plan then resolves it again). Nothing the complaints service publishes itself is
imitated. Steps after the last replayed event are dropped, so the services' clocks end where the
data ends. Run on services that already handled the plan (a second ``make demo`` without ``make
down``), the actions find their complaints past that step and are counted as skipped.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from deploy.replay import NAMESPACE
from shared.contract import CloudEvent, serialize_event
from shared.contract.events import (
    ComplaintSubmitted,
    InteractionData,
    InteractionRecorded,
)
from shared.kafka import CLOUDEVENTS_CONTENT_TYPE

HEADERS = [("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())]

# The care team's habits, as (share, from hours, to hours) bands. The targets they meet or miss are
# the complaints service's defaults: first response within 2 h (p1), 4 h (preferred tiers) or 24 h;
# resolution within 1, 2, 3 or 7 working days; progress updates of complex cases every 1 or 2
# working days.
AGENTS = ("care.ana", "care.ben", "care.chen", "care.dev", "care.eve", "care.fei")
UNHANDLED = 0.08  # complaints nobody picks up: they breach and escalate
ACK_DELAY = ((0.70, 0.2, 3.5), (0.18, 3.5, 20.0), (0.12, 26.0, 96.0))
RESOLVED = 0.88  # of the acknowledged; the others stay open
RESOLVE_DELAY = ((0.50, 2.0, 30.0), (0.30, 30.0, 96.0), (0.20, 120.0, 400.0))
UPDATE_EVERY = (20.0, 40.0)
MAX_UPDATES = 6
SURVEYED = 0.6  # of the resolved
SURVEY_AFTER = (6.0, 96.0)
SCORES = ((5, 40), (4, 30), (3, 14), (2, 10), (1, 6))
LOW_SCORE = 2  # the complaints service reopens on a score this low (its Rules.low_score)
RERESOLVE_AFTER = (24.0, 96.0)
ROOT_CAUSES = {"product_quality": "product_defect", "delivery": "logistics", "billing": "billing_error",
               "service_attitude": "staff_behaviour", "price": "pricing", "other": "customer_misunderstanding"}


# --- The care team's plan (pure) --------------------------------------------------------------------

@dataclass(frozen=True)
class AgentAction:
    """One step of the care team on a complaint, at the event time it happens."""

    at: datetime
    kind: str  # acknowledge | update | resolve | survey
    complaint_id: str
    customer_id: str
    agent: str
    step: int
    score: int | None = None
    root_cause: str | None = None


def _band(rng: random.Random, bands: tuple[tuple[float, float, float], ...]) -> float:
    _share, low, high = rng.choices(bands, [b[0] for b in bands])[0]
    return rng.uniform(low, high)


def complaint_plan(complaint: ComplaintSubmitted, seed: int) -> list[AgentAction]:
    """The steps taken on one complaint, in time order; drawn from the seed and the complaint id only,
    so a complaint is handled alike whatever else is replayed."""
    complaint_id = complaint.data.complaint_id
    assert complaint_id is not None, "the demo's complaints name their id"
    rng = random.Random(f"{seed}/{complaint_id}")
    agent = rng.choice(AGENTS)
    steps: list[AgentAction] = []

    def add(kind: str, at: datetime, **extra: Any) -> None:
        steps.append(AgentAction(at.replace(microsecond=0), kind, complaint_id, complaint.subject, agent,
                                 len(steps), **extra))

    if rng.random() < UNHANDLED:
        return steps
    acknowledged = complaint.time + timedelta(hours=_band(rng, ACK_DELAY))
    add("acknowledge", acknowledged)
    if rng.random() >= RESOLVED:
        return steps
    resolved = acknowledged + timedelta(hours=_band(rng, RESOLVE_DELAY))
    if complaint.data.complexity == "complex":
        update = acknowledged + timedelta(hours=rng.uniform(*UPDATE_EVERY))
        for _ in range(MAX_UPDATES):
            if update >= resolved:
                break
            add("update", update)
            update += timedelta(hours=rng.uniform(*UPDATE_EVERY))
    cause = ROOT_CAUSES[complaint.data.category]
    add("resolve", resolved, root_cause=cause)
    if rng.random() < SURVEYED:
        answered = resolved + timedelta(hours=rng.uniform(*SURVEY_AFTER))
        score = rng.choices([s for s, _ in SCORES], [w for _, w in SCORES])[0]
        add("survey", answered, score=score)
        if score <= LOW_SCORE:
            add("resolve", answered + timedelta(hours=rng.uniform(*RERESOLVE_AFTER)), root_cause=cause)
    return steps


def agent_plan(complaints: Iterable[CloudEvent], seed: int, until: datetime | None = None) -> list[AgentAction]:
    """Every complaint's steps, in time order; steps after ``until`` are left out."""
    steps = [a for c in complaints if isinstance(c, ComplaintSubmitted) for a in complaint_plan(c, seed)
             if until is None or a.at <= until]
    return sorted(steps, key=lambda a: (a.at, a.complaint_id, a.step))


def contact(action: AgentAction) -> InteractionRecorded:
    """The interaction a CRM records with a step: the agent's call or e-mail, or the survey answer."""
    kind, channel, direction, summary = {
        "acknowledge": ("call", "phone", "outbound", f"{action.agent} called about complaint {action.complaint_id}"),
        "update": ("email", "email", "outbound", f"Progress update on complaint {action.complaint_id}"),
        "resolve": ("email", "email", "outbound", f"Resolution of complaint {action.complaint_id}"),
        "survey": ("survey_response", "online", "inbound", f"Survey on complaint {action.complaint_id}"),
    }[action.kind]
    interaction_id = f"{action.complaint_id}/{action.step}/{action.kind}"
    return InteractionRecorded(
        id=str(uuid.uuid5(NAMESPACE, f"care:{interaction_id}")), source="demo/crm", subject=action.customer_id,
        time=action.at,
        data=InteractionData(interaction_id=interaction_id, kind=kind, channel=channel, direction=direction,
                             summary=summary, satisfaction=action.score, complaint_id=action.complaint_id),
    )


def timeline(events: list[CloudEvent], plan: list[AgentAction]) -> Iterator[CloudEvent | AgentAction]:
    """Events and steps in time order; an event comes before a step at the same time."""
    merged = heapq.merge(((e.time, 0, i, e) for i, e in enumerate(events)),
                         ((a.at, 1, i, a) for i, a in enumerate(plan)))
    for *_, item in merged:
        yield item


# --- Taking the steps ------------------------------------------------------------------------------

class CareTeam:
    """Takes each step once the complaints service's clock stands at its time (see the module docstring)."""

    def __init__(self, client: httpx.AsyncClient, producer: AIOKafkaProducer, admin: AIOKafkaAdminClient,
                 group: str, timeout: float, base: str) -> None:
        self.client = client
        self.producer = producer
        self.admin = admin
        self.group = group
        self.timeout = timeout
        self.base = base  # the complaints API
        self.outcomes: Counter[str] = Counter()
        #: Wall time spent on steps by phase: the replay waits for the complaints service at each one.
        self.seconds: Counter[str] = Counter()
        #: Each complaint's status as last seen; surveys are the only change the team does not make itself.
        self.status: dict[str, str] = {}

    async def act(self, action: AgentAction) -> None:
        try:
            self.outcomes[await self._act(action)] += 1
        except httpx.HTTPStatusError as exc:
            self.outcomes[f"{action.kind}: refused ({exc.response.status_code})"] += 1

    async def _act(self, action: AgentAction) -> str:
        cid, actor = action.complaint_id, action.agent
        if action.kind == "survey":
            # Feedback is taken on resolved complaints only; an answer on anything else would be refused.
            before = await self._complaint(cid)
            if before is None or before["status"] not in ("resolved", "closed"):
                return "survey: not sent, complaint not resolved"
            if not await self._publish_and_wait(action):
                return "survey: complaints service behind"
            after = await self._complaint(cid)
            status = after["status"] if after else "gone"
            return "survey: low score, reopened" if status == "investigating" else f"survey: complaint {status}"
        if action.kind != "acknowledge" and self.status.get(cid) in (None, "received", "resolved", "closed"):
            # Nothing to do (never acknowledged, or resolved since): no contact to record either.
            return f"{action.kind}: skipped, {self.status.get(cid) or 'not acknowledged'}"
        if not await self._publish_and_wait(action):
            return f"{action.kind}: complaints service behind"
        complaint = await self._complaint(cid, wait=True)
        if complaint is None:
            return f"{action.kind}: complaint not found"
        status = complaint["status"]
        if action.kind == "acknowledge":
            if status != "received":
                return f"acknowledge: skipped, already {status}"
            await self._post(action, "transitions", {"to": "acknowledged", "actor": actor})
            await self._post(action, "transitions", {"to": "investigating", "actor": actor})
            return "acknowledged"
        if status in ("resolved", "closed", "received"):
            return f"{action.kind}: skipped, {status}"
        if action.kind == "update":
            await self._post(action, "comments", {"author": actor, "text": "We are working on it."})
            return "progress updates"
        if status != "investigating":
            await self._post(action, "transitions", {"to": "investigating", "actor": actor})
        await self._post(action, "transitions", {
            "to": "resolved", "actor": actor, "root_cause": action.root_cause,
            "resolution_summary": f"Resolved by {actor}: {str(action.root_cause).replace('_', ' ')}"})
        return "resolved again after a reopen" if complaint.get("reopen_count") else "resolved"

    async def _publish_and_wait(self, action: AgentAction) -> bool:
        started = time.monotonic()
        try:
            return await self._publish_and_wait_once(action)
        finally:
            self.seconds["clock"] += time.monotonic() - started

    async def _publish_and_wait_once(self, action: AgentAction) -> bool:
        event = contact(action)
        sent = await (await self.producer.send(event.topic, serialize_event(event), key=event.subject.encode(),
                                               headers=HEADERS))
        partition = TopicPartition(sent.topic, sent.partition)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            committed = await self.admin.list_consumer_group_offsets(self.group, partitions=[partition])
            done = committed.get(partition)
            if done is not None and done.offset > sent.offset:
                return True
            await asyncio.sleep(0.02)
        return False

    async def _complaint(self, complaint_id: str, *, wait: bool = False) -> dict[str, Any] | None:
        # The intake travels on its own topic; it may land a moment after the contact that follows it.
        deadline = time.monotonic() + (self.timeout if wait else 0)
        while True:
            started = time.monotonic()
            response = await self.client.get(f"{self.base}/{complaint_id}")
            self.seconds["reads"] += time.monotonic() - started
            if response.status_code != 404:
                response.raise_for_status()
                complaint: dict[str, Any] = response.json()
                self.status[complaint_id] = complaint["status"]
                return complaint
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.2)

    async def _post(self, action: AgentAction, path: str, body: dict[str, Any]) -> None:
        started = time.monotonic()
        response = await self.client.post(f"{self.base}/{action.complaint_id}/{path}", json=body)
        self.seconds["writes"] += time.monotonic() - started
        response.raise_for_status()
        self.status[action.complaint_id] = response.json()["status"]

