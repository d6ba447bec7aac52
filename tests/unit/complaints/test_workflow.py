"""The workflow keeps concurrent changes of one complaint, even on a store whose conditional replace is not atomic."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import KafkaConnectionError

from services.complaints import domain
from services.complaints.calendar import BusinessCalendar, parse_periods
from services.complaints.domain import Complaint, Rules
from services.complaints.policy import DEFAULT_POLICIES
from services.complaints.workflow import LOADS_FOR_S, Submission, Workflow
from shared.clock import FixedClock

from .test_staff import directory

RULES = Rules(calendar=BusinessCalendar("Asia/Shanghai", parse_periods("09:00-12:00,13:30-18:00"), country="CN"),
              policies=DEFAULT_POLICIES, policy_version="2026.1")
NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


class RacyRepository:
    """Checks the revision, then yields before writing: what FerretDB v1 does with a filtered replace."""

    def __init__(self, *complaints: Complaint) -> None:
        self.docs: dict[str, tuple[Complaint, list[str]]] = {c.complaint_id: (c, []) for c in complaints}
        self.tokens: dict[str, str] = {}
        self.unsent: dict[str, Any] = {}

    async def load(self, complaint_id: str) -> tuple[Complaint, list[str]] | None:
        await asyncio.sleep(0)
        found = self.docs.get(complaint_id)
        return (found[0].model_copy(deep=True), list(found[1])) if found else None

    async def replace(self, complaint: Complaint, outbox: list[str], *, expected_revision: int) -> bool:
        matched = self.docs[complaint.complaint_id][0].revision == expected_revision
        await asyncio.sleep(0)
        if matched:
            self.docs[complaint.complaint_id] = (complaint, outbox)
            self.tokens.pop(complaint.complaint_id, None)  # a single write carries no bulk write's token
        return matched

    async def clear_outbox(self, complaint_id: str, revision: int) -> None:
        complaint, _ = self.docs[complaint_id]
        if complaint.revision == revision:
            self.docs[complaint_id] = (complaint, [])

    async def write_many(self, changed: list[tuple[Complaint, Complaint]], token: str) -> int:
        written = 0
        for before, after in changed:
            if await self.replace(after, [], expected_revision=before.revision):
                self.tokens[after.complaint_id] = token
                written += 1
        return written

    async def written_with(self, complaint_ids: Any, token: str) -> set[str]:
        return {c for c in complaint_ids if self.tokens.get(c) == token}

    async def hold_unsent(self, token: str, entries: Any) -> None:
        self.unsent[token] = list(entries)

    async def release_unsent(self, token: str) -> None:
        del self.unsent[token]

    async def unsent_events(self, token: str) -> Any:
        return self.unsent.get(token, [])

    async def write_state(self, complaint_id: str) -> tuple[int, str | None]:
        return self.docs[complaint_id][0].revision, self.tokens.get(complaint_id)


class Publisher:
    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.down = False

    async def publish_json(self, topic: str, records: Any) -> None:
        if self.down:
            raise KafkaConnectionError("the broker is away")
        self.sent.extend(json.loads(raw) for _, raw, _ in records)


async def test_two_concurrent_changes_of_one_complaint_both_survive() -> None:
    complaint, _ = domain.open_complaint(
        complaint_id="K1", customer_id="C1", tier=None, opened_at=NOW, rules=RULES, source="e1",
        fields={"channel": "phone", "category": "delivery", "severity": "normal", "complexity": "standard",
                "subject": "Parcel late", "description": ""})
    repo = RacyRepository(complaint)
    workflow = Workflow(repo, RULES, FixedClock(NOW), Publisher())  # type: ignore[arg-type]

    await asyncio.gather(
        workflow.change("K1", lambda c, t: domain.transition(c, "acknowledged", now=t, rules=RULES, actor="ann")),
        workflow.change("K1", lambda c, t: domain.add_comment(c, "bob", "On it", now=t, rules=RULES)),
    )

    stored, outbox = repo.docs["K1"]
    assert stored.status == "acknowledged"
    assert [c.text for c in stored.comments] == ["On it"]
    assert stored.revision == 2
    assert outbox == []


def opened(complaint_id: str) -> Complaint:
    complaint, _ = domain.open_complaint(
        complaint_id=complaint_id, customer_id="C1", tier=None, opened_at=NOW, rules=RULES, source=complaint_id,
        fields={"channel": "phone", "category": "delivery", "severity": "normal", "complexity": "standard",
                "subject": "Parcel late", "description": ""})
    return complaint


async def test_a_bulk_change_keeps_a_concurrent_single_change_and_redoes_what_another_process_moved() -> None:
    repo = RacyRepository(opened("K1"), opened("K2"), opened("K3"))
    publisher = Publisher()
    workflow = Workflow(repo, RULES, FixedClock(NOW), publisher)  # type: ignore[arg-type]
    read = [await repo.load(k) for k in ("K1", "K2", "K3")]
    # Another process comments on K2 after it was read: the bulk write of K2 loses its revision.
    other = domain.add_comment(repo.docs["K2"][0].model_copy(deep=True), "eve", "Called back", now=NOW, rules=RULES)[0]
    other.revision += 1
    repo.docs["K2"] = (other, [])

    def note(c: Complaint, t: datetime) -> Any:
        return domain.add_comment(c, "sys", "Reminder", now=t, rules=RULES)

    changed, _ = await asyncio.gather(
        workflow.change_many([r for r in read if r], note),
        workflow.change("K1", lambda c, t: domain.transition(c, "acknowledged", now=t, rules=RULES, actor="ann")),
    )
    assert changed == 3
    k1, k2, k3 = (repo.docs[k][0] for k in ("K1", "K2", "K3"))
    assert k1.status == "acknowledged" and [c.text for c in k1.comments] == ["Reminder"]
    assert [c.text for c in k2.comments] == ["Called back", "Reminder"]  # redone on what is stored now
    assert [c.text for c in k3.comments] == ["Reminder"]
    assert (k1.revision, k2.revision, k3.revision) == (2, 2, 1)  # each change one revision, none lost
    assert all(outbox == [] for _, outbox in repo.docs.values())
    assert [e["type"] for e in publisher.sent] == ["complaint.acknowledged"]  # a comment publishes nothing
    assert repo.unsent == {}


def tick_all(c: Complaint, t: datetime) -> Any:
    return domain.tick(c, now=t, rules=RULES)


async def test_events_of_a_bulk_change_the_broker_did_not_take_are_published_later_for_what_was_stored() -> None:
    repo = RacyRepository(opened("K1"), opened("K2"), opened("K3"))
    publisher = Publisher()
    late = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)  # past the first-response warning of all three
    workflow = Workflow(repo, RULES, FixedClock(late), publisher)  # type: ignore[arg-type]
    read = [await repo.load(k) for k in ("K1", "K2", "K3")]
    publisher.down = True
    try:
        await workflow.change_many([r for r in read if r], tick_all)
    except KafkaConnectionError:
        pass
    else:
        raise AssertionError("the publish failure reaches the caller")
    # Stored without an outbox; the events wait in the one document of the write.
    assert all(outbox == [] and c.revision == 1 for c, outbox in repo.docs.values())
    [token] = repo.unsent
    assert [entry[0] for entry in repo.unsent[token]] == ["K1", "K2", "K3"]
    # The broker is back. K2 changes again by a single write before the events are sent again, and
    # K3 is put back by hand to before the write (as if the bulk write had never reached it).
    publisher.down = False
    await workflow.change("K2", lambda c, t: domain.transition(c, "acknowledged", now=t, rules=RULES, actor="ann"))
    repo.docs["K3"] = (opened("K3"), [])
    repo.tokens.pop("K3")
    assert await workflow.resend(token) == 2
    assert repo.unsent == {}
    warned = [e["data"]["complaint_id"] for e in publisher.sent if e["type"] == "complaint.sla_warning"]
    assert warned == ["K1", "K2"]
    assert all(e["data"]["complaint_id"] != "K3" for e in publisher.sent)


class IntakeRepository:
    """What intake and a single change need; counts the reads of the agents' loads."""

    def __init__(self, loads: dict[str, int]) -> None:
        self.loads = loads
        self.read: list[str] = []
        self.docs: dict[str, Complaint] = {}

    async def tier(self, customer_id: str) -> None:
        return None

    async def open_count(self, agent: str) -> int:
        self.read.append(agent)
        return self.loads.get(agent, 0)

    async def insert_new(self, complaints: Any, token: str | None = None) -> set[str]:
        taken = {c.complaint_id for c, _ in complaints if c.complaint_id in self.docs}
        self.docs.update((c.complaint_id, c) for c, _ in complaints if c.complaint_id not in taken)
        return taken

    async def hold_unsent(self, token: str, entries: Any) -> None:
        pass

    async def release_unsent(self, token: str) -> None:
        pass

    async def load(self, complaint_id: str) -> tuple[Complaint, list[str]]:
        return self.docs[complaint_id], []

    async def replace(self, complaint: Complaint, outbox: list[str], *, expected_revision: int) -> bool:
        self.docs[complaint.complaint_id] = complaint
        return True

    async def clear_outbox(self, complaint_id: str, revision: int) -> None:
        pass


async def test_intake_reads_the_agents_loads_once_a_while_and_counts_its_own_routing_and_changes_meanwhile() -> None:
    monday_10 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai: a-sh and a-sh2 of care on duty
    repo = IntakeRepository({"a-sh": 5})
    workflow = Workflow(repo, RULES, FixedClock(monday_10), Publisher(), directory())  # type: ignore[arg-type]
    fields = {"channel": "phone", "category": "delivery", "severity": "normal", "complexity": "standard",
              "subject": "Parcel late"}

    async def submit(*ids: str) -> list[str | None]:
        results = await workflow.submit_many([Submission("C1", fields, k, k, monday_10) for k in ids])
        return [r[0].assignee for r in results if not isinstance(r, Exception)]

    assert await submit("K1", "K2", "K3", "K4") == ["a-sh2"] * 4
    assert repo.read == ["a-sh", "a-sh2"]
    # K1 handed to a-sh by hand: a-sh holds 6, a-sh2 3, with no read of the store.
    await workflow.change("K1", lambda c, t: domain.assign(c, "a-sh", now=t, rules=RULES))
    assert await submit("K5", "K1") == ["a-sh2", "a-sh"]  # K1 was there already: not counted again
    assert await submit("K7", "K8") == ["a-sh2", "a-sh2"]  # 4 and 5 against a-sh's 6
    assert repo.read == ["a-sh", "a-sh2"]
    # A while later the loads are read again: the store's figures, whatever other processes did.
    repo.loads = {"a-sh": 0, "a-sh2": 9}
    workflow._loads_read -= LOADS_FOR_S + 1
    assert await submit("K6") == ["a-sh"]
    assert repo.read == ["a-sh", "a-sh2"] * 2
