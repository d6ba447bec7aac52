"""The workflow keeps concurrent changes of one complaint, even on a store whose conditional replace is not atomic."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from services.complaints import domain
from services.complaints.calendar import BusinessCalendar, parse_periods
from services.complaints.domain import Complaint, Rules
from services.complaints.policy import DEFAULT_POLICIES
from services.complaints.workflow import Workflow
from shared.clock import FixedClock

RULES = Rules(calendar=BusinessCalendar("Asia/Shanghai", parse_periods("09:00-12:00,13:30-18:00"), country="CN"),
              policies=DEFAULT_POLICIES, policy_version="2026.1")
NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


class RacyRepository:
    """Checks the revision, then yields before writing: what FerretDB v1 does with a filtered replace."""

    def __init__(self, complaint: Complaint) -> None:
        self.docs: dict[str, tuple[Complaint, list[str]]] = {complaint.complaint_id: (complaint, [])}

    async def load(self, complaint_id: str) -> tuple[Complaint, list[str]] | None:
        await asyncio.sleep(0)
        found = self.docs.get(complaint_id)
        return (found[0].model_copy(deep=True), list(found[1])) if found else None

    async def replace(self, complaint: Complaint, outbox: list[str], *, expected_revision: int) -> bool:
        matched = self.docs[complaint.complaint_id][0].revision == expected_revision
        await asyncio.sleep(0)
        if matched:
            self.docs[complaint.complaint_id] = (complaint, outbox)
        return matched

    async def clear_outbox(self, complaint_id: str, revision: int) -> None:
        complaint, _ = self.docs[complaint_id]
        if complaint.revision == revision:
            self.docs[complaint_id] = (complaint, [])


class Publisher:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def publish(self, events: Any, **_: Any) -> None:
        self.sent.extend(events)


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
